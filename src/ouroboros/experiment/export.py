"""The run directory's tables, exported from the finished stages of a plan: metrics.csv,
composition.csv, training.csv (loss per epoch of every model), slices.csv,
sample_perplexity.csv, and where they apply transitions.csv
(seed problems fixed and broken between generations) and teacher.csv (LLM2LLM's teacher).
Rows follow the plan (cell, then generation), never the order the stages happened to finish
in."""

from __future__ import annotations

import json
from pathlib import Path

from ouroboros.atomic import write_atomic
from ouroboros.experiment import rundir
from ouroboros.experiment.plan import Plan
from ouroboros.experiment.samples import curation_outcome as _outcome
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


def training_rows(store: StageStore, plan: Plan) -> list[dict]:
    """Each cell and generation's training curve: the mean training loss (and the validation
    loss where one is measured) per epoch, from the train stages' ``train.json``."""
    rows = []
    for cell in plan.cells:
        for g, evaluation in enumerate(cell.evaluations):
            path = store.path(evaluation.deps["model"]) / "train.json"
            if not path.is_file():  # a model not trained here (pretrained, as is)
                continue
            for record in json.loads(path.read_text()).get("history", []):
                rows.append({"cell": cell.name, "policy": cell.policy.display,
                             "seed": cell.seed, "generation": g, "epoch": record.get("epoch"),
                             "step": record.get("step"), "train_loss": record.get("train_loss"),
                             "valid_loss": record.get("valid_loss")})
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


def sample_preview(store: StageStore, plan: Plan, truth=None, k: int = PREVIEW) -> list[dict]:
    """A handful of samples per policy (its first seed) and generation, to read side by side:
    the same prompts across generations where samples have prompts (real sources or
    prefixes), else the first samples of each generation; each with what is known of it:
    grammatical or not (the built-in language), perplexity under generation 0's model
    (reference-perplexity), its curation outcome."""
    rows: list[dict] = []
    seen: set[str] = set()
    for cell in plan.cells:
        if cell.policy.teacher is not None or cell.policy.backtranslation is not None:
            if cell.policy.display not in seen:  # what was written beside what it was given
                seen.add(cell.policy.display)
                rows += _pair_preview(store, cell, k)
            continue
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


def transition_rows(store: StageStore, plan: Plan) -> list[dict]:
    """Per cell and generation g >= 1: how the real training (seed) problems moved between
    model g-1 and model g: fixed (wrong, then right), broken (right, then wrong), still
    wrong, still right; counted over all of them, and, where a teacher writes the data, apart
    for those shown to the teacher in generation g-1 and those not."""
    rows = []
    for cell in plan.cells:
        before = None
        for g, stage in enumerate(cell.evaluations):
            path = store.path(stage) / "train_predictions.jsonl"
            if not path.is_file():
                break
            now = {r["id"]: bool(r["correct"]) for r in read_jsonl(path)}
            if before is not None:
                groups = {"all": set(now) & set(before)}
                samples = cell.evaluations[g - 1].deps["samples"]
                if samples.kind == "augment":
                    shown = {r["prompted_by"] for r in read_jsonl(store.path(samples) /
                                                                  "teacher.jsonl")}
                    groups["shown to teacher"] = groups["all"] & shown
                    groups["not shown"] = groups["all"] - shown
                for group, ids in groups.items():
                    moves = [(before[i], now[i]) for i in ids]
                    rows.append({"cell": cell.name, "policy": cell.policy.display,
                                 "seed": cell.seed, "generation": g, "problems": group,
                                 "n": len(moves),
                                 "fixed": sum(not b and a for b, a in moves),
                                 "broken": sum(b and not a for b, a in moves),
                                 "still_wrong": sum(not b and not a for b, a in moves),
                                 "still_right": sum(b and a for b, a in moves)})
            before = now
    return rows


REFUSALS = ("unparsed", "unfinished", "no answer", "held-out problem", "duplicate",
            "over quota")
TEACHER_COLUMNS = ["cell", "policy", "seed", "generation", "target", "wrong", "quota",
                   "short", "prompted", "replies", "accepted",
                   *[k.replace(" ", "_").replace("-", "_") for k in REFUSALS],
                   "teacher_right", "requests", "prompt_tokens", "completion_tokens",
                   "paid_completion_tokens", "cached", "seconds"]


def teacher_rows(store: StageStore, plan: Plan) -> list[dict]:
    """Per cell and generation, what the teacher was asked, what was accepted and refused
    (and why), and what it cost (augment stages)."""
    rows = []
    for cell in plan.cells:
        for g, stage in enumerate(cell.evaluations):
            samples = stage.deps["samples"]
            if samples.kind != "augment":
                continue
            info = (store.record(samples) or {}).get("info", {})
            refused = info.get("refused", {})
            cost = info.get("cost", {})
            rows.append({"cell": cell.name, "policy": cell.policy.display, "seed": cell.seed,
                         "generation": g, "target": info.get("target"),
                         "wrong": info.get("wrong"), "quota": info.get("quota"),
                         "short": info.get("short", 0 if "quota" in info else None),
                         "prompted": info.get("prompted"), "replies": info.get("replies"),
                         "accepted": info.get("accepted"),
                         **{k.replace(" ", "_").replace("-", "_"): refused.get(k, 0)
                            for k in REFUSALS},
                         "teacher_right": info.get("teacher_right"),
                         **{k: cost.get(k) for k in ("requests", "prompt_tokens",
                                                     "completion_tokens",
                                                     "paid_completion_tokens", "cached",
                                                     "seconds")}})
    return rows


