"""A tiny study end to end: kill -9 mid-way, resume, and get exactly the uninterrupted numbers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ouroboros.experiment.rundir import locked

from ..conftest import TINY

pytestmark = pytest.mark.integration

STUDY = TINY + ["training.epochs=3", "policies=[{name: replace}, {name: mix, real_fraction: 0.5}]"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ouroboros", *args]


def _run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cli("run", "--out", str(run_dir), *STUDY, *extra),
                          capture_output=True, text=True, timeout=300)


def _finished(run_dir: Path) -> int:
    return len(list(run_dir.glob("stages/*/*/_complete.json")))


def test_kill_resume_matches_uninterrupted(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _run(whole, "--no-report")
    assert done.returncode == 0, done.stderr
    total = _finished(whole)

    proc = subprocess.Popen(_cli("run", "--out", str(killed), *STUDY),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill while a later generation's model is being trained (its temp folder exists).
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list(killed.glob("stages/train/.tmp-*-g1-*")):
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < _finished(killed) < total, "the kill should land mid-study"

    with locked(killed):  # another process holds the run directory: a clear refusal
        busy = subprocess.run(_cli("resume", str(killed)), capture_output=True, text=True,
                              timeout=60)
    assert busy.returncode == 3 and "in use by another ouroboros process" in busy.stderr

    resumed = subprocess.run(_cli("resume", str(killed)), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (killed / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    assert (killed / "report" / "report.html").is_file()
    assert not list(killed.glob("stages/*/.tmp-*")), "crash leftovers are moved aside"


def test_files_rerun_and_invalidation(tmp_path):
    run_dir = tmp_path / "run"
    assert _run(run_dir).returncode == 0
    top = sorted(p.name for p in run_dir.iterdir())
    assert top == [".lock", "cells.json", "composition.csv", "config.yaml", "manifest.json",
                   "metrics.csv", "report", "sample_perplexity.csv", "samples_preview.jsonl",
                   "slices.csv", "stages", "training.csv"]
    assert sorted(p.name for p in (run_dir / "stages").iterdir()) == [
        "data", "evaluate", "generate", "slice", "test", "tokenizer", "train", "trainset"]
    train = next((run_dir / "stages" / "train").glob("s0-g0-*"))
    assert sorted(p.name for p in train.iterdir()) == ["_complete.json", "model", "train.json"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (train / "model").iterdir()}
    sample = json.loads((next((run_dir / "stages" / "generate").glob("replace-s0-g1-*"))
                         / "samples.jsonl").read_text().splitlines()[0])
    assert sample["generation"] == 1 and sample["model"].startswith("stages/train/replace-s0-g1")
    assert sample["decoding"]["temperature"] == 1.0

    # The same command again builds nothing.
    assert _run(run_dir).returncode == 0
    assert json.loads((run_dir / "manifest.json").read_text())["stages_built"] == 0

    # A changed metric setting rebuilds only the evaluations; the old ones are moved aside.
    assert _run(run_dir, "metrics.rare_fraction=0.3").returncode == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages_built"] == len(list((run_dir / "stages" / "evaluate").iterdir()))
    stale = list((run_dir / "_stale").glob("*/stages/evaluate/*"))
    assert len(stale) == manifest["stages_built"]
    assert list((run_dir / "_stale").glob("*/config.yaml"))

    status = subprocess.run(_cli("status", str(run_dir)), capture_output=True, text=True)
    assert ": complete" in status.stdout and "2/2 generations evaluated" in status.stdout
