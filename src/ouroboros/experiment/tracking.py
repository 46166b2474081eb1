"""Experiment trackers (``runtime.trackers``): MLflow, TensorBoard and Weights & Biases get the
study as it runs, read from its finished stages.

- A tracker run per cell (policy x seed) under the study's project (``runtime.tracker_project``,
  default the study's name): the config as parameters (the study's settings and the cell's
  policy and seed), every metric of metrics.csv with step = generation, the training-loss
  curve of each generation's model, a table of samples per generation
  (``runtime.tracker_samples``) and the metrics' signatures.
- A study run, once every stage is finished: the report's folder as an artifact and the
  run's verdicts as text.

What is logged comes from the finished evaluate stages, in the driver process, whichever
executor built them; ``RUN/trackers/ledger.json`` records each tracker run's id and which
generation (with its evaluate stage's fingerprint) it has, so a resumed run logs what is new
and never logs a generation twice. A generation whose results changed (another config or
code rebuilt its stages) starts a new tracker run for its cell; the old one is tagged
superseded where the tracker can tag. A tracker that fails warns once and is left out for
the rest of the run: it never stops a study nor changes a result (runtime settings never
enter a fingerprint).

Where it goes: ``RUN/trackers/mlflow.db`` (SQLite; artifacts in ``RUN/trackers/mlflow``)
unless ``MLFLOW_TRACKING_URI`` names a server or store; ``RUN/trackers/tensorboard/<project>/
<cell>/<id>``; W&B offline in ``RUN/trackers/wandb`` unless ``WANDB_MODE`` says otherwise
(``wandb sync`` uploads an offline run later).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ouroboros.config import RuntimeConfig, StudyConfig
from ouroboros.experiment import rundir
from ouroboros.experiment.plan import Cell, Plan
from ouroboros.experiment.samples import sample_row
from ouroboros.experiment.stages import Stage, StageStore, read_jsonl

TRACKERS = ("mlflow", "tensorboard", "wandb")
# The modules each tracker needs, and the extra that installs them.
NEEDS = {"mlflow": ("mlflow", "sqlalchemy", "alembic"), "tensorboard": ("tensorboard",),
         "wandb": ("wandb",)}
SAMPLE_COLUMNS = ["id", "generator", "prompt", "text", "words", "finished",
                  "reference_perplexity"]
PARAM_MAX = 500  # characters of a parameter's value (MLflow takes at most 6,000)


def tracker_problems(runtime: RuntimeConfig) -> list[str]:
    """Trackers asked for whose packages are not installed."""
    problems = []
    for i, name in enumerate(runtime.trackers):
        missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(f"runtime.trackers.{i}: {name} needs {', '.join(missing)}: "
                            f"pip install 'ouroboros[{name}]'")
    return problems


def metric_key(name: str) -> str:
    """A metric's name as every tracker accepts it (MLflow: letters, digits, ``_ - . /``
    and spaces): ``kl_true_model@se`` -> ``kl_true_model/se``, ``rare_recall_1g_17+`` ->
    ``rare_recall_1g_17plus``."""
    return re.sub(r"[^\w\-./ ]", "_", name.replace("@", "/").replace("+", "plus"))


def _flat(data, prefix: str = "") -> dict[str, str]:
    """A nested config as dotted parameters, each value as text."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    text = data if isinstance(data, str) else json.dumps(data)
    out[prefix.rstrip(".")] = text if len(text) <= PARAM_MAX else text[:PARAM_MAX - 1] + "…"
    return out


def cell_params(cfg: StudyConfig, cell: Cell) -> dict[str, str]:
    """The parameters of a cell's tracker run: the study's settings that change results
    (runtime and the other policies and seeds left out), its policy and seed."""
    study = cfg.model_dump(mode="json", exclude={"runtime", "policies", "seeds"})
    return {**_flat(study), **_flat(cell.policy.model_dump(mode="json"), "policy."),
            "policy": cell.policy.display, "seed": str(cell.seed), "study": cfg.name}


