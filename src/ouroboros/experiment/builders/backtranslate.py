"""The backtranslate stage: back-translation (Sennrich et al. 2016) with optional
self-curation (Li et al. 2023), and its control, forward self-training.

Generation g draws ``size`` never-used real examples (the fresh pool of generation g + 1: the
same draw for both directions at the same size). Backward: a model trained on generation g's
pairs reversed writes a source for each real target; forward: model g writes a target for
each real source.
With ``keep_fraction`` model g scores every pair (mean log-likelihood per target token given
the source) and the highest-scored share is kept. ``lineage.jsonl`` keeps every pair with its
score and decision; ``samples.jsonl`` the kept ones, the generated side marked
(``generated``: source or target).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ouroboros.config import BackTranslationConfig, GenerationConfig
from ouroboros.experiment.builders.generate import sample
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.builders.trainset import fresh
from ouroboros.experiment.stages import derive_seed, write_jsonl


def build_backtranslate(job: Job, out: Path) -> dict:
    """Synthetic pairs for never-used real examples, curated by the forward model."""
    bt = BackTranslationConfig.model_validate(job.spec["backtranslation"])
    seed, g = job.spec["seed"], job.spec["g"]
    n = bt.size or len(job.real("train"))
    real = fresh(job, g + 1, n)  # the pool's next never-used examples
    backward = bt.direction == "backward"
    requests = [{"source": e["target"] if backward else e["source"], "prompted_by": e["id"],
                 "request": i} for i, e in enumerate(real)]
    gcfg = GenerationConfig.model_validate(job.spec["generation"])
    rows, info = sample(job, job.stage.deps["model"].relpath, requests, gcfg,
                        derive_seed(seed, "backtranslate", g), g, f"bt-g{g}-",
                        {"backtranslation": bt.direction})
    if backward:  # the model wrote the source of a real target, which is whole (EOS)
        rows = [{**r, "source": r["target"], "target": r["source"], "generated": "source",
                 "finished": True, "source_finished": r["finished"]} for r in rows]
    else:
        rows = [{**r, "generated": "target"} for r in rows]
    kept = rows
    if bt.keep_fraction is not None:
        t0 = time.perf_counter()
        scores = job.quality_scorer(job.stage.deps["forward"])(rows)
        k = max(1, int(round(bt.keep_fraction * len(rows))))
        best = set(np.argsort(-scores, kind="stable")[:k].tolist())
        for i, r in enumerate(rows):
            r["scores"] = {"forward_loglik": float(scores[i])}
            r["decisions"] = [{"step": "self-curation", "kept": i in best,
                               **({} if i in best else {"reason": "below the kept share"})}]
        kept = [r for i, r in enumerate(rows) if i in best]
        info["scoring_seconds"] = time.perf_counter() - t0
    write_jsonl(out / "samples.jsonl", rows)  # what was generated (metrics see this)
    write_jsonl(out / "curated.jsonl", kept)  # what the policy uses
    return {**info, "direction": bt.direction, "pairs": len(rows), "kept": len(kept)}
