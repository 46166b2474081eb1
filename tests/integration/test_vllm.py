"""The vllm backend for real (the CPU build in CI): a study generates with it end to end, and
its samples from a trained checkpoint follow the same distribution as the hf backend's, with a
test sensitive enough to catch a wrong temperature.

vLLM lives in its own environment (``scripts/setup-vllm``: .venv-vllm), named by
``runtime.vllm.python`` (see ``require_vllm`` in tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ouroboros.data.grammar import GroundTruthLanguage

from ..conftest import TINY, VLLM_PYTHON, require_vllm

pytestmark = pytest.mark.integration

N = 1200  # samples per backend: enough to see a 0.8 temperature in the length distribution

# Head size 64 (128 / 2): the CPU build refuses head size 16.
STUDY = TINY + ["generations=1", "model.n_embd=128", "model.n_head=2", "training.epochs=3",
                "data.train_size=300", f"generation.num_samples={N}",
                "generation.max_new_tokens=30", "metrics.names=[ground-truth]",
                "metrics.bootstrap=0", "policies=[{name: replace}]",
                f"runtime.vllm.python={VLLM_PYTHON}", "runtime.vllm.dtype=float32"]


@pytest.fixture(scope="module", autouse=True)
def needs_vllm():
    require_vllm()


def _samples(out: Path, *extra: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "ouroboros", "run", "--no-report", "--out",
                           str(out), *STUDY, *extra], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (stage,) = out.glob("stages/generate/*")
    record = json.loads((stage / "_complete.json").read_text())
    rows = [json.loads(line) for line in (stage / "samples.jsonl").read_text().splitlines()]
    return rows, record["info"]


def _lengths_differ(a: list[str], b: list[str]) -> float:
    """p-value of a chi-square test that two samples' sentence lengths (words) share one
    distribution (lengths of 12 words and more pooled)."""
    cap = 12
    counts = np.zeros((2, cap + 1))
    for row, texts in enumerate((a, b)):
        for t in texts:
            counts[row, min(len(t.split()), cap)] += 1
    counts = counts[:, counts.sum(0) > 0]
    return stats.chi2_contingency(counts).pvalue


def _validity_differs(a: list[str], b: list[str], truth) -> float:
    """p-value of Fisher's exact test that the share of grammatical samples is the same."""
    va, vb = sum(map(truth.is_valid, a)), sum(map(truth.is_valid, b))
    return stats.fisher_exact([[va, len(a) - va], [vb, len(b) - vb]]).pvalue


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return _samples(tmp_path_factory.mktemp("hf") / "run")


def test_vllm_study_matches_hf_distribution_and_catches_a_wrong_temperature(hf, tmp_path):
    truth = GroundTruthLanguage()
    hf_rows, _ = hf
    rows, info = _samples(tmp_path / "vllm", "generation.backend=vllm")
    assert info["backend"] == "vllm" and info["vllm"] and info["samples"] == N
    assert len({r["target"] for r in rows}) > N // 3  # distinct noise per sample
    a, b = [r["target"] for r in hf_rows], [r["target"] for r in rows]
    assert _lengths_differ(a, b) > 1e-3
    assert _validity_differs(a, b, truth) > 1e-3
    # The same comparison must see a temperature of 0.8 instead of 1.
    cold, _ = _samples(tmp_path / "cold", "generation.backend=vllm", "generation.temperature=0.8")
    c = [r["target"] for r in cold]
    assert min(_lengths_differ(a, c), _validity_differs(a, c, truth)) < 1e-4


def test_vllm_candidates_are_n_samples_of_one_request(tmp_path):
    rows, info = _samples(tmp_path / "n", "generation.backend=vllm",
                          f"generation.num_samples={N // 4}", "generation.candidates=4")
    assert info["samples"] == N
    by_request: dict = {}
    for r in rows:
        by_request.setdefault(r["request"], []).append(r["target"])
    assert len(by_request) == N // 4 and all(len(v) == 4 for v in by_request.values())
    # Candidates of one request are different draws, not copies of one noise.
    assert np.mean([len(set(v)) > 1 for v in by_request.values()]) > 0.8