def _markdown(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table (TensorBoard's text plugin renders it)."""
    def cell(v) -> str:
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")[:300]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


class Generation:
    """What a cell's tracker run gets for one generation, read from its finished stages."""

    def __init__(self, store: StageStore, cell: Cell, g: int, k: int) -> None:
        stage = cell.evaluations[g]
        values = json.loads((store.path(stage) / "metrics.json").read_text())["values"]
        self.generation = g
        self.metrics = {metric_key(v["metric"]): float(v["value"]) for v in values
                        if isinstance(v.get("value"), (int, float))}
        self.signatures = {metric_key(v["metric"]): v.get("signature", "") for v in values}
        train = store.path(stage.deps["model"]) / "train.json"
        self.history = (json.loads(train.read_text()).get("history", [])
                        if train.is_file() else [])
        samples = store.path(stage.deps["samples"]) / "samples.jsonl"
        ppl_path = store.path(stage) / "sample_perplexity.json"
        ppl = json.loads(ppl_path.read_text())["values"] if ppl_path.is_file() else []
        rows = []
        if k and samples.is_file():
            for i, r in enumerate(read_jsonl(samples)):
                if i >= k:
                    break
                rows.append(sample_row(cell.policy.display, cell.seed, g, r,
                                       ppl[i] if i < len(ppl) else None))
        self.samples = [{c: r[c] for c in SAMPLE_COLUMNS} for r in rows]

    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """The training curve by optimiser step: train_loss and valid_loss where measured."""
        out: dict[str, list[tuple[int, float]]] = {}
        for record in self.history:
            for name in ("train_loss", "valid_loss"):
                v = record.get(name)
                if isinstance(v, (int, float)) and record.get("step") is not None:
                    out.setdefault(f"train/g{self.generation}/{name}", []).append(
                        (int(record["step"]), float(v)))
        return out


# -- the trackers -----------------------------------------------------------------------------

class Backend:
    """One tracker: opens runs (new, or continued by the id ``open`` gave), logs a
    generation, closes them."""

    name = ""

    def __init__(self, root: Path, project: str) -> None:
        self.root, self.project = root, project

    def open(self, name: str, params: dict[str, str], tags: dict[str, str],
             run_id: str | None = None) -> str:
        """Start a tracker run (``run_id`` None) or continue one; returns its id."""
        raise NotImplementedError

    def log(self, run_id: str, gen: Generation) -> None:
        raise NotImplementedError

    def text(self, run_id: str, name: str, text: str) -> None:
        raise NotImplementedError

    def artifact(self, run_id: str, folder: Path) -> None:
        raise NotImplementedError

    def retire(self, run_id: str) -> None:
        """Mark a run whose results rebuilt stages replaced (where the tracker can)."""

    def complete(self, run_id: str) -> None:
        """Mark a run that has every generation, not opened again by this run of the study
        (an earlier run that stopped left it failed, where the tracker keeps a status)."""

    def close(self, run_id: str, ok: bool = True) -> None:
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


class MLflow(Backend):
    name = "mlflow"

    def __init__(self, root: Path, project: str) -> None:
        super().__init__(root, project)
        # Offline by default: no usage telemetry unless the user allows it.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient
        for quiet in ("mlflow", "alembic"):  # table creation notes on every new store
            logging.getLogger(quiet).setLevel(logging.WARNING)
        local = not os.environ.get("MLFLOW_TRACKING_URI")
        self.uri = (f"sqlite:///{(root / 'mlflow.db').absolute()}" if local
                    else os.environ["MLFLOW_TRACKING_URI"])
        root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(project)
        self.experiment = exp.experiment_id if exp is not None else self.client.create_experiment(
            project, artifact_location=(root / "mlflow").absolute().as_uri() if local else None)

    def where(self):
        return self.uri

    def open(self, name, params, tags, run_id=None):
        from mlflow.entities import Param
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run_id = self.client.create_run(self.experiment, run_name=name, tags=tags).info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 parameters a call
            self.client.log_batch(run_id, params=items[i:i + 100])
        return run_id

    def log(self, run_id, gen):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, gen.generation) for k, v in gen.metrics.items()]
        metrics += [Metric(k, v, now, step) for k, points in gen.curves().items()
                    for step, v in points]
        for i in range(0, len(metrics), 1000):  # MLflow takes 1,000 metrics a call
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])
        self.client.log_dict(run_id, gen.signatures,
                             f"signatures/generation_{gen.generation}.json")
        if gen.samples:
            self.client.log_dict(run_id, {"columns": SAMPLE_COLUMNS,
                                          "data": [[r[c] for c in SAMPLE_COLUMNS]
                                                   for r in gen.samples]},
                                 f"samples/generation_{gen.generation}.json")

    def text(self, run_id, name, text):
        self.client.log_text(run_id, text, f"{name}.md")

    def artifact(self, run_id, folder):
        self.client.log_artifacts(run_id, str(folder), folder.name)

    def retire(self, run_id):
        self.client.set_tag(run_id, "ouroboros.superseded", "true")

    def complete(self, run_id):
        if self.client.get_run(run_id).info.status != "FINISHED":
            self.client.set_terminated(run_id, "FINISHED")

    def close(self, run_id, ok=True):
        self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")


