"""Executors: who builds the unfinished stages of a plan (``runtime.executor``).

- ``local``: one stage at a time in this process, in plan order (the plan is topological).
- ``processes``: independent stages (cells, seeds, policies, generators) at once, each in a
  worker process of this machine with ``runtime.threads`` threads; ``runtime.workers`` workers
  (default: as many as the cores allow at that thread count).
- ``ray``: each stage a Ray task asking for ``runtime.threads`` CPUs (and one GPU on CUDA), on
  the cluster at ``runtime.ray_address`` or a local one started for the run. Every node must
  see the run directory at the same path (shared storage).

A stage is built by exactly one worker: the driver submits a stage once, when all its inputs
are finished. A worker's stage is written to a temporary folder and renamed into place with
its record last (stages.py), so a worker killed mid-stage leaves nothing that looks finished:
Ray retries the task, the processes executor stops with an error and ``resume`` rebuilds it.
Stage results do not depend on the executor: the same per-stage thread count gives the same
bytes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from ouroboros.config import DataConfig, RuntimeConfig
from ouroboros.experiment.builders import Job, build, configure_torch
from ouroboros.experiment.conditions import conditions
from ouroboros.experiment.inputs import check_files
from ouroboros.experiment.plan import Plan
from ouroboros.experiment.retention import Retention, to_build, weights_read
from ouroboros.experiment.stages import Stage, StageStore, fingerprint

RAY_TASK_RETRIES = 2  # a stage whose worker died is built again, from scratch, this often


class CodeChanged(RuntimeError):
    """The project's code was edited between planning a stage and building it."""


class StageLost(RuntimeError):
    """A worker died while building a stage (killed, out of memory, its node lost)."""


def build_stage(stage: Stage, run_dir: str, runtime: RuntimeConfig, data: DataConfig,
                provenance: dict, configure: bool = True) -> float:
    """Build one stage (unless finished) in ``run_dir``; returns the seconds it took. The
    unit of work of every executor, in whatever process runs it."""
    if configure:
        configure_torch(runtime.threads)
    start = time.perf_counter()
    if fingerprint(stage.full_spec) != stage.fp:  # the code on disk is not what was planned
        raise CodeChanged(f"{stage.kind} {stage.label}: the code behind {stage.kind} stages "
                          f"changed since this run was planned; run the same command again "
                          f"(the stages it changes are rebuilt)")
    check_files(stage.spec)
    job = Job(stage, Path(run_dir), runtime, data)
    store = StageStore(Path(run_dir), provenance, accept_rebuilt=runtime.accept_rebuilt_weights)
    store.run(stage, lambda out: build(job, out), conditions(stage.kind, stage.spec, runtime))
    return time.perf_counter() - start


AUTO_MOST = 8  # executor auto: at most this many workers unless runtime.workers says more


def cores() -> int:
    """The cores this process may use (its CPU affinity, which a container's limit sets),
    not every core of the host."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def default_workers(runtime: RuntimeConfig) -> int:
    """Workers that fit this process's cores at ``runtime.threads`` threads each (auto: at
    most AUTO_MOST, each worker holding its own models in memory)."""
    if runtime.workers:
        return runtime.workers
    fit = max(1, cores() // runtime.threads)
    return min(fit, AUTO_MOST) if runtime.executor == "auto" else fit


class _Reporter:
    """The driver's log line per finished stage."""

    def __init__(self, total: int, log: Callable[[str], None]) -> None:
        self.total, self.log, self.t0, self.built = total, log, time.perf_counter(), 0

    def done(self, index: int, stage: Stage, seconds: float) -> None:
        self.built += 1
        self.log(f"[{index}/{self.total}] {stage.kind:<9} {stage.label:<28} {seconds:6.1f}s  "
                 f"(elapsed {time.perf_counter() - self.t0:.0f}s)")


def run_local(plan: Plan, store: StageStore, runtime: RuntimeConfig, data: DataConfig,
              log: Callable[[str], None], todo: list[Stage], retention: Retention) -> int:
    """The stages to build, in plan order, in this process."""
    report = _Reporter(len(plan.stages), log)
    index = {s.fp: i for i, s in enumerate(plan.stages, 1)}
    configure_torch(runtime.threads)
    for stage in todo:
        seconds = build_stage(stage, str(store.root), runtime, data, store.provenance,
                              configure=False)
        retention.finished(stage)
        report.done(index[stage.fp], stage, seconds)
    return report.built


