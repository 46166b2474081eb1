"""Runtime settings either change no byte of any result, or are build conditions that a run
directory keeps and never mixes (issue: threads 1 vs 2 changed 226 of 3,000 samples and a
re-run with threads=2 rebuilt 0 of 41 stages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ouroboros.config import load_config
from ouroboros.experiment.conditions import ConditionMismatch
from ouroboros.experiment.loop import run_study

from ..conftest import TINY

pytestmark = pytest.mark.integration

STUDY = TINY + ["policies=[{name: replace}, {name: mix, real_fraction: 0.5, "
                "curation: [{name: quality, mode: order}]}]", "metrics.bootstrap=0",
                "metrics.names=[perplexity, ground-truth, diversity]"]


def _run(out: Path, *extra: str):
    return run_study(load_config(overrides=[*STUDY, *extra]), out, log=lambda _: None)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conditions") / "run"
    _run(out)
    return out


TIMING = {"seconds", "tokens_per_second"}  # wall-clock measurements, not results


def _content(path: Path):
    """A file's bytes; for JSON, its values less wall-clock timings."""
    if path.suffix != ".json":
        return path.read_bytes()

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in TIMING}
        return [strip(x) for x in v] if isinstance(v, list) else v
    return strip(json.loads(path.read_text()))


def _state(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize(("setting", "old", "new"), [
    ("runtime.threads", "1", "2"), ("runtime.micro_batch_size", "null", "4"),
    ("runtime.eval_batch_size", "128", "7"), ("runtime.generation_batch_size", "256", "5")])
def test_a_setting_that_changes_bits_is_refused_on_finished_stages(built, setting, old, new):
    before = _state(built)
    with pytest.raises(ConditionMismatch) as e:
        _run(built, f"{setting}={new}")
    message = str(e.value)
    assert f"{setting}: " in message and f"built with {old}, this run asks for {new}" in message
    assert "\n" not in message
    assert _state(built) == before  # refused before anything was written


def test_extending_a_run_under_other_conditions_is_refused(built):
    with pytest.raises(ConditionMismatch, match="runtime.threads"):
        _run(built, "generations=3", "runtime.threads=2")


def test_the_cli_says_it_in_one_error_line(built):
    out = subprocess.run([sys.executable, "-m", "ouroboros", "run", "--no-report", "--out",
                          str(built), *STUDY, "runtime.threads=2"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "runtime.threads" in errors[0], out.stderr


def test_records_keep_the_conditions(built):
    records = [json.loads(p.read_text()) for p in built.glob("stages/*/*/_complete.json")]
    train = next(r for r in records if r["kind"] == "train")
    assert {k: v for k, v in train["conditions"].items() if not k.startswith("package ")} == {
        "device": "cpu", "threads": 1, "micro_batch_size": None, "eval_batch_size": 128}
    assert "package torch" in train["conditions"]
    assert next(r for r in records if r["kind"] == "data")["conditions"] == {}


def test_settings_that_are_not_conditions_change_no_byte(built, tmp_path):
    """Executor, workers and progress bars: every stage's files and every table are identical
    to the bytes."""
    other = tmp_path / "other"
    _run(other, "runtime.executor=processes", "runtime.workers=2", "runtime.progress=true")
    stages = sorted(p.relative_to(built) for p in built.glob("stages/*/*"))
    assert stages == sorted(p.relative_to(other) for p in other.glob("stages/*/*"))
    for stage in stages:
        for path in (built / stage).rglob("*"):
            if path.is_file() and path.name != "_complete.json":
                twin = other / path.relative_to(built)
                assert _content(path) == _content(twin), path.relative_to(built)
    for table in ("metrics.csv", "composition.csv", "slices.csv"):
        if (built / table).exists():
            assert (built / table).read_bytes() == (other / table).read_bytes()
