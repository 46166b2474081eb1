"""Experiment trackers (runtime.trackers): what is logged, once, from finished stages, through a
recording tracker (the real MLflow, TensorBoard and W&B are read back in
tests/integration/test_trackers.py)."""

import csv
import math

import pytest

from ouroboros.experiment import tracking
from ouroboros.experiment.loop import run_study

from ..conftest import run_stopped_at


class Recorder(tracking.Backend):
    """A tracker that records every call, shared by every instance of a test."""

    calls: list = []
    fail_on: str | None = None
    runs = 0  # runs started, over the instances of a test

    def _call(self, *what):
        if Recorder.fail_on == what[0]:
            raise ConnectionError("tracking server went away")
        Recorder.calls.append(what)

    def where(self):
        return "memory"

    def open(self, name, params, tags, run_id=None):
        if run_id is None:
            run_id = f"{name}#{Recorder.runs}"
            Recorder.runs += 1
            self._call("new", run_id, name, dict(params), dict(tags))
        else:
            self._call("resume", run_id)
        return run_id

    def log(self, run_id, gen):
        self._call("log", run_id, gen.generation, dict(gen.metrics), gen.curves(),
                   list(gen.samples), dict(gen.signatures))

    def text(self, run_id, name, text):
        self._call("text", run_id, name, text)

    def artifact(self, run_id, folder):
        self._call("artifact", run_id, folder.name)

    def retire(self, run_id):
        self._call("retire", run_id)

    def close(self, run_id, ok=True):
        self._call("close", run_id, ok)


@pytest.fixture
def recorder(monkeypatch):
    Recorder.calls, Recorder.fail_on, Recorder.runs = [], None, 0
    monkeypatch.setitem(tracking.BACKENDS, "tensorboard", Recorder)
    monkeypatch.setitem(tracking.NEEDS, "tensorboard", ())
    return Recorder


def _logged(calls):
    """(run, generation) of every log call."""
    return [(c[1], c[2]) for c in calls if c[0] == "log"]


def _report(run):
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "report.html").write_text("<html></html>")


def _train(run, label):
    import json
    return json.loads(next((run / "stages" / "train").glob(f"{label}-*/train.json")).read_text())


