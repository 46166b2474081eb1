"""Test tiers: plain ``pytest`` runs the fast unit tests; ``--integration`` adds end-to-end runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ouroboros.config import load_config

# vLLM lives in its own environment (scripts/setup-vllm: .venv-vllm). Tests that need it skip
# when it is absent, except where OUROBOROS_REQUIRE_VLLM is set (CI), where they fail.
VLLM_PYTHON = Path(os.environ.get("OUROBOROS_VLLM_PYTHON",
                                  Path(__file__).parents[1] / ".venv-vllm" / "bin" / "python"))


def require_vllm() -> None:
    """Skip (or, in CI, fail) without the vLLM environment."""
    if not VLLM_PYTHON.is_file():
        if os.environ.get("OUROBOROS_REQUIRE_VLLM"):
            pytest.fail(f"no vLLM environment at {VLLM_PYTHON}: run scripts/setup-vllm")
        pytest.skip(f"no vLLM environment at {VLLM_PYTHON} (scripts/setup-vllm makes one)")


def pytest_addoption(parser):
    parser.addoption("--integration", action="store_true",
                     help="also run the tiny end-to-end studies (tests/integration)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--integration"):
        return
    skip = pytest.mark.skip(reason="integration tier: run with --integration")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


TINY = ["generations=2", "seeds=[0]", "data.train_size=120", "data.valid_size=30",
        "data.test_size=60", "model.n_embd=16", "model.n_head=2", "model.n_layer=1",
        "training.epochs=1", "generation.max_new_tokens=24", "runtime.progress=false",
        "runtime.threads=1", "runtime.executor=local"]
# executor local: tests patch stage code in this process, which worker processes would not
# see (executor auto is tested in test_scheduling.py; processes and ray in test_executors.py)


def run_stopped_at(monkeypatch, cfg, run_dir, kind: str, label: str) -> None:
    """Run the study ``cfg`` (local executor) in ``run_dir`` until it builds the stage
    ``kind label``, which fails ("killed"): a study that stopped half-way."""
    from ouroboros.experiment import executors
    from ouroboros.experiment.loop import run_study
    real = executors.build_stage

    def crash(stage, *args, **kwargs):
        if stage.kind == kind and stage.label == label:
            raise RuntimeError("killed")
        return real(stage, *args, **kwargs)
    monkeypatch.setattr(executors, "build_stage", crash)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            run_study(cfg, run_dir)
    finally:
        monkeypatch.setattr(executors, "build_stage", real)


@pytest.fixture
def tiny_config():
    """A study small enough to run in seconds (2 policies x 1 seed x 2 generations)."""
    def make(*extra: str):
        return load_config(overrides=TINY + ["policies=[{name: replace}, {name: accumulate}]",
                                             *extra])
    return make


@pytest.fixture(scope="session")
def tiny_model():
    """(model, tokenizer, language, training texts): a 1-layer GPT-2 trained for a moment."""
    import numpy as np

    from ouroboros.data.grammar import GroundTruthLanguage
    from ouroboros.models.tiny import TinyGPT2
    from ouroboros.training.trainer import train_model

    lang = GroundTruthLanguage()
    texts = lang.sample(200, np.random.default_rng(0))
    cfg = load_config(overrides=TINY)
    family = TinyGPT2()
    tok = family.build_tokenizer(cfg.model, texts)
    model = family.build(cfg.model, tok, seed=0)
    train_model(model, lm_items(tok, texts), cfg.training, seed=0, pad_id=tok.pad_token_id)
    return model, tok, lang, texts


def lm_encoder(tok):
    """The encoder of a decoder-only model for the tests' 64-token contexts."""
    from ouroboros.models.encoding import Encoder
    return Encoder(tok, seq2seq=False, context_length=64, max_source_tokens=64)


def lm_items(tok, texts):
    """(ids, labels) of plain sentences: ``[BOS] text [EOS]``, loss on all of it."""
    from ouroboros.config import TaskConfig
    from ouroboros.models.encoding import encode_examples
    from ouroboros.tasks.lm import LanguageModelling
    return encode_examples(lm_encoder(tok), LanguageModelling(TaskConfig()),
                           [{"source": "", "target": t} for t in texts])
