"""Every executor gives byte-identical tables; a worker killed mid-stage leaves no stage that
looks finished (Ray retries it; the processes executor stops and resume rebuilds it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import TINY

pytestmark = pytest.mark.integration

# Two seeds x two policies: independent cells the parallel executors can run at once.
STUDY = TINY + ["seeds=[0, 1]", "policies=[{name: replace}, {name: mix, real_fraction: 0.5}]",
                "metrics.names=[perplexity, ground-truth, diversity]", "metrics.bootstrap=0"]

# Imported by every Python process started with it on PYTHONPATH (the driver, a process
# pool's workers, Ray's workers): the first attempt at building a generation-1 model kills its
# own process with SIGKILL halfway through, as a lost node or an OOM kill would.
KILLER = textwrap.dedent("""
    import os, signal
    from pathlib import Path
    if os.environ.get("KILL_MARK"):
        from ouroboros.experiment.builders import train
        real = train.build_train

        def build_train(job, out):
            mark = Path(os.environ["KILL_MARK"])
            if job.spec["generation"] == 1 and not mark.exists():
                mark.write_text(str(os.getpid()))
                (out / "half-written").write_text("x")
                os.kill(os.getpid(), signal.SIGKILL)
            return real(job, out)
        train.build_train = build_train
""")


def _run(out: Path, *extra: str, env: dict | None = None,
         command: str = "run") -> subprocess.CompletedProcess:
    args = [str(out)] if command == "resume" else ["--no-report", "--out", str(out), *STUDY,
                                                   *extra]
    return subprocess.run([sys.executable, "-m", "ouroboros", command, *args],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _killer_env(tmp_path: Path, mark: Path) -> dict:
    """Environment variables that make every Python process of a run load KILLER."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(KILLER)
    return {"KILL_MARK": str(mark),
            "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}


def _finished_looking(run_dir: Path) -> list[str]:
    """Stage folders whose name says finished but which hold no completion record."""
    return [str(p) for p in run_dir.glob("stages/*/*")
            if not p.name.startswith(".tmp-") and not (p / "_complete.json").is_file()]


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    done = _run(out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_executors_give_byte_identical_tables(local, tmp_path, executor):
    pytest.importorskip(executor) if executor == "ray" else None
    out = tmp_path / executor
    done = _run(out, f"runtime.executor={executor}", "runtime.workers=2")
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"executor {executor}" in done.stdout
    for table in ("metrics.csv", "composition.csv"):
        assert (out / table).read_bytes() == (local / table).read_bytes(), table
    stages = sorted(p.name for p in (out / "stages").glob("*/*"))
    assert stages == sorted(p.name for p in (local / "stages").glob("*/*"))


def test_processes_worker_killed_mid_stage_then_resume(local, tmp_path):
    out, mark = tmp_path / "killed", tmp_path / "mark"
    env = _killer_env(tmp_path, mark)
    done = _run(out, "runtime.executor=processes", "runtime.workers=2", env=env)
    assert done.returncode != 0 and mark.exists()
    assert "Traceback" not in done.stderr, done.stderr
    assert _finished_looking(out) == []
    resumed = _run(out, command="resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "metrics.csv").read_bytes() == (local / "metrics.csv").read_bytes()


def test_ray_retries_a_stage_whose_worker_died(local, tmp_path):
    pytest.importorskip("ray")
    out, mark = tmp_path / "killed", tmp_path / "mark"
    env = _killer_env(tmp_path, mark)
    done = _run(out, "runtime.executor=ray", "runtime.workers=2", env=env)
    assert mark.exists(), done.stdout + done.stderr  # a worker did die mid-stage
    assert done.returncode == 0, done.stderr
    assert _finished_looking(out) == [] and not list(out.glob("stages/*/.tmp-*"))
    assert (out / "metrics.csv").read_bytes() == (local / "metrics.csv").read_bytes()


# Each worker writes its pid when it starts a generation-1 model, then takes its time, so that
# the driver can be killed while workers are busy.
SLOW = textwrap.dedent("""
    import os, time
    from pathlib import Path
    if os.environ.get("PID_DIR"):
        from ouroboros.experiment.builders import train
        real = train.build_train

        def build_train(job, out):
            if job.spec["generation"] == 1:
                (Path(os.environ["PID_DIR"]) / str(os.getpid())).write_text("")
                time.sleep(4)
            return real(job, out)
        train.build_train = build_train
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_workers_die_with_a_driver_killed_by_sigkill_and_resume_finishes(local, tmp_path):
    import signal
    import time
    out, pids = tmp_path / "driver-killed", tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW)
    env = {**os.environ, "PID_DIR": str(pids),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}
    driver = subprocess.Popen(
        [sys.executable, "-m", "ouroboros", "run", "--no-report", "--out", str(out), *STUDY,
         "runtime.executor=processes", "runtime.workers=2"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(pids.iterdir()) and time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
    workers = [int(p.name) for p in pids.iterdir()]
    assert workers, "no worker started a generation-1 model"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "workers outlived their driver"
    resumed = _run(out, command="resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "metrics.csv").read_bytes() == (local / "metrics.csv").read_bytes()
