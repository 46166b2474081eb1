"""The Python API: the documented example runs as CI's first user would run it; what
``load_run`` returns agrees with the run directory's CSVs; ``run_study`` checks, resumes and
refuses like ``ouroboros run``."""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import ouroboros
from ouroboros.config import ConfigError

from ..conftest import TINY

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


def test_the_example_runs_and_draws_its_figure(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "from_python.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "kl_vs_error.png").stat().st_size > 10_000
    assert "figure:" in done.stdout and "No verdict: with 2 seed(s)" in done.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return ouroboros.run_study(None, out=out, quiet=True, overrides=[
        *TINY, "seeds=[0, 1, 2]", "policies=[{name: replace}, {name: accumulate}]"])


def _csv_rows(run) -> list[dict]:
    with open(run.path / "metrics.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_dataframes_agree_with_the_run_directory(run):
    rows = _csv_rows(run)
    m = run.metrics
    assert len(m) == len(rows)
    assert list(m["value"]) == pytest.approx([float(r["value"]) for r in rows], nan_ok=True)
    assert list(m["signature"]) == [r["signature"] for r in rows]
    assert set(m["n"].dropna().astype(int)) and m["version"].notna().all()
    # summary: the mean over seeds of every (policy, metric, generation)
    groups = defaultdict(list)
    for r in rows:
        if r["value"] not in ("", "nan"):
            groups[(r["policy"], r["metric"], int(r["generation"]))].append(float(r["value"]))
    s = run.summary()
    assert len(s) == len(groups)
    for r in s.itertuples():
        assert r.mean == pytest.approx(np.mean(groups[(r.policy, r.metric, r.generation)]))
        assert r.n_seeds == len(groups[(r.policy, r.metric, r.generation)])
        assert np.isnan(r.low) or r.low <= r.mean <= r.high
    # paired: accumulate minus replace per seed, averaged
    p = run.paired("replace", metrics=["perplexity"])
    (row,) = p.itertuples()
    by = {(r["policy"], r["seed"]): float(r["value"]) for r in rows
          if r["metric"] == "perplexity" and r["generation"] == "1"}
    assert row.mean == pytest.approx(np.mean([by[("accumulate", s)] - by[("replace", s)]
                                              for s in ("0", "1", "2")]))
    assert row.p_flip >= 0.25  # 3 seeds: never below 2^(1-3)
    assert "cannot reach" in row.verdict
    # composition, training curves, samples with lineage
    assert set(run.composition["origin"]) >= {"real", "synthetic-g0"}
    curves = run.training_curves
    assert set(curves["generation"]) == {0, 1} and curves["train_loss"].notna().all()
    samples = run.samples(policy="replace", seed=1, generation=1)
    assert len(samples) == 120 and (samples["generation"] == 1).all()
    assert samples["generator"].str.contains("replace-s1-g1").all()  # the model that wrote it
    with pytest.raises(ValueError, match="no policy 'nobody'"):
        run.paired("nobody")


def test_run_study_resumes_and_refuses_like_the_command(run, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        again = ouroboros.run_study(None, out=run.path, overrides=[
            *TINY, "seeds=[0, 1, 2]", "policies=[{name: replace}, {name: accumulate}]"],
            report=False)
    assert again.path == run.path
    assert "already finished" in out.getvalue() and "(0 already finished)" not in out.getvalue()
    bad = tmp_path / "never"
    with pytest.raises(ConfigError) as e:
        ouroboros.run_study({"seeds": "oops", "training": {"lr": -1}}, out=bad)
    assert "seeds" in str(e.value) and "training.lr" in str(e.value)
    assert not bad.exists()  # refused before any work
    with pytest.raises(FileNotFoundError, match="no metrics.csv"):
        ouroboros.load_run(tmp_path)