def _inputs(stage: Stage) -> list[Stage]:
    """What must be finished before ``stage`` is built: its inputs, and the models it loads
    that are not (a refill curation re-asks its samples' model, which a pruned checkpoint's
    rebuild may be making)."""
    direct = [d for v in stage.deps.values() for d in (v if isinstance(v, list) else [v])]
    have = {d.fp for d in direct}
    return direct + [d for d in weights_read(stage) if d.fp not in have]


def run_graph(plan: Plan, store: StageStore, submit: Callable[[Stage], Future], slots: int,
              log: Callable[[str], None], todo: list[Stage], retention: Retention,
              lost: tuple[type, ...] = ()) -> int:
    """Submit every stage to build once all its inputs are finished, at most ``slots`` at a
    time; stop submitting at the first failure, wait for the running stages (their work is
    kept) and raise it. ``lost``: the errors that mean a worker died."""
    index = {s.fp: i for i, s in enumerate(plan.stages, 1)}
    waiting = list(todo)
    finished = {s.fp for s in plan.stages} - {s.fp for s in waiting}
    report = _Reporter(len(plan.stages), log)
    running: dict[Future, Stage] = {}
    error: BaseException | None = None
    broken: BaseException | None = None  # the pool refused work: a worker died
    while waiting or running:
        if error is None and broken is None:
            for stage in [s for s in waiting if all(d.fp in finished for d in _inputs(s))]:
                if len(running) >= slots:
                    break
                try:
                    future = submit(stage)
                except lost as e:  # the running stages' futures say which one died
                    broken = e
                    break
                waiting.remove(stage)
                running[future] = stage
        if not running:
            break
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            stage = running.pop(future)
            try:
                seconds = future.result()
            except lost as e:
                error = error or StageLost(
                    f"a worker died while building {stage.kind} {stage.label} (killed, out of "
                    f"memory, or its node lost); finished stages are kept: `ouroboros resume "
                    f"{store.root}` builds the rest")
                error.__cause__ = e
                continue
            except BaseException as e:  # noqa: BLE001 - re-raised once the others finish
                error = error or e
                continue
            finished.add(stage.fp)
            retention.finished(stage)
            report.done(index[stage.fp], stage, seconds)
    if error is None and broken is not None:
        error = StageLost(f"a worker died (killed, out of memory, or its node lost); finished "
                          f"stages are kept: `ouroboros resume {store.root}` builds the rest")
        error.__cause__ = broken
    if error is not None:
        raise error
    if waiting:
        raise RuntimeError(f"{len(waiting)} stages could not be scheduled (a dependency cycle?)")
    return report.built


def _worker_start(threads: int, driver: int) -> None:
    """A process-pool worker's set-up: die with the driver. A worker that outlived a driver
    killed with SIGKILL would go on building stages after the lock is released, and a resume
    would race it. Linux delivers SIGKILL to the worker when its parent dies (PR_SET_PDEATHSIG);
    elsewhere, and should the parent have died before that was set, a watchdog thread exits
    the worker once its parent is no longer the driver."""
    import signal
    import sys
    import threading
    if sys.platform.startswith("linux"):
        import ctypes
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(0.5)
        os._exit(1)
    if os.getppid() != driver:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="driver-watchdog").start()
    configure_torch(threads)


