"""The run directory's tables, exported from the finished stages of a plan: metrics.csv,
composition.csv, slices.csv and sample_perplexity.csv. Rows follow the plan (cell, then
generation), never the order the stages happened to finish in."""

from __future__ import annotations

import json
from pathlib import Path

from ouroboros.experiment import rundir
from ouroboros.experiment.plan import Plan
from ouroboros.experiment.stages import StageStore


def artifact_rows(store: StageStore, plan: Plan, name: str) -> list[dict]:
    """Tidy rows of a per-sample artifact (``<name>.json`` of evaluate stages), if any."""
    rows = []
    for cell in plan.cells:
        for g, stage in enumerate(cell.evaluations):
            path = store.path(stage) / f"{name}.json"
            if path.is_file():
                rows += [{"cell": cell.name, "policy": cell.policy.display, "seed": cell.seed,
                          "generation": g, "value": v}
                         for v in json.loads(path.read_text())["values"]]
    return rows


def composition_rows(store: StageStore, plan: Plan) -> list[dict]:
    """Each cell and generation's training-set composition by origin (real, real-fresh,
    synthetic of generation k), from the trainset stages' records."""
    rows = []
    for cell in plan.cells:
        trainsets = [s.deps["trainset"] for s in (e.deps["model"] for e in cell.evaluations)]
        for g, stage in enumerate(trainsets):
            record = store.record(stage) or {}
            for origin, count in sorted(record.get("info", {}).get("composition", {}).items()):
                rows.append({"cell": cell.name, "policy": cell.policy.display,
                             "seed": cell.seed, "generation": g, "origin": origin,
                             "count": count})
    return rows


def slice_table(store: StageStore, plan: Plan) -> list[dict]:
    """Tidy rows of the metrics by origin, generator and curation outcome (slice stages)."""
    rows = []
    for cell in plan.cells:
        for g, stage in enumerate(cell.slices):
            for r in json.loads((store.path(stage) / "slices.json").read_text())["rows"]:
                rows.append({"cell": cell.name, "policy": cell.policy.display,
                             "seed": cell.seed, "generation": g, **r})
    return rows


def metric_rows(store: StageStore, plan: Plan) -> list[dict]:
    """Tidy metric rows of every cell and generation, from the finished evaluate stages."""
    rows = []
    for cell in plan.cells:
        for g, stage in enumerate(cell.evaluations):
            values = json.loads((store.path(stage) / "metrics.json").read_text())["values"]
            rows += [{"cell": cell.name, "policy": cell.policy.display, "seed": cell.seed,
                      "generation": g, **v} for v in values]
    return rows


def export_tables(store: StageStore, plan: Plan, run_dir: Path) -> None:
    """Write every table of a study whose stages are all finished."""
    rundir.write_metrics(run_dir, metric_rows(store, plan))
    rundir.write_table(run_dir / "composition.csv",
                       ["cell", "policy", "seed", "generation", "origin", "count"],
                       composition_rows(store, plan))
    sliced = slice_table(store, plan)
    if sliced:
        rundir.write_table(run_dir / "slices.csv", list(sliced[0]), sliced)
    per_sample = artifact_rows(store, plan, "sample_perplexity")
    if per_sample:
        rundir.write_table(run_dir / "sample_perplexity.csv", list(per_sample[0]), per_sample)
