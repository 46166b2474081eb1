"""How the parallel executors schedule stages: what a stage waits for, and a worker pool that
breaks (the real runs are in tests/integration/test_executors.py and test_retention.py)."""

from ouroboros.config import load_config
from ouroboros.experiment.executors import _inputs
from ouroboros.experiment.plan import plan_study
from ouroboros.experiment.retention import weights_read


def test_a_stage_waits_for_every_model_it_loads_not_only_its_inputs():
    # A refill curation re-asks the model that made its samples; that model is not its input
    # (the samples are). When the model was pruned and is being rebuilt, the parallel
    # executors must not start the curation before the rebuild is finished.
    plan = plan_study(load_config(overrides=[
        "generations=3", "seeds=[0]", "policies=[{name: replace, refill: 2}]",
        "curation=[{name: dedup}]"]))
    refills = [s for s in plan.stages if s.kind == "curate" and s.spec.get("refill")]
    assert refills
    for stage in plan.stages:
        waits_for = {d.fp for d in _inputs(stage)}
        assert {d.fp for d in weights_read(stage)} <= waits_for, stage.label
    # and the refill curations do load a model that is not among their direct inputs
    assert all(weights_read(s) for s in refills)


def test_a_pool_broken_at_submit_is_a_lost_worker_not_a_traceback(tmp_path):
    from concurrent.futures import Future
    from types import SimpleNamespace

    import pytest

    from ouroboros.experiment.executors import StageLost, run_graph
    from ouroboros.experiment.stages import Stage

    class Broken(Exception):
        pass

    stages = [Stage("x", f"s{i}", {"i": i}) for i in range(3)]
    dead = Future()
    calls = []

    def submit(stage):  # the first worker dies; the pool then refuses new work
        calls.append(stage.label)
        if len(calls) > 1:
            raise Broken("pool broken")
        dead.set_exception(Broken("worker died"))
        return dead

    retention = SimpleNamespace(finished=lambda stage: None)
    with pytest.raises(StageLost, match="a worker died while building x s0"):
        run_graph(SimpleNamespace(stages=stages), SimpleNamespace(root=tmp_path), submit, 3,
                  lambda line: None, stages, retention, lost=(Broken,))
    assert calls == ["s0", "s1"]


def test_a_ray_head_that_never_starts_is_one_error_after_retries(monkeypatch):
    from types import SimpleNamespace

    import pytest

    from ouroboros.config import RuntimeConfig
    from ouroboros.experiment import executors
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        raise Exception("The current node timed out during startup.\nmore lines")
    ray = SimpleNamespace(init=init, shutdown=lambda: None)
    monkeypatch.setattr(executors.time, "sleep", lambda s: None)
    with pytest.raises(executors.ExecutorError) as e:
        executors._start_ray(ray, RuntimeConfig(executor="ray"))
    assert len(calls) == executors.RAY_START_TRIES
    assert "\n" not in str(e.value) and "timed out during startup" in str(e.value)


def test_executor_auto_runs_a_stage_per_core_on_a_cpu_and_one_process_on_a_gpu(monkeypatch):
    from ouroboros.config import RuntimeConfig
    from ouroboros.experiment import executors
    monkeypatch.setattr(executors, "cores", lambda: 2)
    monkeypatch.setattr(executors, "_cuda", lambda: False)
    assert RuntimeConfig().executor == "auto" and RuntimeConfig().threads == 1
    assert executors.resolve_executor(RuntimeConfig()) == "processes"  # 2 workers x 1 thread
    assert executors.resolve_executor(RuntimeConfig(threads=2)) == "local"  # 1 worker fits
    assert executors.resolve_executor(RuntimeConfig(device="cuda")) == "local"
    assert executors.resolve_executor(RuntimeConfig(executor="local")) == "local"
    assert executors.resolve_executor(RuntimeConfig(executor="ray")) == "ray"
    monkeypatch.setattr(executors, "_cuda", lambda: True)
    assert executors.resolve_executor(RuntimeConfig()) == "local"  # auto device: the GPU
    # a big host: auto takes at most 8 workers (each holds its models), processes all cores
    monkeypatch.setattr(executors, "cores", lambda: 64)
    assert executors.default_workers(RuntimeConfig()) == 8
    assert executors.default_workers(RuntimeConfig(executor="processes")) == 64
    assert executors.default_workers(RuntimeConfig(workers=16)) == 16