class TensorBoard(Backend):
    name = "tensorboard"

    def __init__(self, root: Path, project: str) -> None:
        super().__init__(root, project)
        from torch.utils.tensorboard import SummaryWriter
        self.writer_class, self.writers = SummaryWriter, {}

    def where(self):
        return str(self.root / "tensorboard" / _safe(self.project))

    def open(self, name, params, tags, run_id=None):
        new = run_id is None
        run_id = run_id or f"{_safe(name)}/{_new_id()}"
        self.writers[run_id] = self.writer_class(str(Path(self.where()) / run_id))
        if new:
            self.writers[run_id].add_text("config", _markdown(
                [{"parameter": k, "value": v} for k, v in {**tags, **params}.items()],
                ["parameter", "value"]), 0)
        return run_id

    def log(self, run_id, gen):
        w = self.writers[run_id]
        for k, v in gen.metrics.items():
            w.add_scalar(k, v, gen.generation)
        for k, points in gen.curves().items():
            for step, v in points:
                w.add_scalar(k, v, step)
        w.add_text("signatures", _markdown([{"metric": k, "signature": v} for k, v in
                                            gen.signatures.items()], ["metric", "signature"]),
                   gen.generation)
        if gen.samples:
            w.add_text("samples", _markdown(gen.samples, SAMPLE_COLUMNS), gen.generation)
        w.flush()

    def text(self, run_id, name, text):
        self.writers[run_id].add_text(name, text, 0)

    def artifact(self, run_id, folder):  # TensorBoard keeps no files: where the report is
        self.writers[run_id].add_text("report", f"{folder.absolute()}/index.html", 0)

    def close(self, run_id, ok=True):
        self.writers.pop(run_id).close()


class WandB(Backend):
    name = "wandb"

    def __init__(self, root: Path, project: str) -> None:
        super().__init__(root, project)
        import wandb
        self.wandb, self.runs, self.defined = wandb, {}, {}
        self.mode = os.environ.get("WANDB_MODE") or "offline"

    def where(self):
        return (f"{self.mode} in {self.root / 'wandb'}"
                + (" (`wandb sync` uploads it)" if self.mode == "offline" else ""))

    def open(self, name, params, tags, run_id=None):
        wandb = self.wandb
        run_id = run_id or _new_id()
        self.root.mkdir(parents=True, exist_ok=True)
        # symlink False: no latest-run link (ouroboros refuses links in a run directory)
        settings = wandb.Settings(console="off", silent=True, symlink=False,
                                  x_disable_stats=True, x_disable_meta=True,
                                  x_disable_machine_info=True)
        self.runs[run_id] = wandb.init(
            project=_safe(self.project), group=tags["ouroboros.study"], name=name, id=run_id,
            resume="allow", mode=self.mode, dir=str(self.root), config=params,
            tags=[tags["ouroboros.kind"]], job_type=tags["ouroboros.kind"],
            reinit="create_new", settings=settings)
        self.defined[run_id] = set()
        return run_id

    def _define(self, run_id: str, key: str, step: str | None = None) -> None:
        if key not in self.defined[run_id]:
            if step is None:
                self.runs[run_id].define_metric(key)
            else:
                self.runs[run_id].define_metric(key, step_metric=step)
            self.defined[run_id].add(key)

    def log(self, run_id, gen):
        run, wandb = self.runs[run_id], self.wandb
        self._define(run_id, "generation")
        for k in gen.metrics:
            self._define(run_id, k, "generation")
        tables = {"signatures": wandb.Table(columns=["metric", "signature"],
                                            data=[[k, v] for k, v in gen.signatures.items()])}
        if gen.samples:
            tables["samples"] = wandb.Table(columns=SAMPLE_COLUMNS, data=[
                [r[c] for c in SAMPLE_COLUMNS] for r in gen.samples])
        run.log({"generation": gen.generation, **gen.metrics, **tables})
        for k, points in gen.curves().items():
            step_key = k.rsplit("/", 1)[0] + "/step"
            self._define(run_id, step_key)
            self._define(run_id, k, step_key)
            for step, v in points:
                run.log({step_key: step, k: v})

    def text(self, run_id, name, text):
        self.runs[run_id].summary[name] = text

    def artifact(self, run_id, folder):
        art = self.wandb.Artifact(_safe(f"{self.project}-{folder.name}"), type=folder.name)
        art.add_dir(str(folder))
        self.runs[run_id].log_artifact(art)

    def close(self, run_id, ok=True):
        self.runs.pop(run_id).finish(exit_code=0 if ok else 1)


