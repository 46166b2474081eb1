"""The data and pool stages: a seed's real examples, read from the source once."""

from __future__ import annotations

from pathlib import Path

from ouroboros.config import DataConfig, TaskConfig
from ouroboros.data.files import DataError
from ouroboros.data.sources import RealSplits, select_splits
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.stages import write_jsonl


def real_splits(data: DataConfig, task_cfg: TaskConfig, source, task, seed: int) -> RealSplits:
    """The real examples of one seed: records -> task examples -> seeded subsets."""
    records = source.records(seed)
    examples = {split: None if rows is None else task.examples(rows, split)
                for split, rows in records.items()}
    for split, rows in examples.items():
        if rows is not None and not rows:
            why = (f"its text is shorter than one block of task.block_words="
                   f"{task_cfg.block_words} words" if task_cfg.block_words
                   else "an empty file, or every line blank?")
            raise DataError(f"the real {split} split has no examples for task {task_cfg.name} "
                            f"({why})")
    return select_splits(examples, data, seed, exact=getattr(source, "exact_sizes", False))


def _splits(job: Job, seed: int) -> RealSplits:
    return real_splits(job.data, job.task_config, job.checked_source(), job.task, seed)


def build_data(job: Job, out: Path) -> dict:
    """Real train and validation examples of one seed (the test split is the test stage's)."""
    splits = _splits(job, job.spec["seed"])
    for name in ("train", "valid"):
        write_jsonl(out / f"{name}.jsonl", [{**e, "origin": "real"} for e in getattr(splits, name)])
    return {"sizes": {n: len(getattr(splits, n)) for n in ("train", "valid", "test")}}


def build_test(job: Job, out: Path) -> dict:
    """Real held-out test examples of one seed: a stage of its own, so that an edited test
    file re-runs the evaluations and retrains nothing."""
    test = _splits(job, job.stage.deps["data"].spec["seed"]).test
    write_jsonl(out / "test.jsonl", [{**e, "origin": "real"} for e in test])
    return {"size": len(test)}


def build_pool(job: Job, out: Path) -> dict:
    """The training examples this seed does not use: where fresh real data comes from.
    (A stage of its own, planned only for the fresh policy: it can be large.)"""
    pool = _splits(job, job.stage.deps["data"].spec["seed"]).pool
    if pool is not None:
        write_jsonl(out / "pool.jsonl", [{**e, "origin": "real"} for e in pool])
    return {"size": None if pool is None else len(pool)}
