"""Stages and fingerprints: skip when finished, nothing half-written, what invalidates what."""

import json

import pytest

from ouroboros.experiment.loop import plan_study
from ouroboros.experiment.rundir import RunLockedError, locked
from ouroboros.experiment.stages import RECORD, Stage, StageStore, fingerprint


def test_fingerprint_is_canonical():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_stage_built_once_and_record_last(tmp_path):
    store = StageStore(tmp_path)
    stage = Stage("x", "one", {"v": 1})
    calls = []

    def build(out):
        calls.append(out)
        (out / "data.txt").write_text("hi")
        assert not (out / RECORD).exists()  # the record is written after the outputs
        return {"n": 1}

    assert store.run(stage, build) is True
    assert store.run(stage, build) is False and len(calls) == 1
    record = json.loads((store.path(stage) / RECORD).read_text())
    assert record["fingerprint"] == stage.fp and record["info"] == {"n": 1}


def test_crash_inside_a_stage_leaves_nothing_finished(tmp_path):
    store = StageStore(tmp_path)
    stage = Stage("x", "one", {"v": 1})

    def crash(out):
        (out / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.run(stage, crash)
    assert not store.path(stage).exists() and not store.is_done(stage)
    assert store.run(stage, lambda out: None) is True  # the leftover is rebuilt, not trusted


def test_a_pruned_model_rebuilt_with_other_weights_is_refused_and_kept_pruned(tmp_path):
    from ouroboros.experiment.stages import RebuildMismatch
    store = StageStore(tmp_path, provenance={"device": "cpu", "threads": 2})
    stage = Stage("train", "g0", {"v": 1})

    def train(weights: bytes):
        def build(out):
            (out / "model").mkdir()
            (out / "model" / "model.safetensors").write_bytes(weights)
            (out / "train.json").write_text("{}")
        return build

    store.run(stage, train(b"A" * 100))
    assert store.prune(stage) == 100 and store.is_pruned(stage)
    pruned = json.loads((store.path(stage) / RECORD).read_text())["pruned"]
    store.provenance = {"device": "cpu", "threads": 1}
    with pytest.raises(RebuildMismatch, match=r"train g0: the model rebuilt .* differs from "
                       r"the deleted one \(built on cpu, 2 thread\(s\), torch \?, now cpu, "
                       r"1 thread\(s\)"):
        store.run(stage, train(b"B" * 100))
    # still the pruned stage, whole (a resume with the old settings rebuilds it again)
    assert store.is_pruned(stage) and (store.path(stage) / "train.json").is_file()
    assert json.loads((store.path(stage) / RECORD).read_text())["pruned"] == pruned
    # killed between moving the pruned folder aside and putting the rebuild in place: the
    # pruned stage comes back, hash and all, and the check still runs
    import os
    folder = store.path(stage)
    os.rename(folder, folder.parent / f".old-{folder.name}")
    assert not store.is_done(stage)
    with pytest.raises(RebuildMismatch):
        store.run(stage, train(b"B" * 100))
    assert store.run(stage, train(b"A" * 100)) is True
    record = json.loads((store.path(stage) / RECORD).read_text())
    assert record["rebuilt"]["same_weights"] is True and not record.get("pruned")
    assert (store.path(stage) / "model" / "model.safetensors").read_bytes() == b"A" * 100
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


def test_dependent_fingerprints_change_with_inputs():
    a = Stage("a", "a", {"v": 1})
    b = Stage("b", "b", {"w": 1}, {"a": a})
    b2 = Stage("b", "b", {"w": 1}, {"a": Stage("a", "a", {"v": 2})})
    assert b.fp != b2.fp


def _fps(plan):
    return {(s.kind, s.label): s.fp for s in plan.stages}


def test_generation_zero_is_shared_by_policies(tiny_config):
    plan = plan_study(tiny_config())
    labels = [(s.kind, s.label) for s in plan.stages]
    assert labels.count(("train", "s0-g0")) == 1
    assert ("train", "replace-s0-g1") in labels and ("train", "accumulate-s0-g1") in labels
    assert [c.evaluations[0] for c in plan.cells][0] is plan.cells[1].evaluations[0]


def test_changed_setting_invalidates_only_dependents(tiny_config):
    base = _fps(plan_study(tiny_config()))
    gen = _fps(plan_study(tiny_config("generation.temperature=0.7")))
    assert gen[("train", "s0-g0")] == base[("train", "s0-g0")]
    assert gen[("generate", "s0-g0")] != base[("generate", "s0-g0")]
    assert gen[("train", "replace-s0-g1")] != base[("train", "replace-s0-g1")]
    metric = _fps(plan_study(tiny_config("metrics.rare_fraction=0.3")))
    changed = {k for k in base if metric[k] != base[k]}
    assert changed == {k for k in base if k[0] == "evaluate"}
    runtime = _fps(plan_study(tiny_config("runtime.threads=2", "runtime.eval_batch_size=3")))
    assert runtime == base


def test_second_writer_is_refused(tmp_path):
    with locked(tmp_path):
        with pytest.raises(RunLockedError, match="in use"):
            with locked(tmp_path):
                pass
    with locked(tmp_path):  # released again
        pass


def test_planning_hashes_each_stage_once(tiny_config, monkeypatch):
    # Under accumulate every stage depends on all earlier samples; without caching, planning
    # rehashes that history and grows exponentially with the number of generations.
    from ouroboros.experiment import stages
    calls = []
    real = stages.fingerprint
    monkeypatch.setattr(stages, "fingerprint", lambda spec: calls.append(1) or real(spec))
    plan = plan_study(tiny_config("generations=14", "policies=[{name: accumulate}]"))
    assert len(calls) <= 2 * len(plan.stages)


def test_new_metric_version_reruns_only_evaluations(tiny_config, monkeypatch):
    from ouroboros.metrics import diversity
    base = _fps(plan_study(tiny_config()))
    monkeypatch.setattr(diversity, "VERSION", diversity.VERSION + 1)
    bumped = _fps(plan_study(tiny_config()))
    assert {k for k in base if bumped[k] != base[k]} == {k for k in base if k[0] == "evaluate"}


def test_a_new_optional_setting_left_unset_keeps_fingerprints():
    assert fingerprint({"a": 1, "new_feature": None}) == fingerprint({"a": 1})
    assert fingerprint({"a": 1, "new_feature": 0}) != fingerprint({"a": 1})
    assert fingerprint({"p": [{"x": 1, "y": None}]}) == fingerprint({"p": [{"x": 1}]})


def test_no_two_distinct_stages_share_a_random_stream():
    """A generator's own seed used to be added to the cell's seed, so the wide generator of
    cell 0 (seed offset 1) trained and sampled with cell 1's streams."""
    from ouroboros.config import load_config
    from ouroboros.experiment.builders.job import stream as _stream
    from ouroboros.experiment.loop import plan_study
    from ouroboros.experiment.stages import derive_seed
    cfg = load_config(overrides=[
        "seeds=[0, 1]", "generations=2",
        "policies=[{name: replace, generators: [{label: main, share: 0.5}, "
        "{label: wide, share: 0.5, n_embd: 96, seed: 1}]}, {name: accumulate}]"])
    seeds: dict = {}  # (cell seed, generator) -> the derived seeds of its train/generate stages
    for s in plan_study(cfg).stages:
        if s.kind in ("train", "generate"):
            g = s.spec["generation"] if s.kind == "train" else s.spec["g"]
            who = "wide" if s.label.endswith("-wide") else "study"
            seeds.setdefault((s.spec["seed"], who), set()).add(
                derive_seed(s.spec["seed"], s.kind, g, *_stream(s.spec)))
    assert not seeds[(0, "wide")] & seeds[(1, "study")]  # no other cell's streams
    assert not seeds[(0, "wide")] & seeds[(0, "study")]  # nor its own cell's main model's


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import errno

    import pytest

    from ouroboros import atomic
    path = tmp_path / "metrics.csv"
    atomic.write_atomic(path, "old\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic.write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_other_weights_can_be_accepted_and_an_unhashed_rebuild_is_not_called_the_same(
        tmp_path, capsys):
    store = StageStore(tmp_path, accept_rebuilt=True)
    stage, legacy = Stage("train", "g0", {"v": 1}), Stage("train", "g1", {"v": 2})

    def train(weights: bytes):
        def build(out):
            (out / "model").mkdir()
            (out / "model" / "model.safetensors").write_bytes(weights)
        return build

    for s in (stage, legacy):
        store.run(s, train(b"A"))
        store.prune(s)
    record = json.loads((store.path(legacy) / RECORD).read_text())
    del record["pruned"]["weights_sha256"]  # pruned before hashes were kept
    (store.path(legacy) / RECORD).write_text(json.dumps(record))
    store.run(stage, train(b"B"))
    assert "differs from the deleted one" in capsys.readouterr().out
    store.run(legacy, train(b"B"))
    rebuilt = [json.loads((store.path(s) / RECORD).read_text())["rebuilt"]["same_weights"]
               for s in (stage, legacy)]
    assert rebuilt == [False, None]


@pytest.mark.parametrize("text", ["[1, 2]", '{"fingerprint": ', "\\ud800", "[" * 100_000])
def test_a_hand_edited_or_cut_record_is_never_trusted(tmp_path, text):
    from ouroboros.experiment.stages import RECORD, Stage, StageStore
    stage = Stage("data", "s0", {"x": 1})
    store = StageStore(tmp_path)
    store.path(stage).mkdir(parents=True)
    (store.path(stage) / RECORD).write_text(text)
    assert store.record(stage) is None and not store.is_done(stage)
