"""The real trackers, offline: a study that stops half-way and is resumed with another
executor, read back with each tracker's own reader (MLflow's client on its SQLite store,
TensorBoard's event reader, W&B's offline transaction log parsed with W&B's protobufs): every
metric of metrics.csv at every generation exactly once, nothing more after a rerun."""

import csv
import glob
import importlib.util
import json
import math
import os
import struct
from collections import Counter, defaultdict

import pytest

from ouroboros.experiment.loop import run_study
from ouroboros.experiment.tracking import metric_key

from ..conftest import run_stopped_at

pytestmark = pytest.mark.integration

MISSING = [m for m in ("mlflow", "sqlalchemy", "tensorboard", "wandb")
           if importlib.util.find_spec(m) is None]
if MISSING and os.environ.get("OUROBOROS_REQUIRE_TRACKERS"):
    raise RuntimeError(f"OUROBOROS_REQUIRE_TRACKERS is set, but {MISSING} are not installed: "
                       "pip install -e '.[mlflow,tensorboard,wandb]'")
if MISSING:
    pytest.skip(f"tracker packages not installed: {MISSING}", allow_module_level=True)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Every tracker offline and its own files (settings, caches) in the test's folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)  # where MLflow's default store (./mlruns) would appear
    for name in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)  # its staging: the run directory
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(home / name.lower()))
    return home


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _same(logged, row):
    value = float(row["value"]) if row["value"] not in ("", "nan") else math.nan
    return (math.isnan(logged) and math.isnan(value)) or math.isclose(logged, value,
                                                                      rel_tol=1e-6)


def _mlflow(run):
    """{cell: {key: [(step, value), ...]}} and the study run, read with MLflow's client."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'trackers' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("demo")
    cells, study = {}, None
    for r in client.search_runs([exp.experiment_id]):
        if r.data.tags.get("ouroboros.kind") == "study":
            study = (r, [a.path for a in client.list_artifacts(r.info.run_id)])
            continue
        assert r.info.status == "FINISHED" and r.data.params["seed"] == "0"
        assert r.info.run_name not in cells  # one tracker run per cell
        cells[r.info.run_name] = {k: [(m.step, m.value) for m in
                                      client.get_metric_history(r.info.run_id, k)]
                                  for k in r.data.metrics}
        arts = {a.path for a in client.list_artifacts(r.info.run_id, "samples")}
        assert arts == {"samples/generation_0.json", "samples/generation_1.json"}
    return cells, study


def _tensorboard(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cells = {}
    for folder in glob.glob(str(run / "trackers" / "tensorboard" / "demo" / "*-s0" / "*")):
        acc = EventAccumulator(folder)
        acc.Reload()
        cell = os.path.basename(os.path.dirname(folder))
        assert cell not in cells
        cells[cell] = {k: [(e.step, e.value) for e in acc.Scalars(k)]
                       for k in acc.Tags()["scalars"]}
        assert {"config/text_summary", "samples/text_summary"} <= set(acc.Tags()["tensors"])
    return cells


def _wandb_records(path):
    """The records of a W&B transaction log (``run-<id>.wandb``): a 7-byte header, then
    LevelDB-style 32 KiB blocks of chunks (CRC, length, type) holding W&B Record protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _wandb(run):
    """{cell: {key: [(generation or step, value)]}} merged over a run's offline folders (a
    resumed run writes another folder with the same id), and the study run's records."""
    by_id = defaultdict(list)
    for f in sorted(glob.glob(str(run / "trackers" / "wandb" / "offline-run-*" / "*.wandb"))):
        by_id[os.path.basename(f)].extend(_wandb_records(f))
    cells, study = {}, None
    for records in by_id.values():
        kinds = [r.WhichOneof("record_type") for r in records]
        name = next(r.run.display_name for r in records if r.WhichOneof("record_type") == "run")
        if name == "demo (study)":
            study = records
            continue
        config = next(r.run.config for r in records if r.WhichOneof("record_type") == "run")
        params = {i.key: json.loads(i.value_json) for i in config.update}
        assert params["policy"] in ("replace", "accumulate"), params.get("policy")
        values = defaultdict(list)
        for r, kind in zip(records, kinds, strict=True):
            if kind != "history":
                continue
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                   for i in r.history.item}
            step_key = next((k for k in row if k == "generation" or k.endswith("/step")), None)
            for k, v in row.items():
                if k != step_key and not k.startswith("_") and isinstance(v, (int, float)):
                    values[k].append((row[step_key], v))
                elif k == "samples":
                    assert v["_type"] == "table-file" and v["nrows"] == 16
        assert name not in cells
        cells[name] = dict(values)
    return cells, study