def _pair_preview(store: StageStore, cell, k: int) -> list[dict]:
    """The first ``k`` examples of each generation of a teacher (each after the seed example
    it was shown) or of back-translation (the real side, then the generated one)."""
    rows = []
    for g, stage in enumerate(cell.evaluations):
        made = stage.deps["samples"]
        seed = {e["id"]: e for e in read_jsonl(store.path(made.deps["data"]) / "train.jsonl")}
        for slot, r in enumerate(read_jsonl(store.path(made) / "samples.jsonl")[:k]):
            if made.kind == "augment":
                shown = seed.get(r["prompted_by"], {})
                text = (f"shown: {shown.get('source', '')} {shown.get('target', '')} | "
                        f"wrote: {r['source']} {r['target']}")
            else:
                real, wrote = (("target", "source") if r.get("generated") == "source"
                               else ("source", "target"))
                text = f"real {real}: {r[real]} | wrote {wrote}: {r[wrote]}"
            rows.append({"policy": cell.policy.display, "seed": cell.seed, "generation": g,
                         "slot": slot, "prompt": None, "prompted_by": r["prompted_by"],
                         "id": r["id"], "finished": r.get("finished"), "text": text,
                         "generator": r.get("generator"), "valid": None,
                         "reference_perplexity": None,
                         "curation": _outcome(r.get("decisions", []))})
    return rows


BACKTRANSLATION_COLUMNS = ["cell", "policy", "seed", "generation", "direction", "pairs",
                           "kept", "new_tokens", "seconds", "backward_train_seconds"]


def backtranslation_rows(store: StageStore, plan: Plan) -> list[dict]:
    """Per cell and generation, the back-translated (or forward) pairs made and kept, and
    what making them cost: generation tokens and seconds, and the backward model's training."""
    rows = []
    for cell in plan.cells:
        for g, stage in enumerate(cell.evaluations):
            made = stage.deps["samples"]
            if made.kind != "backtranslate":
                continue
            info = (store.record(made) or {}).get("info", {})
            model = made.deps["model"]
            backward = ((store.record(model) or {}).get("info", {}).get("seconds")
                        if model.spec.get("direction") == "backward" else None)
            rows.append({"cell": cell.name, "policy": cell.policy.display, "seed": cell.seed,
                         "generation": g, "direction": info.get("direction"),
                         "pairs": info.get("pairs"), "kept": info.get("kept"),
                         "new_tokens": info.get("new_tokens"), "seconds": info.get("seconds"),
                         "backward_train_seconds": backward})
    return rows


def cell_index(plan: Plan) -> dict:
    """Where each cell's stages of each generation are (folders relative to the run
    directory): evaluate, the samples it scored, and the curation of generation g where there
    is one. ``ouroboros samples`` reads it: labels alone are ambiguous (generation 0 is shared
    by policies whose generation-0 samples can differ)."""
    curations = {s.label: s for s in plan.stages if s.kind == "curate"}
    cells = []
    for cell in plan.cells:
        gens = []
        for g, stage in enumerate(cell.evaluations):
            curate = curations.get(f"{cell.policy.display}-s{cell.seed}-g{g}")
            trainset = stage.deps["model"].deps.get("trainset")
            gens.append({"generation": g, "evaluate": str(stage.relpath),
                         "samples": str(stage.deps["samples"].relpath),
                         "curate": str(curate.relpath) if curate is not None else None,
                         "trainset": str(trainset.relpath) if trainset is not None else None,
                         "model": str(stage.deps["model"].relpath)})
        data = next((d for d in _walk(cell.evaluations[0]) if d.kind == "data"), None)
        test = next((d for d in _walk(cell.evaluations[0]) if d.kind == "test"), None)
        cells.append({"cell": cell.name, "policy": cell.policy.display, "seed": cell.seed,
                      "data": str(data.relpath) if data is not None else None,
                      "test": str(test.relpath) if test is not None else None,
                      "generations": gens})
    return {"cells": cells}


def _walk(stage):
    """A stage and everything it depends on, depth first."""
    yield stage
    for dep in stage.deps.values():
        if isinstance(dep, list):
            for d in dep:
                yield from _walk(d)
        else:
            yield from _walk(dep)


def export_tables(store: StageStore, plan: Plan, run_dir: Path, truth=None) -> None:
    """Write every table of a study whose stages are all finished."""
    rundir.write_metrics(run_dir, metric_rows(store, plan))
    rundir.write_json(run_dir / "cells.json", cell_index(plan))
    rundir.write_table(run_dir / "composition.csv",
                       ["cell", "policy", "seed", "generation", "origin", "count"],
                       composition_rows(store, plan))
    curves = training_rows(store, plan)
    if curves:
        rundir.write_table(run_dir / "training.csv", list(curves[0]), curves)
    sliced = slice_table(store, plan)
    if sliced:
        rundir.write_table(run_dir / "slices.csv", list(sliced[0]), sliced)
    per_sample = artifact_rows(store, plan, "sample_perplexity")
    if per_sample:
        rundir.write_table(run_dir / "sample_perplexity.csv", list(per_sample[0]), per_sample)
    moves = transition_rows(store, plan)
    if moves:
        rundir.write_table(run_dir / "transitions.csv", list(moves[0]), moves)
    taught = teacher_rows(store, plan)
    if taught:
        rundir.write_table(run_dir / "teacher.csv", TEACHER_COLUMNS, taught)
    made = backtranslation_rows(store, plan)
    if made:
        rundir.write_table(run_dir / "backtranslation.csv", BACKTRANSLATION_COLUMNS, made)
    preview = sample_preview(store, plan, truth)
    write_atomic(run_dir / "samples_preview.jsonl",
                 "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in preview))
