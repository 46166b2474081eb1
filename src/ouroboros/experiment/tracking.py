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

import contextlib
import importlib.util
import json
import logging
import os
import re
import sys
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
        path = store.path(stage) / "metrics.json"
        values = json.loads(path.read_text())["values"]
        self.generation = g
        # When the values were written (ms): the same every time they are read, so a tracker
        # that dedups identical points (MLflow) takes a repeated one once.
        self.stamp = int(path.stat().st_mtime * 1000)
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
        """Where the runs go (a run logged elsewhere is not continued)."""
        raise NotImplementedError

    resumable = True  # a closed run can be continued with more generations

    def shutdown(self) -> None:
        """Release what the tracker holds in this process once the study is done."""


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
        now = gen.stamp
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

    def shutdown(self):
        """Forget this process's cached store and database engine of the study's SQLite file
        (a later study may delete the run directory and make another at the same path)."""
        if not self.uri.startswith("sqlite:"):
            return
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry
        engine = SqlAlchemyStore._engine_map.pop(self.uri, None)
        if engine is not None:
            engine.dispose()
        TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()


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
        # An offline run is a folder of its own: a second folder with the same id does not
        # continue it (W&B restarts its steps), so more generations make a new run.
        self.resumable = self.mode != "offline"

    @contextlib.contextmanager
    def _inside(self):
        """W&B stages tables and artifacts in its data folder (``~/.local/share/wandb``): in
        the run directory instead, unless WANDB_DATA_DIR says where."""
        if os.environ.get("WANDB_DATA_DIR"):
            yield
            return
        os.environ["WANDB_DATA_DIR"] = str((self.root / "wandb" / "data").absolute())
        try:
            yield
        finally:
            os.environ.pop("WANDB_DATA_DIR", None)

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
        with self._inside():
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
        with self._inside():
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
        with self._inside():
            art.add_dir(str(folder))
            self.runs[run_id].log_artifact(art)

    def close(self, run_id, ok=True):
        with self._inside():
            self.runs.pop(run_id).finish(exit_code=0 if ok else 1)

    def retire(self, run_id):
        """An offline run another replaces: its folders move to ``wandb/superseded`` (so
        that ``wandb sync RUN/trackers/wandb/offline-run-*`` sends only current runs)."""
        aside = self.root / "wandb" / "superseded"
        for folder in (self.root / "wandb").glob(f"offline-run-*-{run_id}"):
            aside.mkdir(parents=True, exist_ok=True)
            folder.rename(aside / folder.name)


BACKENDS: dict[str, type[Backend]] = {"mlflow": MLflow, "tensorboard": TensorBoard,
                                      "wandb": WandB}


# -- the driver's side ------------------------------------------------------------------------

def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


