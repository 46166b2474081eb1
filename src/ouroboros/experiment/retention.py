"""Checkpoint retention (``runtime.keep_checkpoints``): which model weights a plan still reads,
deleting the others as soon as their last reader is finished, and building deleted ones again
when a later plan reads them.

- ``all`` (default): every train stage keeps its weights.
- ``needed``: a train stage's weights are deleted once every stage of the plan that reads them
  (its generate and evaluate stages, the next generation's training when it starts from it,
  evaluations and curation that use generation 0 as a reference, refill rounds that re-ask
  it) is finished. The last generation's models are kept: they are what the study made.

A pruned stage keeps its record (marked ``pruned``) and everything but ``model/``, so its
results and provenance stay; a plan with an unfinished stage that reads its weights (a new
metric, more generations) trains it again first. Training is deterministic for a given device
and thread count, so the rebuilt weights are the ones deleted; ``StageStore`` checks that
against the SHA-256 the pruned record keeps, and refuses other weights (``RebuildMismatch``).
"""

from __future__ import annotations

from ouroboros.experiment.plan import Plan
from ouroboros.experiment.stages import Stage, StageStore


def weights_read(stage: Stage) -> list[Stage]:
    """The train stages whose checkpoint ``stage``'s build loads."""
    direct = [d for v in stage.deps.values() for d in (v if isinstance(v, list) else [v])
              if d.kind == "train"]
    if stage.kind == "curate" and stage.spec.get("refill"):  # re-asks the sampled models
        samples = stage.deps["samples"]
        parts = samples.deps["parts"] if samples.kind == "mixture" else [samples]
        direct += [p.deps["model"] for p in parts if "model" in p.deps]
    return direct


def to_build(plan: Plan, store: StageStore) -> list[Stage]:
    """The stages to build, in plan order: the unfinished ones, and pruned train stages whose
    weights one of those reads (and, in turn, what rebuilding them reads)."""
    pruned = {s.fp for s in plan.stages if s.kind == "train" and store.is_pruned(s)}
    todo = {s.fp for s in plan.stages if not store.is_done(s)}
    grew = True
    while grew:
        grew = False
        for stage in plan.stages:
            if stage.fp not in todo:
                continue
            for d in weights_read(stage):
                if d.fp in pruned and d.fp not in todo:
                    todo.add(d.fp)
                    grew = True
    return [s for s in plan.stages if s.fp in todo]


class Retention:
    """Deletes weights no unfinished stage of the plan reads (``keep_checkpoints: needed``)."""

    def __init__(self, plan: Plan, store: StageStore, keep: str,
                 pending: list[Stage] | None = None) -> None:
        self.store, self.active = store, keep == "needed"
        # Stages still to build in this run: a pruned stage being rebuilt has a record, but
        # it has not read its inputs yet.
        self.pending = {s.fp for s in pending or []}
        trains = [s for s in plan.stages if s.kind == "train"]
        last = max((s.spec["generation"] for s in trains), default=0)
        self.readers: dict[str, list[Stage]] = {s.fp: [] for s in trains}
        for stage in plan.stages:
            for d in weights_read(stage):
                self.readers[d.fp].append(stage)
        self.candidates = {s.fp: s for s in trains if s.spec["generation"] < last}
        self.freed = 0

    def finished(self, stage: Stage) -> None:
        """Called after ``stage`` is built: delete the weights it was the last to read."""
        self.pending.discard(stage.fp)
        if self.active:
            for d in [*weights_read(stage), stage]:
                self._try(d)

    def sweep(self) -> int:
        """Delete every deletable checkpoint (at the end of a run, or of a resumed one); the
        bytes freed by this run."""
        if self.active:
            for stage in list(self.candidates.values()):
                self._try(stage)
        return self.freed

    def _try(self, stage: Stage) -> None:
        if stage.fp not in self.candidates:
            return
        if all(s.fp not in self.pending and self.store.is_done(s)
               for s in [stage, *self.readers[stage.fp]]):
            self.freed += self.store.prune(stage)
            del self.candidates[stage.fp]
