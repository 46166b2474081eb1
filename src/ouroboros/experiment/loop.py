"""Running a study: check it, plan it, build its stages with the configured executor, export
its tables. Planning is in plan.py, each stage kind's build in builders/, the executors in
executors.py and the tables in export.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ouroboros import registry
from ouroboros.config import ConfigError, ModelConfig, StudyConfig, dump_config, notices
from ouroboros.data.sources import RealSplits
from ouroboros.experiment import executors, rundir
from ouroboros.experiment.builders.data import real_splits
from ouroboros.experiment.conditions import ConditionMismatch, mismatches
from ouroboros.experiment.export import export_tables
from ouroboros.experiment.inputs import pinned
from ouroboros.experiment.plan import Plan, cell_curation, make_source, plan_study
from ouroboros.experiment.stages import StageStore
from ouroboros.experiment.tracking import Tracking, tracker_problems

__all__ = ["plan_study", "preflight", "run_study", "study_status", "resolve_device"]


def _log(line: str) -> None:
    print(line, flush=True)  # stage lines reach a pipe or a log file as they happen


def plan_problems(cfg: StudyConfig, splits: RealSplits, source) -> list[str]:
    """What would fail after generation 0 is trained, from the sizes of the real data: a
    policy that takes more synthetic examples than a generation yields, ``fresh`` running
    out of never-used real data, ground-truth sentences longer than the model's context."""
    problems = []
    size = len(splits.train)
    requests = cfg.generation.num_samples or size
    for i, p in enumerate(cfg.policies):
        if p.name not in ("mix", "fresh") or cfg.generations < 2:
            continue
        n_real = round(p.real_fraction * size)
        most, why = requests * (p.candidates or cfg.generation.candidates), ""
        for s in cell_curation(cfg, p):  # steps that keep at most a known number
            if s.name == "best-of-n":
                most, why = min(most, requests), f"{why}, best-of-n keeps one per request"
            elif s.keep_fraction is not None and s.mode == "filter":
                most = max(1, int(round(s.keep_fraction * most)))  # as the step rounds
                why += f", {s.name} keeps {s.keep_fraction:g} of them"
        if most < size - n_real:
            problems.append(
                f"policies.{i}: {p.display} takes {size - n_real} synthetic examples a "
                f"generation, but a generation yields at most {most} (generation.num_samples"
                f"={requests} for {size} real training examples{why})")
        needed = (cfg.generations - 1) * n_real
        capacity = getattr(source, "fresh_capacity", None)
        if p.name == "fresh" and capacity is not None and needed > capacity():
            problems.append(
                f"policies.{i}: {p.display} needs {needed} never-used problems over "
                f"{cfg.generations - 1} generations, but only {capacity()} remain after the "
                f"splits (data.arithmetic: more digits or operators, or smaller splits)")
        if p.name == "fresh" and splits.pool is not None and needed > len(splits.pool):
            problems.append(
                f"policies.{i}: {p.display} needs {needed} never-used real examples over "
                f"{cfg.generations - 1} generations, but the data leave {len(splits.pool)} "
                f"after the training split; lower real_fraction or generations, or "
                f"data.train_size")
    for i, p in enumerate(cfg.policies):  # back-translation reads never-used real examples
        if p.backtranslation is None:
            continue
        needed = cfg.generations * (p.backtranslation.size or size)
        capacity = getattr(source, "fresh_capacity", None)
        left = (capacity() if capacity is not None else
                len(splits.pool) if splits.pool is not None else None)
        if left is not None and needed > left:
            problems.append(
                f"policies.{i}.backtranslation: {p.display} needs {needed} never-used real "
                f"examples over {cfg.generations} generations, but the data leave {left} "
                f"after the splits; lower backtranslation.size or generations, or "
                f"data.train_size")
    answer = getattr(registry.TASKS.get(cfg.task.name)(cfg.task), "answer", None)
    for name, rows in (("train", splits.train), ("test", splits.test)):
        silent = [e for e in rows if answer is not None and answer(e["target"]) is None]
        if silent:
            problems.append(
                f"data: {len(silent)} of {len(rows)} real {name} targets state no answer "
                f"task {cfg.task.name} can check (first: {silent[0]['id']}: "
                f"{silent[0]['target'][-60:]!r}); fix the data or task.answer_pattern")
    truth = getattr(source, "truth", None)
    if (truth is not None and "ground-truth" in cfg.metrics.names
            and cfg.model.tokenizer == "word" and cfg.model.name == "tiny-gpt2"):
        longest = max(len(e["target"].split()) for e in splits.test)
        if longest + 2 > cfg.model.context_length:  # [BOS] words [EOS]
            problems.append(f"model.context_length: {cfg.model.context_length} tokens cut "
                            f"real test sentences of {longest} words (+ BOS, EOS); sentence "
                            f"probabilities (kl_true_model) need at least {longest + 2}")
    return problems