class Tracking:
    """The trackers of one run of a study: ``sync`` after stages finish logs every evaluated
    generation not logged yet; ``finish`` logs the study run; ``close`` closes every run.

    The ledger (``RUN/trackers/ledger.json``) has, per tracker, where its runs go and per
    cell the tracker run's id, the generations it holds (evaluate stage fingerprints), the
    generation being logged (set before, cleared after: a run left with one was cut mid-write)
    and whether the run was closed (W&B writes in the background: a run it did not close may
    lack what was logged). A run cut mid-write, not closed by a tracker that cannot be trusted
    before closing, logged elsewhere, or holding other results is replaced by a new one."""

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
        """The ledger, keeping only well-formed entries (others start new runs)."""
        try:
            data = json.loads(self.ledger_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        ledger = {}
        for name, runs in (data.items() if isinstance(data, dict) else []):
            if not isinstance(runs, dict):
                continue
            ledger[name] = {k: v for k, v in runs.items() if k == "#where" or (
                isinstance(v, dict) and isinstance(v.get("id"), str)
                and isinstance(v.get("logged"), str if k == "#study" else dict))}
        return ledger

    def _start(self, name: str) -> None:
        backend = BACKENDS[name](self.root, self.project)
        self.backends[name], self.open_runs[name] = backend, set()
        runs = self.ledger.setdefault(name, {})
        where = {"where": backend.where(), "project": self.project}
        if runs.get("#where") not in (None, where):  # logged elsewhere: new runs here
            self.log(f"tracker {name}: the earlier runs went to {runs['#where']}; new runs")
            runs.clear()
        runs["#where"] = where
        self.log(f"tracker {name}: {backend.where()}")

    def _guard(self, name: str, action: Callable[[], object]) -> None:
        """Run a tracker's action; a failure warns, closes what it can and drops the tracker,
        and never raises."""
        try:
            action()
        except Exception as e:  # noqa: BLE001 - a tracker never stops the study
            first = (str(e).strip().splitlines() or [""])[0][:300]
            self.warn(f"tracker {name} failed ({type(e).__name__}: {first}); the study goes "
                      f"on without it (what it logged so far is kept)")
            backend = self.backends.pop(name, None)
            for run_id in list(self.open_runs.get(name, ())):
                with contextlib.suppress(Exception):
                    backend.close(run_id, ok=False)
            self.open_runs.get(name, set()).clear()
            with contextlib.suppress(Exception):
                backend.shutdown()

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
        read: dict[int, Generation] = {}

        def gen(g: int) -> Generation:
            if g not in read:
                read[g] = Generation(self.store, cell, g, self.cfg.runtime.tracker_samples)
            return read[g]
        for name in list(self.backends):
            self._guard(name, lambda n=name: self._log_cell(n, cell, gen))

    def _replaced(self, name: str, entry: dict | None, done: dict[int, str]) -> str:
        """Why a cell's tracker run cannot take more generations ('' if it can)."""
        if entry is None:
            return ""
        if entry.get("logging") is not None:
            return f"was cut while logging generation {entry['logging']}"
        changed = [g for g, fp in entry["logged"].items() if done.get(int(g), fp) != fp]
        if changed:
            return f"generation {changed[0]} changed since it was logged"
        backend, live = self.backends[name], entry["id"] in self.open_runs[name]
        if (not entry.get("closed") or entry.get("failed")) and not live \
                and not backend.resumable:
            return "was not closed (the study stopped)"
        new = [g for g in done if str(g) not in entry["logged"]]
        if new and not backend.resumable and not live:
            return "takes no more generations once closed (offline)"
        return ""

    def _log_cell(self, name: str, cell: Cell, gen: Callable[[int], Generation]) -> None:
        backend = self.backends[name]
        runs = self.ledger[name]
        done = {g: s.fp for g, s in enumerate(cell.evaluations) if self.store.is_done(s)}
        entry = runs.get(cell.name)
        why = self._replaced(name, entry, done)
        if why:  # a new tracker run: never two values, nor a gap, in one run
            backend.retire(entry["id"])
            self.log(f"tracker {name}: the run of {cell.name} {why}: a new run")
            entry = None
        todo = sorted(g for g in done if entry is None or str(g) not in entry["logged"])
        if not todo:
            return
        if entry is None or entry["id"] not in self.open_runs[name]:
            run_id = backend.open(cell.name, cell_params(self.cfg, cell),
                                  self._tags(cell.name, "cell"),
                                  entry["id"] if entry is not None else None)
            self.open_runs[name].add(run_id)
            entry = {"id": run_id, "logged": entry["logged"] if entry else {},
                     "logging": None, "closed": False}
            runs[cell.name] = entry
            self._save()
        for g in todo:
            entry["logging"] = g
            self._save()
            backend.log(entry["id"], gen(g))
            entry["logged"][str(g)] = done[g]
            entry["logging"] = None
            self._save()

    def _tags(self, name: str, kind: str) -> dict[str, str]:
        return {"ouroboros.study": self.cfg.name, "ouroboros.cell": name,
                "ouroboros.kind": kind, "ouroboros.run_dir": str(self.run_dir.absolute())}

    def finish(self, report: Path | None = None, verdicts: Callable[[], list[str]] | None = None
               ) -> None:
        """Once every stage is finished: what is left, the study run (the report, the
        verdicts), then every run closed."""
        self.sync()
        for name in list(self.backends):
            self._guard(name, lambda n=name: self._study(n, report, verdicts))
        for name in list(self.backends):
            self._guard(name, lambda n=name: self._complete(n))
        self.close()

    def _complete(self, name: str) -> None:
        """Runs an earlier, stopped run of the study left open that have every generation."""
        backend = self.backends[name]
        for cell, entry in self.ledger[name].items():
            if (cell not in ("#study", "#where") and entry["id"] not in self.open_runs[name]
                    and (not entry.get("closed") or entry.get("failed"))
                    and backend.resumable):
                backend.complete(entry["id"])
                entry.update(closed=True, failed=False)
        self._save()

    def _study(self, name: str, report: Path | None,
               verdicts: Callable[[], list[str]] | None) -> None:
        backend = self.backends[name]
        runs = self.ledger[name]
        said = verdicts() if verdicts is not None else []
        stamp = _stamp(said, {c: e.get("logged") for c, e in runs.items()
                              if c not in ("#study", "#where")})
        entry = runs.get("#study")
        if (entry is not None and entry.get("logged") == stamp and entry.get("closed")
                and (entry.get("report") or report is None)):
            return  # nothing new (a run without a report never replaces one with it)
        if entry is not None:
            backend.retire(entry["id"])
        run_id = backend.open(f"{self.cfg.name} (study)",
                              _flat(self.cfg.model_dump(mode="json", exclude={"runtime"})),
                              self._tags("study", "study"))
        self.open_runs[name].add(run_id)
        runs["#study"] = {"id": run_id, "logged": "", "report": False, "closed": False}
        self._save()
        if said:
            backend.text(run_id, "verdicts", "\n".join(f"- {v}" for v in said))
        if report is not None and report.is_dir():
            backend.artifact(run_id, report)
        runs["#study"].update(logged=stamp, report=report is not None)
        self._save()

    def close(self, ok: bool = True) -> None:
        """Close every open tracker run (``ok`` False: the study stopped with an error), mark
        them closed in the ledger, and release the trackers."""
        for name, ids in self.open_runs.items():
            for run_id in list(ids):
                if name in self.backends:
                    self._guard(name, lambda n=name, r=run_id: self._close(n, r, ok))
                ids.discard(run_id)
        for name in list(self.backends):
            self._guard(name, lambda n=name: self.backends.pop(n).shutdown())

    def _close(self, name: str, run_id: str, ok: bool) -> None:
        """Close a run: failed if the study stopped before the run had all it will have (a
        cell's run with every generation is complete whatever happened elsewhere)."""
        entries = [e for c, e in self.ledger[name].items()
                   if c != "#where" and e.get("id") == run_id]
        full = self.cfg.generations
        ok = ok or any(isinstance(e["logged"], dict) and len(e["logged"]) == full
                       for e in entries)
        self.backends[name].close(run_id, ok)
        for entry in entries:
            entry.update(closed=True, failed=not ok)
        self._save()


def _stamp(verdicts: list[str] | None, logged: dict) -> str:
    """What the study run is made from (the cells' logged generations, the verdicts), so that
    a rerun with nothing new logs nothing (the report's bytes carry the time it was drawn)."""
    import hashlib
    return hashlib.sha256(json.dumps([logged, verdicts or []], sort_keys=True).encode()
                          ).hexdigest()
