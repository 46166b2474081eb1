"""The trainset stage: generation g's training set, real data at g = 0, else what the data
policy assembles from real data, earlier generations' samples and fresh real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouroboros import registry
from ouroboros.config import PolicyConfig
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.stages import derive_seed, read_jsonl, write_jsonl
from ouroboros.metrics.slices import origin_of
from ouroboros.policies.core import PolicyContext

SAMPLE_FILES = {"generate": "samples.jsonl", "curate": "curated.jsonl",
                "mixture": "samples.jsonl", "augment": "samples.jsonl",
                "backtranslate": "curated.jsonl"}


def fresh(job: Job, g: int, n: int) -> list[dict]:
    """``n`` real examples never used before, for generation ``g`` (policy ``fresh``)."""
    pool_file = job.input("pool") / "pool.jsonl"
    if pool_file.is_file():
        pool = read_jsonl(pool_file)
        rows = pool[(g - 1) * n:g * n]
        if len(rows) < n:
            raise ValueError(f"the fresh-data pool is used up: generation {g} needs {n} "
                             f"new real examples, {len(pool)} were left over from train")
    else:
        records = job.checked_source().fresh(n, job.stage.deps["data"].spec["seed"], g)
        rows = job.task.examples(records, "new")
    return [{**e, "id": f"fresh-g{g}-{e['id']}", "origin": "real-fresh"} for e in rows]


def build_trainset(job: Job, out: Path) -> dict:
    """Generation g's training set and its composition by origin."""
    real = job.real("train")
    g = job.spec["generation"]
    if job.spec.get("reverse"):  # a backward model's: generation g's pairs, reversed
        # A back-translated pair's generated source becomes the target: whole or not as it
        # was generated; every other reversed target is a whole text.
        rows = [{**r, "source": r["target"], "target": r["source"],
                 "finished": r.get("source_finished", True)}
                for r in read_jsonl(job.input("trainset") / "trainset.jsonl")]
    elif g == 0:
        rows = real
    else:
        # The generators are not read here (their samples are the inputs), and a server
        # generator's spec holds only what it generates, not a whole config.
        policy = PolicyConfig.model_validate({**job.spec["policy"], "generators": None})
        seed = job.stage.deps["data"].spec["seed"]
        ctx = PolicyContext(
            generation=g, real=real, size=len(real),
            synthetic=[read_jsonl(job.dir(s) / SAMPLE_FILES[s.kind])
                       for s in job.stage.deps["samples"]],
            rng=np.random.default_rng(derive_seed(seed, "policy", g)),
            fresh=lambda n: fresh(job, g, n),
            real_fraction=policy.real_fraction, ordered=bool(job.spec.get("ordered")))
        rows = registry.POLICIES.get(policy.name)(ctx)
        if not rows:
            raise ValueError(f"policy {policy.display} assembled an empty training set "
                             f"for generation {g}")
    write_jsonl(out / "trainset.jsonl", rows)
    origins: dict[str, int] = {}
    for r in rows:
        key = origin_of(r)
        origins[key] = origins.get(key, 0) + 1
    return {"size": len(rows), "composition": origins}