def server_problems(cfg: StudyConfig, run_dir: Path | None = None) -> list[str]:
    """Server generators and teachers that would fail their first request (key unset or
    refused, server unreachable, model not served), checked once each; in a run directory
    only those whose samples are not all made yet."""
    plan = plan_study(cfg) if run_dir is not None else None
    store = StageStore(run_dir) if run_dir is not None else None
    seen, problems = set(), []
    servers = [(f"policies.{i}.generators.{j}.server", g.server)
               for i, p in enumerate(cfg.policies) for j, g in enumerate(p.generators or [])
               if g.server is not None]
    servers += [(f"policies.{i}.teacher.server", p.teacher.server)
                for i, p in enumerate(cfg.policies)
                if p.teacher is not None and p.teacher.server is not None]
    for where, server in servers:
        if server.model_dump_json() in seen:
            continue
        if plan is not None and all(store.is_done(s) for s in plan.stages
                                    if s.access.get("server") == server.model_dump()):
            continue
        seen.add(server.model_dump_json())
        from ouroboros.generation.server import check
        problems += check(server, where)
    return problems


def preflight(cfg: StudyConfig, run_dir: Path | None = None, check_device: bool = True) -> None:
    """Everything that can fail before training, checked before anything is written: the
    data of the first seed reads and splits, the model can be loaded, server generators
    answer."""
    task = registry.TASKS.get(cfg.task.name)(cfg.task)
    source = make_source(cfg)
    problems = []
    for seed in cfg.seeds:  # each seed has its own training subset and fresh pool
        problems += plan_problems(cfg, real_splits(cfg.data, cfg.task, source, task, seed), source)
        if getattr(source, "exact_sizes", False):
            break  # the grammar: every seed has the configured sizes and an endless pool
    if check_device:
        problems += device_problems(cfg.runtime.device)
    if "traits" in cfg.metrics.names:  # read only at evaluation, after generation 0 trained
        from ouroboros.metrics.traits import labeled_problems
        for i, t in enumerate(cfg.metrics.traits):
            if t.file is not None and not Path(t.file).is_file():
                what = "is a directory, not a file" if Path(t.file).is_dir() else "no such file"
                problems.append(f"metrics.traits.{i}.file: {t.file}: {what}")
            elif t.scorer == "classifier":
                problems += [f"metrics.traits.{i}: {p}" for p in labeled_problems(t)]
    problems += server_problems(cfg, run_dir)
    problems += tracker_problems(cfg.runtime)
    if problems:
        raise ConfigError(sorted(set(problems)), "study plan")
    registry.MODELS.get(cfg.model.name)().check(cfg.model)
    for generator in {g.label: g for p in cfg.policies for g in (p.generators or [])
                      if g.own_family}.values():
        model = ModelConfig.model_validate(generator.model_settings(cfg.model))
        registry.MODELS.get(model.name)().check(model)


def resolve_device(name: str) -> str:
    """``runtime.device`` as a torch device: auto is cuda where PyTorch sees a GPU, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def device_problems(name: str) -> list[str]:
    """A CUDA device asked for that this machine's PyTorch cannot use."""
    if not name.startswith("cuda"):
        return []
    if not torch.cuda.is_available():
        return [f"runtime.device: {name} asked for, but PyTorch {torch.__version__} sees no "
                "CUDA device here (use auto or cpu)"]
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return [f"runtime.device: {name} asked for, but there are "
                f"{torch.cuda.device_count()} CUDA device(s)"]
    return []


