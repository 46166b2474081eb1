"""`ouroboros export`: one type per column, and a failed export leaves nothing behind."""

import pytest

from ouroboros.experiment import dataset_export


def test_a_column_of_ints_and_text_becomes_text():
    rows = [{"request": 0, "x": 1}, {"request": "main:0", "x": 2.5}, {"request": None}]
    fixed = dataset_export._one_type(rows)
    assert [r["request"] for r in fixed] == ["0", "main:0", None]
    assert [r.get("x") for r in fixed] == [1, 2.5, None]  # numbers stay numbers


@pytest.mark.parametrize("fmt", ["parquet", "hf", "jsonl"])
def test_mixed_columns_export_and_a_failure_leaves_no_folder(tmp_path, monkeypatch, fmt):
    tables = {"samples": [{"id": "a", "text": "x"}],
              "trainsets": [{"id": "t0", "request": 0}, {"id": "t1", "request": "main:0"}]}
    monkeypatch.setattr(dataset_export, "tables", lambda run_dir: tables)
    counts = dataset_export.export(tmp_path / "run", tmp_path / "out", fmt)
    assert counts == {"samples": 1, "trainsets": 2}
    assert any((tmp_path / "out").iterdir())

    def broken(found, out, fmt):
        (out / "half.parquet").write_text("x")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(dataset_export, "_write", broken)
    with pytest.raises(dataset_export.ExportError, match="nothing written"):
        dataset_export.export(tmp_path / "run", tmp_path / "again", fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no half-written folder


def test_a_cells_json_naming_a_folder_outside_the_run_is_refused(tmp_path):
    import json

    from ouroboros.experiment import samples
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "samples.jsonl").write_text('{"id": "x", "source": "", "target": "secret"}\n')
    (run / "metrics.csv").write_text("cell,policy,seed,generation,metric,value,"
                                     "higher_is_better,signature\nr-s0,r,0,0,m,1,,m|v1|n=1|seed=0\n")
    (run / "cells.json").write_text(json.dumps({"cells": [{
        "policy": "r", "seed": 0, "generations": [
            {"generation": 0, "evaluate": "../secret", "samples": "../secret"}]}]}))
    with pytest.raises(samples.SamplesError, match="outside the run directory"):
        list(samples.read_samples(run))
    with pytest.raises(dataset_export.ExportError, match="outside the run directory"):
        dataset_export.export(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
