"""The slice stage: per-example measures of generation g's training set, samples and curation
candidates, sliced by origin, generator and outcome (metrics/slices.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouroboros.experiment import rundir
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.stages import read_jsonl
from ouroboros.metrics import slices as slicing


def build_slice(job: Job, out: Path) -> dict:
    """slices.json: one row per set, slice and measure."""
    sets = {"trainset": job.input("trainset") / "trainset.jsonl",
            "samples": job.input("samples") / "samples.jsonl"}
    if "curate" in job.stage.deps:
        sets["candidates"] = job.input("curate") / "lineage.jsonl"
    score = job.quality_scorer(job.stage.deps["reference"])
    rows = []
    for name in job.spec["sets"]:
        if name in sets:
            rows += slicing.slice_rows(name, read_jsonl(sets[name]), job.task.text, job.truth,
                                       lambda r: np.exp(-score(r)))
    rundir.write_json(out / "slices.json", {"generation": job.spec["g"], "rows": rows})
    return {"rows": len(rows)}