def configure_torch(cfg: StudyConfig) -> None:
    """Threads and deterministic kernels for reproducible stages; quiet library logs."""
    executors.configure_torch(cfg.runtime.threads)


def run_study(cfg: StudyConfig, run_dir: Path, log: Callable[[str], None] = _log,
              finish: Callable[[], None] | None = None) -> Plan:
    """Run (or resume) a study in ``run_dir``; finished stages with matching fingerprints are
    skipped. Writes config.yaml, manifest.json, the stages and metrics.csv; then ``finish``
    (the summary and report), still holding the lock. manifest.json gets ``finished`` only
    once everything is written, which is what ``status`` calls complete."""
    run_dir = Path(run_dir)
    # Hub names resolved to commits once, and written so into config.yaml: resume and status
    # read the same commits, whatever the Hub's main points to later.
    cfg = pinned(cfg)
    preflight(cfg, run_dir)
    with rundir.locked(run_dir):
        # Stages see the device that runs them (auto resolved); config.yaml keeps the setting.
        resolved = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(
            update={"device": resolve_device(cfg.runtime.device)})})
        plan = plan_study(resolved)
        store = StageStore(run_dir)
        mixed = mismatches([r for s in plan.stages if (r := store.record(s))], resolved.runtime)
        if mixed:  # before anything is written: the run directory stays as it was
            raise ConditionMismatch("; ".join(mixed))
        rundir.write_config(run_dir, dump_config(cfg))
        cfg = resolved
        prov = rundir.provenance(cfg.runtime.device, cfg.runtime.threads,
                                  cfg.training.precision)
        info = {**rundir.manifest(run_dir, prov), "notices": notices(cfg),
                "executor": executors.resolve_executor(cfg.runtime)}
        rundir.write_json(run_dir / "manifest.json", info)
        store = StageStore(run_dir, prov)
        done = sum(store.is_done(s) for s in plan.stages)
        log(f"study {cfg.name}: {len(plan.cells)} cells, {len(plan.stages)} stages "
            f"({done} already finished) in {run_dir}")
        tracking = Tracking(cfg, plan, store, run_dir, log)
        try:
            tracking.sync()  # what an earlier run finished and did not log
            built = executors.execute(plan, store, cfg.runtime, cfg.data, log, tracking.sync)
            export_tables(store, plan, run_dir, getattr(make_source(cfg), "truth", None))
            moved = rundir.move_aside(run_dir, rundir.stale_stages(
                run_dir, {s.relpath for s in plan.stages}))
            if moved:
                log(f"stages no longer in the plan were moved to {moved}")
            drawn = time.time()
            if finish is not None:
                finish()
            if tracking.backends:
                page = run_dir / "report" / "report.html"  # drawn now, not an earlier one
                tracking.finish(page.parent if page.is_file() and page.stat().st_mtime
                                >= drawn - 1 else None, lambda: _verdicts(run_dir))
        finally:
            tracking.close(ok=False)  # what finish did not close: the study stopped
        info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info["stages_built"] = built
        rundir.write_json(run_dir / "manifest.json", info)
    return plan


def _verdicts(run_dir: Path) -> list[str]:
    """The run's verdicts, for the trackers' study run."""
    from ouroboros.report.tables import read_metrics, verdicts
    return verdicts(read_metrics(run_dir))


def study_status(cfg: StudyConfig, run_dir: Path) -> dict:
    """How many stages of each kind are finished, and which cell generations are evaluated."""
    plan = plan_study(cfg)
    store = StageStore(run_dir)
    kinds: dict[str, list[int]] = {}
    for s in plan.stages:
        done_total = kinds.setdefault(s.kind, [0, 0])
        done_total[0] += store.is_done(s)
        done_total[1] += 1
    cells = {c.name: sum(store.is_done(s) for s in c.evaluations) for c in plan.cells}
    manifest = Path(run_dir) / "manifest.json"
    try:
        written = "finished" in json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        written = False
    stages_done = all(store.is_done(s) for s in plan.stages)
    return {"stages": kinds, "cells": cells, "generations": cfg.generations,
            "stages_done": stages_done, "complete": stages_done and written}
