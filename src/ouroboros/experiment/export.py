"""The run directory's tables, exported from the finished stages of a plan: metrics.csv,
composition.csv, slices.csv and sample_perplexity.csv. Rows follow the plan (cell, then
generation), never the order the stages happened to finish in."""

from __future__ import annotations

import json
from pathlib import Path

from ouroboros.atomic import write_atomic
from ouroboros.experiment import rundir
from ouroboros.experiment.plan import Plan
from ouroboros.experiment.stages import StageStore, read_jsonl


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


PREVIEW = 6  # samples per policy and generation in samples_preview.jsonl


def _outcome(decisions: list[dict]) -> str:
    """A candidate's curation outcome: kept, or the first step that dropped it and why."""
    for d in decisions:
        if not d.get("kept", True):
            return f"dropped by {d['step']}: {d.get('reason', '')}".rstrip(": ")
    return "kept"


def sample_preview(store: StageStore, plan: Plan, truth=None, k: int = PREVIEW) -> list[dict]:
    """A handful of samples per policy (its first seed) and generation, to read side by side:
    the same prompts across generations where samples have prompts (real sources or
    prefixes), else the first samples of each generation; each with what is known of it:
    grammatical or not (the built-in language), perplexity under generation 0's model
    (reference-perplexity), its curation outcome."""
    rows: list[dict] = []
    seen: set[str] = set()
    for cell in plan.cells:
        if cell.policy.display in seen:
            continue
        seen.add(cell.policy.display)
        per_gen = []
        for g, stage in enumerate(cell.evaluations):
            samples = read_jsonl(store.path(stage.deps["samples"]) / "samples.jsonl")
            ppl_path = store.path(stage) / "sample_perplexity.json"
            ppl = json.loads(ppl_path.read_text())["values"] if ppl_path.is_file() else None
            curate = next((s for s in plan.stages if s.kind == "curate" and
                           s.label == f"{cell.policy.display}-s{cell.seed}-g{g}"), None)
            outcome = ({r["id"]: _outcome(r.get("decisions", []))
                        for r in read_jsonl(store.path(curate) / "lineage.jsonl")}
                       if curate is not None else {})
            per_gen.append((samples, ppl, outcome))
        prompted = all(r.get("prompted_by") is not None for s, _, _ in per_gen for r in s)
        if prompted:  # the same real prompts in every generation
            common = set.intersection(*({r["prompted_by"] for r in s} for s, _, _ in per_gen))
            slots = [p for p in dict.fromkeys(r["prompted_by"] for r in per_gen[0][0])
                     if p in common][:k]
        for g, (samples, ppl, outcome) in enumerate(per_gen):
            if prompted:
                first = {}
                for i, r in enumerate(samples):
                    first.setdefault(r["prompted_by"], i)
                picks = [first[p] for p in slots]
            else:
                picks = list(range(min(k, len(samples))))
            for slot, i in enumerate(picks):
                r = samples[i]
                whole = f"{r['source']} {r['target']}".strip()  # a prefix and its continuation
                text = r["target"] if prompted else whole
                rows.append({
                    "policy": cell.policy.display, "seed": cell.seed, "generation": g,
                    "slot": slot, "prompt": r["source"] if prompted else None,
                    "prompted_by": r.get("prompted_by"), "id": r["id"], "text": text,
                    "finished": r.get("finished"), "generator": r.get("generator"),
                    "valid": None if truth is None else bool(truth.is_valid(whole)),
                    "reference_perplexity": None if ppl is None else ppl[i],
                    "curation": outcome.get(r["id"])})
    return rows


def export_tables(store: StageStore, plan: Plan, run_dir: Path, truth=None) -> None:
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
    preview = sample_preview(store, plan, truth)
    write_atomic(run_dir / "samples_preview.jsonl",
                 "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in preview))
