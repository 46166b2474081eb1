"""The curate stage: curation steps over generation g's samples, with refill rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouroboros.config import CurationStepConfig, GenerationConfig
from ouroboros.curation.steps import CurationContext, curate
from ouroboros.experiment.builders.generate import sample
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.stages import derive_seed, read_jsonl, write_jsonl


def build_curate(job: Job, out: Path) -> dict:
    """Every sample's scores and decisions are kept (lineage.jsonl), the survivors in order
    (curated.jsonl)."""
    rows = read_jsonl(job.input("samples") / "samples.jsonl")
    ctx = CurationContext(real=job.real("train"), task=job.task,
                          rng=np.random.default_rng(derive_seed(job.spec["seed"], "curate",
                                                                job.spec["g"])),
                          truth=job.truth)
    steps = [CurationStepConfig.model_validate(s) for s in job.spec["curation"]]
    if "reference" in job.stage.deps:
        ctx.score_quality = job.quality_scorer(job.stage.deps["reference"])
    refill_rounds = job.spec.get("refill")
    kept, annotated = curate(rows, steps, ctx, allow_empty=bool(refill_rounds))
    info = {"candidates": len(rows), "kept": len(kept), "steps": ctx.info}
    if refill_rounds:
        kept, annotated, info = refill(job, rows, kept, annotated, steps, ctx)
    write_jsonl(out / "curated.jsonl", kept)
    write_jsonl(out / "lineage.jsonl", annotated)
    return info


def refill(job: Job, rows: list[dict], kept: list[dict], annotated: list[dict],
           steps: list, ctx) -> tuple[list[dict], list[dict], dict]:
    """Generate until accepted: re-ask every request without a kept sample, from the model
    that answered it first, for up to ``refill`` rounds; each round is curated by the same
    steps (dedup also against what earlier rounds kept)."""
    gcfg = GenerationConfig.model_validate(job.spec["generation"])
    seed, g = job.spec["seed"], job.spec["g"]
    first: dict = {}  # request -> its first candidate (prompt, model, generator)
    for r in rows:
        first.setdefault(r["request"], r)
    rounds = [{"round": 0, "candidates": len(rows), "kept": len(kept), "steps": ctx.info}]
    for k in range(1, job.spec["refill"] + 1):
        done = {r["request"] for r in kept}
        missing = [r for key, r in first.items() if key not in done]
        if not missing:
            break
        by_model: dict[str, list[dict]] = {}
        for r in missing:
            by_model.setdefault(r["model"], []).append(r)
        batch = []
        for model_id, asked in by_model.items():
            tag = asked[0].get("generator")
            extra = {"round": k, **({"generator": tag} if tag else {})}
            new, _ = sample(
                job, model_id, [{"source": r["source"], "prompted_by": r["prompted_by"],
                                 "request": r["request"]} for r in asked], gcfg,
                derive_seed(seed, "refill", g, k, model_id), g,
                f"{tag + ':' if tag else ''}g{g}-r{k}-", extra)
            batch += new
        ctx.info, ctx.previous = {}, kept
        new_kept, new_all = curate(batch, steps, ctx, allow_empty=True)
        kept, annotated = kept + new_kept, annotated + new_all
        rounds.append({"round": k, "candidates": len(batch), "kept": len(new_kept),
                       "steps": ctx.info})
    if not kept:
        raise ValueError(f"curation kept no sample in {len(rounds)} rounds of generation "
                         f"{g}: the steps reject everything the model generates")
    ordering = [s for s in steps if s.mode == "order"]
    if ordering:  # ordered training: the order holds across rounds
        key = {"detector": "human_likeness", "quality": "quality"}[ordering[-1].name]
        kept = sorted(kept, key=lambda r: -r["scores"][key])
    short = len(first) - len({r["request"] for r in kept})
    if short:
        print(f"  refill: {short} of {len(first)} requests still have no accepted sample "
              f"after {len(rounds) - 1} extra rounds", flush=True)
    return kept, annotated, {"candidates": len(annotated), "kept": len(kept),
                             "requests": len(first), "unfilled_requests": short,
                             "rounds": rounds}