def _metrics_csv(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_each_generation_is_logged_once_with_the_values_of_metrics_csv(
        tmp_path, tiny_config, recorder):
    cfg = tiny_config("runtime.trackers=[tensorboard]", "runtime.tracker_samples=3")
    run_study(cfg, tmp_path / "run", finish=lambda: _report(tmp_path / "run"))
    calls = recorder.calls
    new = [c for c in calls if c[0] == "new"]
    assert [c[2] for c in new] == ["replace-s0", "accumulate-s0", "demo (study)"]
    params = new[0][3]
    assert params["policy"] == "replace" and params["seed"] == "0"
    assert params["generations"] == "2" and params["model.n_embd"] == "16"
    assert not any(k.startswith("runtime.") for k in params)  # never a result's setting
    assert sorted(_logged(calls)) == [("accumulate-s0#1", 0), ("accumulate-s0#1", 1),
                                      ("replace-s0#0", 0), ("replace-s0#0", 1)]
    # every value is metrics.csv's, under a name every tracker takes, at step = generation
    logs = {(c[1].split("#")[0], c[2]): c for c in calls if c[0] == "log"}
    rows = _metrics_csv(tmp_path / "run")
    assert rows
    for r in rows:
        value = logs[(r["cell"], int(r["generation"]))][3][tracking.metric_key(r["metric"])]
        assert (math.isnan(value) and r["value"] in ("nan", "")) or \
            math.isclose(value, float(r["value"]), rel_tol=1e-12), r
        assert logs[(r["cell"], int(r["generation"]))][6][
            tracking.metric_key(r["metric"])] == r["signature"]
    # a training curve per generation's model, three samples per generation
    assert logs[("replace-s0", 1)][4] == {"train/g1/train_loss": [(4, pytest.approx(
        _train(tmp_path / "run", "replace-s0-g1")["history"][0]["train_loss"], rel=1e-12))]}
    assert len(logs[("replace-s0", 1)][5]) == 3
    assert [c[2] for c in calls if c[0] == "text"] == ["verdicts"]
    assert [c[2] for c in calls if c[0] == "artifact"] == ["report"]
    assert sorted(c[1] for c in calls if c[0] == "close") == sorted(c[1] for c in new)
    assert all(c[2] for c in calls if c[0] == "close")

    recorder.calls.clear()  # the same command again: nothing is logged twice
    run_study(cfg, tmp_path / "run", finish=lambda: None)
    assert recorder.calls == []


def test_a_crash_and_resume_log_every_generation_once(tmp_path, tiny_config, recorder,
                                                      monkeypatch):
    cfg = tiny_config("runtime.trackers=[tensorboard]")
    run_stopped_at(monkeypatch, cfg, tmp_path / "run", "train", "accumulate-s0-g1")
    first = list(recorder.calls)
    assert sorted(_logged(first)) == [("accumulate-s0#1", 0), ("replace-s0#0", 0),
                                      ("replace-s0#0", 1)]
    # the study stopped: the cell with every generation is complete, the other is not
    assert {c[1]: c[2] for c in first if c[0] == "close"} == {"replace-s0#0": True,
                                                              "accumulate-s0#1": False}
    recorder.calls.clear()
    run_study(cfg, tmp_path / "run")
    second = list(recorder.calls)
    # the cell's run is continued, and only what it lacked is logged
    assert ("resume", "accumulate-s0#1") in second
    assert _logged(second) == [("accumulate-s0#1", 1)]
    assert [c[2] for c in second if c[0] == "new"] == ["demo (study)"]


def test_changed_results_start_a_new_tracker_run(tmp_path, tiny_config, recorder):
    run_study(tiny_config("runtime.trackers=[tensorboard]"), tmp_path / "run")
    recorder.calls.clear()
    # another metric: every evaluate stage is rebuilt, its results are not the logged ones
    run_study(tiny_config("runtime.trackers=[tensorboard]", "metrics.names=[perplexity]"),
              tmp_path / "run")
    calls = recorder.calls
    assert ("retire", "replace-s0#0") in calls and ("retire", "accumulate-s0#1") in calls
    assert sorted(_logged(calls)) == [("accumulate-s0#4", 0), ("accumulate-s0#4", 1),
                                      ("replace-s0#3", 0), ("replace-s0#3", 1)]
    assert ("retire", "demo (study)#2") in calls  # and the study run, whose verdicts changed


def test_a_tracker_working_or_failing_changes_nothing(tmp_path, tiny_config, recorder,
                                                     capsys):
    run_study(tiny_config(), tmp_path / "plain")
    recorder.fail_on = "log"
    run_study(tiny_config("runtime.trackers=[tensorboard]"), tmp_path / "tracked")
    err = capsys.readouterr().err
    assert err.count("warning: tracker tensorboard failed (ConnectionError: tracking server "
                     "went away); the study goes on") == 1
    assert (tmp_path / "plain" / "metrics.csv").read_bytes() == \
        (tmp_path / "tracked" / "metrics.csv").read_bytes()
    recorder.fail_on = None  # a tracker that works changes nothing either
    run_study(tiny_config("runtime.trackers=[tensorboard]"), tmp_path / "working")
    assert _logged(recorder.calls)
    assert (tmp_path / "plain" / "metrics.csv").read_bytes() == \
        (tmp_path / "working" / "metrics.csv").read_bytes()


def test_a_tracker_not_installed_is_refused_before_any_work(tmp_path, tiny_config,
                                                            monkeypatch):
    from ouroboros.config import ConfigError
    monkeypatch.setitem(tracking.NEEDS, "wandb", ("ouroboros_no_such_module",))
    with pytest.raises(ConfigError, match=r"runtime.trackers.0: wandb needs "
                                          r"ouroboros_no_such_module: pip install "
                                          r"'ouroboros\[wandb\]'"):
        run_study(tiny_config("runtime.trackers=[wandb]"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_metric_names_every_tracker_takes():
    assert tracking.metric_key("kl_true_model@se") == "kl_true_model/se"
    assert tracking.metric_key("rare_recall_1g_17+") == "rare_recall_1g_17plus"
    assert tracking.metric_key("rouge-L (f)") == "rouge-L _f_"


def test_a_run_cut_while_logging_is_replaced_not_continued(tmp_path, tiny_config, recorder):
    cfg = tiny_config("runtime.trackers=[tensorboard]")
    recorder.fail_on = "log"  # the tracker fails in the middle of writing generation 0
    run_study(cfg, tmp_path / "run")
    recorder.fail_on, recorder.calls[:] = None, []
    run_study(cfg, tmp_path / "run")
    calls = recorder.calls
    assert [c[1] for c in calls if c[0] == "retire"] == ["replace-s0#0"]
    assert sorted(_logged(calls)) == [("accumulate-s0#2", 0), ("accumulate-s0#2", 1),
                                      ("replace-s0#1", 0), ("replace-s0#1", 1)]


def test_a_tracker_that_cannot_continue_a_closed_run_gets_a_new_one(
        tmp_path, tiny_config, recorder, monkeypatch):
    """W&B offline: a resumed study gives the unfinished cell a new run with every
    generation; the finished cell's run is left as it is."""
    monkeypatch.setattr(Recorder, "resumable", False, raising=False)
    cfg = tiny_config("runtime.trackers=[tensorboard]")
    run_stopped_at(monkeypatch, cfg, tmp_path / "run", "train", "accumulate-s0-g1")
    recorder.calls.clear()
    run_study(cfg, tmp_path / "run")
    calls = recorder.calls
    assert [c[1] for c in calls if c[0] == "retire"] == ["accumulate-s0#1"]
    assert sorted(_logged(calls)) == [("accumulate-s0#2", 0), ("accumulate-s0#2", 1)]
    assert not [c for c in calls if c[0] == "resume"]


def test_the_report_reaches_the_study_run_when_drawn_later(tmp_path, tiny_config, recorder):
    cfg = tiny_config("runtime.trackers=[tensorboard]")
    run_study(cfg, tmp_path / "run")  # no report
    assert not [c for c in recorder.calls if c[0] == "artifact"]
    recorder.calls.clear()
    run_study(cfg, tmp_path / "run", finish=lambda: _report(tmp_path / "run"))
    assert [c[2] for c in recorder.calls if c[0] == "artifact"] == ["report"]
    assert [c[1] for c in recorder.calls if c[0] == "retire"] == ["demo (study)#2"]
    recorder.calls.clear()
    run_study(cfg, tmp_path / "run")  # without a report again: the one with it stays
    assert recorder.calls == []


def test_a_damaged_ledger_or_another_destination_starts_new_runs(tmp_path, tiny_config,
                                                                 recorder, monkeypatch):
    import json
    cfg = tiny_config("runtime.trackers=[tensorboard]")
    run_study(cfg, tmp_path / "run")
    ledger = tmp_path / "run" / "trackers" / "ledger.json"
    data = json.loads(ledger.read_text())
    data["tensorboard"]["replace-s0"] = {"logged": {}}  # no id
    data["tensorboard"]["replace-s9"] = [1, 2]
    ledger.write_text(json.dumps(data))
    recorder.calls.clear()
    run_study(cfg, tmp_path / "run")
    assert sorted(_logged(recorder.calls)) == [("replace-s0#3", 0), ("replace-s0#3", 1)]
    monkeypatch.setattr(Recorder, "where", lambda self: "another server")
    recorder.calls.clear()
    run_study(cfg, tmp_path / "run")
    assert sorted(_logged(recorder.calls)) == [("accumulate-s0#5", 0), ("accumulate-s0#5", 1),
                                               ("replace-s0#4", 0), ("replace-s0#4", 1)]
