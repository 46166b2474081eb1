"""`ouroboros samples RUN`: every sample of a run, filtered and sorted, agreeing with the
run's own tables (sample_perplexity.csv, metrics.csv) and with the built-in language."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ouroboros.data.grammar import GroundTruthLanguage
from ouroboros.experiment.samples import COLUMNS

from ..conftest import TINY

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ouroboros", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "run"
    done = _cli("run", "--out", str(out), "--no-report", *TINY, "seeds=[0, 1]",
                "policies=[{name: replace}, {name: accumulate}]",
                "metrics.names=[ground-truth, reference-perplexity]")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _metric(run: Path, metric: str, policy: str, seed: int, g: int) -> float:
    with open(run / "metrics.csv", encoding="utf-8") as f:
        return next(float(r["value"]) for r in csv.DictReader(f)
                    if (r["metric"], r["policy"], r["seed"], r["generation"])
                    == (metric, policy, str(seed), str(g)))


def test_every_sample_with_its_perplexity_validity_and_length(run):
    done = _cli("samples", str(run), "--policy", "replace", "--seed", "1", "--generation", "1",
                "--format", "jsonl", "--limit", "100000")
    assert done.returncode == 0, done.stderr
    rows = _jsonl(done.stdout)
    with open(run / "sample_perplexity.csv", encoding="utf-8") as f:
        ppl = [float(r["value"]) for r in csv.DictReader(f)
               if (r["policy"], r["seed"], r["generation"]) == ("replace", "1", "1")]
    assert len(rows) == len(ppl) == 120  # num_samples: the real training size
    assert [r["reference_perplexity"] for r in rows] == pytest.approx(ppl)
    assert {(r["policy"], r["seed"], r["generation"]) for r in rows} == {("replace", 1, 1)}
    truth = GroundTruthLanguage()
    assert all(r["valid"] == truth.is_valid(r["text"]) for r in rows)
    invalid = sum(not r["valid"] for r in rows) / len(rows)
    assert invalid == pytest.approx(_metric(run, "error_rate", "replace", 1, 1))
    assert all(r["words"] == len(r["text"].split()) and r["empty"] == (r["words"] == 0)
               for r in rows)
    empty = sum(r["empty"] for r in rows) / len(rows)
    assert empty == pytest.approx(_metric(run, "empty_rate", "replace", 1, 1))


def test_filters_and_sorting(run):
    done = _cli("samples", str(run), "--sort", "perplexity", "--reverse", "--limit", "5",
                "--format", "jsonl", "--generation", "1")
    assert done.returncode == 0, done.stderr
    top = _jsonl(done.stdout)
    values = [r["reference_perplexity"] for r in top]
    assert len(top) == 5 and values == sorted(values, reverse=True)
    every = _jsonl(_cli("samples", str(run), "--generation", "1", "--format", "jsonl",
                        "--limit", "100000").stdout)
    assert values[0] == max(r["reference_perplexity"] for r in every)
    assert {r["policy"] for r in every} == {"replace", "accumulate"}
    shortest = _jsonl(_cli("samples", str(run), "--sort", "words", "--limit", "3", "--format",
                           "jsonl").stdout)
    assert [r["words"] for r in shortest] == sorted(r["words"] for r in shortest)
    bad = _jsonl(_cli("samples", str(run), "--invalid", "--format", "jsonl", "--limit",
                      "100000").stdout)
    assert bad and all(r["valid"] is False for r in bad)
    text = _cli("samples", str(run), "--invalid", "--limit", "2").stdout
    assert "NOT grammatical" in text and f"(2 of {len(bad)} matching samples" in text


def test_written_as_csv_and_refusals(run, tmp_path):
    out = tmp_path / "picked" / "samples.csv"
    done = _cli("samples", str(run), "--policy", "accumulate", "--out", str(out))
    assert done.returncode == 0 and "written to" in done.stdout
    with open(out, encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    assert len(rows) == 2 * 2 * 120 and {r["policy"] for r in rows} == {"accumulate"}
    nobody = _cli("samples", str(run), "--policy", "nobody")
    assert nobody.returncode == 2 and "no policy 'nobody'" in nobody.stderr
    assert "replace" in nobody.stderr


def test_training_curves_are_exported_per_model(run):
    """training.csv: every cell's models, each epoch's mean training loss as train.json has it."""
    with open(run / "training.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["policy"], r["seed"], r["generation"]) for r in rows}
    assert cells == {(p, s, g) for p in ("replace", "accumulate") for s in ("0", "1")
                     for g in ("0", "1")}
    (g1,) = [p for p in (run / "stages" / "train").iterdir() if p.name.startswith("replace-s1-g1")]
    history = json.loads((g1 / "train.json").read_text())["history"]
    mine = [r for r in rows if (r["policy"], r["seed"], r["generation"]) == ("replace", "1", "1")]
    assert [float(r["train_loss"]) for r in mine] == pytest.approx(
        [h["train_loss"] for h in history])
    assert [int(r["step"]) for r in mine] == [h["step"] for h in history]


def test_cells_json_places_every_stage_and_labels_are_a_fallback(run, tmp_path):
    """cells.json names each cell's stage folders; without it (a run of an older version) the
    same rows are found by stage labels."""
    import shutil
    index = json.loads((run / "cells.json").read_text())
    assert {(c["policy"], c["seed"]) for c in index["cells"]} == {
        (p, s) for p in ("replace", "accumulate") for s in (0, 1)}
    for c in index["cells"]:
        for g in c["generations"]:
            assert (run / g["evaluate"] / "metrics.json").is_file()
            assert (run / g["samples"] / "samples.jsonl").is_file()
    args = ["--format", "jsonl", "--limit", "100000"]
    with_index = _cli("samples", str(run), *args).stdout
    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / "cells.json").unlink()
    assert _cli("samples", str(old), *args).stdout == with_index


@pytest.mark.parametrize("fmt", ["parquet", "hf", "jsonl"])
def test_export_keeps_every_example_and_its_lineage(run, tmp_path, fmt):
    import pandas as pd
    out = tmp_path / fmt
    done = _cli("export", str(run), "--out", str(out), "--format", fmt)
    assert done.returncode == 0, done.stderr
    if fmt == "hf":
        from datasets import load_from_disk
        d = load_from_disk(str(out))
        samples, trainsets = d["samples"].to_pandas(), d["trainsets"].to_pandas()
        real_test = d["real_test"].to_pandas()
    elif fmt == "parquet":
        samples = pd.read_parquet(out / "samples.parquet")
        trainsets = pd.read_parquet(out / "trainsets.parquet")
        real_test = pd.read_parquet(out / "real_test.parquet")
    else:
        samples = pd.read_json(out / "samples.jsonl", lines=True)
        trainsets = pd.read_json(out / "trainsets.jsonl", lines=True)
        real_test = pd.read_json(out / "real_test.jsonl", lines=True)
    # every sample, as `ouroboros samples` gives it, with who wrote it and from what
    every = _jsonl(_cli("samples", str(run), "--format", "jsonl", "--limit", "1000000").stdout)
    assert len(samples) == len(every) == 2 * 2 * 2 * 120
    assert list(samples["text"]) == [r["text"] for r in every]
    assert samples["generator"].str.startswith("stages/train/").all()
    # every training set, matching composition.csv by origin
    with open(run / "composition.csv", encoding="utf-8") as f:
        composition = {(r["policy"], int(r["seed"]), int(r["generation"]), r["origin"]):
                       int(r["count"]) for r in csv.DictReader(f)}
    origin = trainsets["origin"].where(
        trainsets["origin"] == "real", "synthetic-g" + trainsets["generation"].astype(str)
        .str.replace(r"\.0$", "", regex=True))
    counts = trainsets.assign(o=origin).groupby(["policy", "seed", "trained_at", "o"]).size()
    assert {(p, int(s), int(g), o): int(n) for (p, s, g, o), n in counts.items()} == composition
    assert trainsets.loc[trainsets["origin"] != "real", "model"].str.startswith(
        "stages/train/").all()
    assert (trainsets["used_for"] == "training").all()  # no synthetic hold-out configured
    assert len(real_test) == 2 * 60 and set(real_test["seed"]) == {0, 1}
    # nothing overwritten
    again = _cli("export", str(run), "--out", str(out), "--format", fmt)
    assert again.returncode == 2 and "not an empty folder" in again.stderr
