"""runtime.keep_checkpoints: needed deletes weights once nothing reads them, gives the same
numbers as keeping them all, and trains a deleted checkpoint again when a later plan reads it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import TINY

pytestmark = pytest.mark.integration

# Generation 0 is the reference of reference-perplexity; training starts from the previous
# generation's model, so rebuilding generation 1 needs generation 0 rebuilt first.
STUDY = TINY + ["generations=3", "metrics.bootstrap=0", "training.init=previous",
                "metrics.names=[perplexity, reference-perplexity, ground-truth]",
                "policies=[{name: replace}, {name: accumulate}]"]
MORE = "metrics.names=[perplexity, reference-perplexity, ground-truth, diversity]"


def _run(run: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ouroboros", "run", "--no-report", "--out",
                           str(run), *STUDY, *extra], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _models(run: Path) -> dict[int, list[bool]]:
    """Per generation: whether each train stage still has its weights (and a pruned mark
    exactly when it has not)."""
    out: dict[int, list[bool]] = {}
    for folder in sorted(run.glob("stages/train/*")):
        record = json.loads((folder / "_complete.json").read_text())
        kept = (folder / "model" / "model.safetensors").is_file()
        assert kept != bool(record.get("pruned"))
        assert (folder / "train.json").is_file()  # results and provenance stay
        out.setdefault(record["spec"]["generation"], []).append(kept)
    return out


def test_needed_keeps_what_is_read_and_rebuilds_what_a_later_plan_reads(tmp_path):
    every, needed = tmp_path / "all", tmp_path / "needed"
    _run(every)
    done = _run(needed, "runtime.keep_checkpoints=needed", "runtime.executor=processes",
                "runtime.workers=2")
    assert "deleted" in done.stdout
    assert _models(every) == {0: [True], 1: [True, True], 2: [True, True]}
    assert _models(needed) == {0: [False], 1: [False, False], 2: [True, True]}
    assert (needed / "metrics.csv").read_bytes() == (every / "metrics.csv").read_bytes()
    # A new metric re-runs every evaluation, which reads every generation's model: the
    # deleted ones are trained again (generation 0 first), evaluated, and deleted again.
    _run(every, MORE)
    again = _run(needed, MORE, "runtime.keep_checkpoints=needed")
    assert "3 pruned checkpoint(s) are read again" in again.stdout, again.stdout
    rebuilt = [json.loads((f / "_complete.json").read_text()).get("rebuilt")
               for f in needed.glob("stages/train/*")]
    assert sum(bool(r and r["same_weights"]) for r in rebuilt) == 3  # checked by hash
    assert _models(needed) == {0: [False], 1: [False, False], 2: [True, True]}
    assert (needed / "metrics.csv").read_bytes() == (every / "metrics.csv").read_bytes()
    # Keeping them all from now on: nothing is rebuilt that nothing reads.
    kept = _run(needed, MORE)
    assert "read again" not in kept.stdout and "deleted" not in kept.stdout