def test_trackers_get_every_generation_once_across_a_crash_and_resume(
        tmp_path, tiny_config, offline, monkeypatch):
    run = tmp_path / "run"
    trackers = "runtime.trackers=[mlflow, tensorboard, wandb]"
    run_stopped_at(monkeypatch, tiny_config(trackers), run, "train", "accumulate-s0-g1")
    # resumed by worker processes: the driver logs, whoever built the stages
    resumed = tiny_config(trackers, "runtime.executor=processes", "runtime.workers=2")
    run_study(resumed, run, finish=lambda: _report(run))
    rows = _metrics(run)
    assert {r["cell"] for r in rows} == {"replace-s0", "accumulate-s0"}
    mlflow_cells, (study, artifacts) = _mlflow(run)
    tb_cells = _tensorboard(run)
    wandb_cells, wandb_study = _wandb(run)
    for name, cells in (("mlflow", mlflow_cells), ("tensorboard", tb_cells),
                        ("wandb", wandb_cells)):
        assert set(cells) == {"replace-s0", "accumulate-s0"}, name
        for r in rows:
            points = cells[r["cell"]][metric_key(r["metric"])]
            at = [v for step, v in points if step == int(r["generation"])]
            assert len(at) == 1, (name, r["cell"], r["metric"], points)  # once, not twice
            assert _same(at[0], r), (name, r, at)
            assert Counter(step for step, _ in points) == Counter({0: 1, 1: 1}), (name, r)
        for cell in cells.values():  # each generation's training curve, once
            assert len(cell["train/g0/train_loss"]) == len(cell["train/g1/train_loss"]) == 1
    assert study.info.status == "FINISHED" and set(artifacts) == {"report", "verdicts.md"}
    kinds = Counter(r.WhichOneof("record_type") for r in wandb_study)
    assert kinds["artifact"] == 1 and kinds["exit"] == 1
    assert not list(offline.glob(".mlflow*")) and not (tmp_path / "mlruns").exists()
    assert not list(run.rglob("mlruns"))
    # W&B staged its tables and the report in the run directory, not in the home folder
    assert not (offline / ".local" / "share" / "wandb").exists()
    assert [f for f in (run / "trackers" / "wandb" / "data").rglob("*") if f.is_file()]
    # the offline run cut by the crash was replaced (W&B does not continue one) and put aside
    assert len(list((run / "trackers" / "wandb" / "superseded").glob("offline-run-*"))) == 1

    def everything():  # as text: NaN equals NaN
        return json.dumps([_mlflow(run)[0], _tensorboard(run), _wandb(run)[0]], sort_keys=True)
    before = everything()
    run_study(resumed, run, finish=lambda: _report(run))  # finished: nothing new is logged
    assert everything() == before


def _report(run):
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "report.html").write_text("<html>report</html>")


def test_a_second_study_in_one_process_gets_a_fresh_store(tmp_path, tiny_config, offline,
                                                          capsys):
    """A notebook that deletes a run directory and runs the study again there: MLflow's
    process-wide caches must not hold the deleted database."""
    import shutil
    run = tmp_path / "run"
    cfg = tiny_config("runtime.trackers=[mlflow]")
    run_study(cfg, run)
    shutil.rmtree(run)
    run_study(cfg, run)
    assert "warning: tracker" not in capsys.readouterr().err
    cells, _ = _mlflow(run)
    assert set(cells) == {"replace-s0", "accumulate-s0"}