BACKENDS: dict[str, type[Backend]] = {"mlflow": MLflow, "tensorboard": TensorBoard,
                                      "wandb": WandB}


# -- the driver's side ------------------------------------------------------------------------

def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


class Tracking:
    """The trackers of one run of a study: ``sync`` after stages finish logs every evaluated
    generation not logged yet; ``finish`` logs the study run; ``close`` closes every run."""

    def __init__(self, cfg: StudyConfig, plan: Plan, store: StageStore, run_dir: Path,
                 log: Callable[[str], None] = lambda _: None,
                 warn: Callable[[str], None] = _warn) -> None:
        self.cfg, self.plan, self.store, self.run_dir = cfg, plan, store, Path(run_dir)
        self.root = self.run_dir / "trackers"
        self.ledger_path = self.root / "ledger.json"
        self.warn, self.log = warn, log
        self.project = cfg.runtime.tracker_project or cfg.name
        self.backends: dict[str, Backend] = {}
        self.open_runs: dict[str, set[str]] = {}
        self.where: dict[str, list[Cell]] = {}  # generation 0 is shared by the policies
        for cell in plan.cells:
            for s in cell.evaluations:
                self.where.setdefault(s.fp, []).append(cell)
        self.ledger = self._read_ledger() if cfg.runtime.trackers else {}
        for name in cfg.runtime.trackers:
            self._guard(name, lambda n=name: self._start(n))

    def _read_ledger(self) -> dict:
        try:
            data = json.loads(self.ledger_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def _start(self, name: str) -> None:
        backend = BACKENDS[name](self.root, self.project)
        self.backends[name], self.open_runs[name] = backend, set()
        self.log(f"tracker {name}: {backend.where()}")

    def _guard(self, name: str, action: Callable[[], object]) -> None:
        """Run a tracker's action; a failure warns, drops the tracker and never raises."""
        try:
            action()
        except Exception as e:  # noqa: BLE001 - a tracker never stops the study
            first = (str(e).strip().splitlines() or [""])[0][:300]
            self.warn(f"tracker {name} failed ({type(e).__name__}: {first}); the study goes "
                      f"on without it (what it logged so far is kept)")
            self.backends.pop(name, None)

    def _save(self) -> None:
        self.root.mkdir(exist_ok=True)
        rundir.write_json(self.ledger_path, self.ledger)

    def sync(self, stage: Stage | None = None) -> None:
        """Log what is finished and not logged yet: of every cell (``stage`` None) or of the
        cell of a just-finished evaluate stage."""
        if not self.backends:
            return
        if stage is None:
            for cell in self.plan.cells:
                self._cell(cell)
        else:
            for cell in self.where.get(stage.fp, []):
                self._cell(cell)

    def _cell(self, cell: Cell) -> None:
        done = [(g, s) for g, s in enumerate(cell.evaluations) if self.store.is_done(s)]
        read: dict[int, Generation] = {}

        def gen(g: int) -> Generation:
            if g not in read:
                read[g] = Generation(self.store, cell, g, self.cfg.runtime.tracker_samples)
            return read[g]
        for name in list(self.backends):
            self._guard(name, lambda n=name: self._log_cell(n, cell, done, gen))

    def _log_cell(self, name: str, cell: Cell, done: list[tuple[int, Stage]],
                  gen: Callable[[int], Generation]) -> None:
        backend = self.backends[name]
        runs = self.ledger.setdefault(name, {})
        entry = runs.get(cell.name) or {"id": None, "logged": {}}
        changed = [g for g, s in done if entry["logged"].get(str(g), s.fp) != s.fp]
        if changed:  # results rebuilt: a new tracker run, never two results for one step
            if entry["id"] is not None:
                backend.retire(entry["id"])
            self.log(f"tracker {name}: {cell.name} generation {changed[0]} changed since it "
                     f"was logged: a new tracker run")
            entry = {"id": None, "logged": {}}
        todo = [(g, s) for g, s in done if str(g) not in entry["logged"]]
        if not todo:
            return
        if entry["id"] is None or entry["id"] not in self.open_runs[name]:
            entry["id"] = backend.open(cell.name, cell_params(self.cfg, cell),
                                       self._tags(cell.name, "cell"), entry["id"])
            self.open_runs[name].add(entry["id"])
            runs[cell.name] = entry
            self._save()
        for g, s in todo:
            backend.log(entry["id"], gen(g))
            entry["logged"][str(g)] = s.fp
            self._save()

    def _tags(self, name: str, kind: str) -> dict[str, str]:
        return {"ouroboros.study": self.cfg.name, "ouroboros.cell": name,
                "ouroboros.kind": kind, "ouroboros.run_dir": str(self.run_dir.absolute())}

    def finish(self, report: Path | None = None, verdicts: list[str] | None = None) -> None:
        """Once every stage is finished: what is left, the study run (the report, the
        verdicts), then every run closed."""
        self.sync()
        for name in list(self.backends):
            self._guard(name, lambda n=name: self._study(n, report, verdicts))
        for name in list(self.backends):
            for cell, entry in self.ledger.get(name, {}).items():
                if cell != "#study" and entry["id"] not in self.open_runs[name]:
                    self._guard(name, lambda n=name, r=entry["id"]: self.backends[n].complete(r))
        self.close()

    def _study(self, name: str, report: Path | None, verdicts: list[str] | None) -> None:
        backend = self.backends[name]
        runs = self.ledger.setdefault(name, {})
        stamp = _stamp(verdicts, {c: e.get("logged") for c, e in runs.items()
                                  if c != "#study"})
        entry = runs.get("#study") or {"id": None}
        if entry.get("logged") == stamp:
            return
        if entry["id"] is not None:
            backend.retire(entry["id"])
        run_id = backend.open(f"{self.cfg.name} (study)",
                              _flat(self.cfg.model_dump(mode="json", exclude={"runtime"})),
                              self._tags("study", "study"))
        self.open_runs[name].add(run_id)
        if verdicts:
            backend.text(run_id, "verdicts", "\n".join(f"- {v}" for v in verdicts))
        if report is not None and report.is_dir():
            backend.artifact(run_id, report)
        runs["#study"] = {"id": run_id, "logged": stamp}
        self._save()

    def close(self, ok: bool = True) -> None:
        """Close every open tracker run (``ok`` False: the study stopped with an error)."""
        for name, ids in self.open_runs.items():
            for run_id in list(ids):
                if name in self.backends:
                    self._guard(name, lambda n=name, r=run_id: self.backends[n].close(r, ok))
                ids.discard(run_id)


def _stamp(verdicts: list[str] | None, logged: dict) -> str:
    """What the study run is made from (the cells' logged generations, the verdicts), so that
    a rerun with nothing new logs nothing (the report's bytes carry the time it was drawn)."""
    import hashlib
    return hashlib.sha256(json.dumps([logged, verdicts or []], sort_keys=True).encode()
                          ).hexdigest()