def run_processes(plan: Plan, store: StageStore, runtime: RuntimeConfig, data: DataConfig,
                  log: Callable[[str], None], todo: list[Stage], retention: Retention) -> int:
    """Independent stages at once in worker processes of this machine."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    workers = default_workers(runtime)
    quiet = runtime.model_copy(update={"progress": False})  # bars of parallel stages garble
    # spawn, not fork: a forked copy of a process that already started torch threads can hang.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_start,
                             initargs=(runtime.threads, os.getpid())) as pool:
        log(f"executor processes: {workers} workers x {runtime.threads} threads")
        try:
            return run_graph(plan, store, lambda s: pool.submit(
                build_stage, s, str(store.root), quiet, data, store.provenance, False),
                workers, log, todo, retention, lost=(BrokenProcessPool,))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_ray(plan: Plan, store: StageStore, runtime: RuntimeConfig, data: DataConfig,
            log: Callable[[str], None], todo: list[Stage], retention: Retention) -> int:
    """Each stage a Ray task, on a cluster or a local one started (and stopped) here."""
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("runtime.executor: ray needs Ray: pip install 'ouroboros[ray]'") from e
    started = not ray.is_initialized()
    if started:
        _start_ray(ray, runtime)
    try:
        cpus = ray.cluster_resources().get("CPU", 1)
        gpu = 1 if runtime.device.startswith("cuda") else 0
        quiet = runtime.model_copy(update={"progress": False})
        task = ray.remote(build_stage).options(num_cpus=runtime.threads, num_gpus=gpu,
                                               max_retries=RAY_TASK_RETRIES)
        slots = runtime.workers or max(1, int(cpus // runtime.threads))
        log(f"executor ray: {cpus:g} CPUs in the cluster, up to {slots} stages at once")
        root = str(Path(store.root).absolute())  # workers on other nodes: not our cwd
        return run_graph(plan, store, lambda s: task.remote(
            s, root, quiet, data, store.provenance).future(), slots, log, todo, retention,
            lost=(ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError))
    finally:
        if started:
            ray.shutdown()


RAY_START_TRIES = 3  # a loaded machine can start a local head too slowly for Ray's timeouts


class ExecutorError(RuntimeError):
    """The executor could not start (a Ray head that never came up, a cluster not reached)."""


def _start_ray(ray, runtime: RuntimeConfig) -> None:
    """Join the cluster at ``runtime.ray_address``, or start a local one: on a loaded machine
    with more patience than Ray's defaults, and again after a failed start, then one error."""
    # Ray reads its system settings from RAY_<name>; its default (10-30 s) is short for a
    # head starting next to a busy test suite on two cores.
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    for attempt in range(1, RAY_START_TRIES + 1):
        try:
            ray.init(address=runtime.ray_address, include_dashboard=False, log_to_driver=True,
                     num_cpus=None if runtime.ray_address else os.cpu_count(),
                     runtime_env={"env_vars": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}})
            return
        except Exception as e:  # noqa: BLE001 - Ray raises plain Exception, TimeoutError, ...
            with contextlib.suppress(Exception):
                ray.shutdown()
            if attempt == RAY_START_TRIES or runtime.ray_address:
                where = (f"the cluster at {runtime.ray_address}" if runtime.ray_address
                         else "a local Ray head")
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ExecutorError(
                    f"runtime.executor ray: {where} did not start ({attempt} tries): "
                    f"{type(e).__name__}: {first}; finished stages are kept") from None
            time.sleep(5 * attempt)


EXECUTORS = {"local": run_local, "processes": run_processes, "ray": run_ray}


def resolve_executor(runtime: RuntimeConfig) -> str:
    """``runtime.executor`` with ``auto`` decided: processes where this machine has the cores
    for two or more workers at ``runtime.threads`` each and stages run on the CPU (measured on
    the demo with 2 cores: 2 workers x 1 thread 1.67x one process with 2 threads), else local
    (one GPU is not shared between worker processes)."""
    if runtime.executor != "auto":
        return runtime.executor
    cpu = runtime.device == "cpu" or (runtime.device == "auto" and not _cuda())
    return "processes" if cpu and default_workers(runtime) >= 2 else "local"


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


class _Finished:
    """What the driver does when a stage is finished: checkpoint retention, then ``then``
    (the trackers)."""

    def __init__(self, retention: Retention, then: Callable[[Stage], None] | None) -> None:
        self.retention, self.then = retention, then

    def finished(self, stage: Stage) -> None:
        self.retention.finished(stage)
        if self.then is not None:
            self.then(stage)


def execute(plan: Plan, store: StageStore, runtime: RuntimeConfig, data: DataConfig,
            log: Callable[[str], None], on_done: Callable[[Stage], None] | None = None) -> int:
    """Build every unfinished stage of ``plan`` (and pruned ones whose weights an unfinished
    one reads) with the configured executor, deleting weights as ``runtime.keep_checkpoints``
    says and calling ``on_done`` with each stage once it is finished, in this process;
    returns how many were built now."""
    todo = to_build(plan, store)
    rebuilt = [s for s in todo if store.is_done(s)]
    if rebuilt:
        log(f"{len(rebuilt)} pruned checkpoint(s) are read again: training them again")
    retention = Retention(plan, store, runtime.keep_checkpoints, todo)
    try:
        name = resolve_executor(runtime)
        if runtime.executor == "auto" and name == "local":
            log(f"executor local (auto: {default_workers(runtime)} worker(s) fit at "
                f"{runtime.threads} threads, or stages run on a GPU)")
        return EXECUTORS[name](plan, store, runtime, data, log, todo,
                               _Finished(retention, on_done))
    finally:
        freed = retention.sweep()
        if freed:
            log(f"keep_checkpoints {runtime.keep_checkpoints}: deleted {freed / 2**20:.1f} MiB "
                f"of model weights no remaining stage reads")
