"""The built-in verifiable task end to end: a tiny loop on arithmetic problems measures exact
accuracy on test problems, on its training problems and of its samples, and every number can
be recounted from the stage files."""

from __future__ import annotations

import csv

import pytest

from ouroboros.config import load_config
from ouroboros.data.arithmetic import check
from ouroboros.experiment.loop import run_study
from ouroboros.experiment.stages import read_jsonl

pytestmark = pytest.mark.integration

STUDY = ["data.source=arithmetic", "task.name=arithmetic", "metrics.names=[accuracy]",
         "data.train_size=300", "data.valid_size=30", "data.test_size=100", "generations=2",
         "seeds=[0]", "policies=[{name: replace}]", "model.n_layer=1", "model.n_embd=32",
         "model.context_length=16", "training.epochs=3", "generation.max_new_tokens=6",
         "runtime.progress=false", "runtime.threads=1"]


def test_accuracy_is_recounted_from_the_stage_files(tmp_path):
    plan = run_study(load_config(overrides=STUDY), tmp_path, log=lambda _: None)
    with open(tmp_path / "metrics.csv") as f:
        rows = {(r["generation"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}
    for g, stage in enumerate(plan.cells[0].evaluations):
        folder = tmp_path / stage.relpath
        test = read_jsonl(folder / "predictions.jsonl")
        assert len(test) == 100
        right = sum(check(r["prediction"], r["reference"])[1] for r in test) / len(test)
        assert rows[(str(g), "accuracy")] == pytest.approx(right)
        train = read_jsonl(folder / "train_predictions.jsonl")
        assert len(train) == 300
        assert all(r["correct"] == check(r["prediction"], r["reference"])[1] for r in train)
        assert rows[(str(g), "train_accuracy")] == pytest.approx(
            sum(r["correct"] for r in train) / 300)
        samples = read_jsonl(tmp_path / stage.deps["samples"].relpath / "samples.jsonl")
        answers = {r["id"]: r["reference"] for r in train}
        right = sum(check(s["target"], answers[s["prompted_by"]])[1] for s in samples)
        assert rows[(str(g), "sample_accuracy")] == pytest.approx(right / len(samples))
