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


def test_gsm8k_format_files_are_scored_by_value_and_garbage_is_counted(tmp_path):
    """A tiny model on GSM8K-format files writes mostly garbage: every unparsed answer is
    counted as such and scored wrong, and accuracy recounts from predictions.jsonl."""
    import json

    from ouroboros.config import TaskConfig
    from ouroboros.tasks.conditional import GSM8K
    for split, n in (("train", 60), ("test", 20)):
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for i in range(n):
                a, b = i % 7 + 2, i % 5 + 3
                f.write(json.dumps({"question": f"Ann has {a} bags of {b} apples. How many?",
                                    "answer": f"{a} * {b} = {a * b} apples.\n#### {a * b}"})
                        + "\n")
    cfg = load_config(overrides=[
        "task.name=gsm8k", "data.source=files", f"data.files.root={tmp_path}",
        "data.files.train=train.jsonl", "data.files.test=test.jsonl",
        "data.files.fields={source: question, target: answer}", "data.train_size=null",
        "data.valid_size=10", "data.test_size=null", "model.tokenizer=bpe",
        "model.vocab_size=300", "model.n_layer=1", "model.n_embd=32",
        "model.context_length=64", "metrics.names=[accuracy]", "generations=1", "seeds=[0]",
        "policies=[{name: replace}]", "training.epochs=1", "generation.max_new_tokens=12",
        "runtime.progress=false", "runtime.threads=1"])
    plan = run_study(cfg, tmp_path / "run", log=lambda _: None)
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(f)}
    task = GSM8K(TaskConfig(name="gsm8k"))
    scored = read_jsonl(tmp_path / "run" / plan.cells[0].evaluations[0].relpath /
                        "predictions.jsonl")
    checked = [task.check(r["prediction"], r["reference"]) for r in scored]
    assert rows["accuracy"] == pytest.approx(sum(c for _, c in checked) / len(checked))
    assert rows["accuracy_unparsed"] == pytest.approx(
        sum(not p for p, _ in checked) / len(checked))
    assert rows["accuracy_unparsed"] > 0.5  # garbage, counted, not guessed


def test_verified_self_training_never_trains_on_a_wrong_answer(tmp_path):
    """Verified self-training (STaR / ReST-EM): every synthetic example the next generation
    trains on verifies against the real answer; the unverified control trains on wrong ones."""
    cfg = load_config(overrides=[
        *STUDY, "training.epochs=30", "generation.candidates=4",
        "policies=[{name: accumulate, label: verified, curation: [{name: verifier}]}, "
        "{name: accumulate, label: unverified}]"])
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    real = {e["id"]: e["target"] for e in read_jsonl(
        tmp_path / plan.cells[0].evaluations[0].deps["data"].relpath / "train.jsonl")}
    wrong = {}
    for cell in plan.cells:
        trainset = next(s for s in plan.stages if s.kind == "trainset"
                        and s.label == f"{cell.policy.display}-s0-g1")
        rows = [r for r in read_jsonl(tmp_path / trainset.relpath / "trainset.jsonl")
                if r["origin"] == "synthetic"]
        assert rows
        wrong[cell.policy.display] = sum(not check(r["target"], real[r["prompted_by"]])[1]
                                         for r in rows)
    assert wrong["verified"] == 0 and wrong["unverified"] > 0
