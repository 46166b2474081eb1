"""A full disk (simulated ENOSPC) in the middle of a stage and while writing metrics.csv: one
clear error with exit 2, no half-written file left, and `resume` gives the uninterrupted
numbers."""

import errno

import pytest

from ouroboros import atomic
from ouroboros.cli import main
from ouroboros.experiment import builders, rundir
from ouroboros.experiment.builders import data, trainset  # noqa: F401 (patched below)

from .test_resume import STUDY

pytestmark = pytest.mark.integration


def _leftovers(run_dir):
    """Half-written things: stage folders being built and temporary files."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.name.startswith(".tmp-") or p.name.endswith(".tmp"))


def test_disk_full_mid_stage_and_mid_csv_then_resume(tmp_path, monkeypatch, capsys):
    whole = tmp_path / "whole"
    assert main(["run", "--out", str(whole), "--no-report", *STUDY]) == 0

    # 1. The disk fills while a later generation's training set is half written.
    out = tmp_path / "full"
    real_write = builders.data.write_jsonl
    calls = []

    def write_until_full(path, rows):
        calls.append(path)
        if len(calls) == 4:  # after the data stage's three splits
            real_write(path, rows[:len(rows) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, rows)
    for module in (builders.data, builders.trainset):  # data stage, then a training set
        monkeypatch.setattr(module, "write_jsonl", write_until_full)
    assert main(["run", "--out", str(out), "--no-report", *STUDY]) == 2
    err = capsys.readouterr().err
    assert "error: no space left on the device while writing" in err
    assert f"`ouroboros resume {out}` continues" in err and "Traceback" not in err
    assert _leftovers(out) == []
    monkeypatch.undo()

    # 2. The disk fills again while metrics.csv is written, after every stage finished.
    real_metrics = rundir.write_metrics

    def metrics_on_full_disk(run_dir, rows):
        def no_space(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        with monkeypatch.context() as m:
            m.setattr(atomic.os, "fsync", no_space)
            return real_metrics(run_dir, rows)
    monkeypatch.setattr(rundir, "write_metrics", metrics_on_full_disk)
    assert main(["resume", str(out)]) == 2
    assert "no space left on the device" in capsys.readouterr().err
    assert _leftovers(out) == [] and not (out / "metrics.csv").exists()
    monkeypatch.undo()

    # 3. Space again: resume finishes, with the numbers of the uninterrupted run.
    assert main(["resume", str(out)]) == 0
    assert (out / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
