"""What one stage's build sees: its stage (spec and inputs), the run directory its input folders
live in, the runtime settings (speed only, never results) and where the real data lives.

A build reads nothing else, in particular no study config: the task comes from the data stage
it depends on, model settings from its own spec or its input checkpoints' records. What a build
reads is therefore what its fingerprint hashes, and a job can be built by any process that sees
the run directory (a worker of the processes or Ray executor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ouroboros import registry
from ouroboros.config import DataConfig, GenerationConfig, RuntimeConfig, TaskConfig
from ouroboros.data.files import DataError
from ouroboros.experiment.stages import RECORD, Stage, read_jsonl
from ouroboros.models.checkpoint import load_checkpoint
from ouroboros.models.encoding import Encoder, context_ids, encode_examples
from ouroboros.models.scoring import sequence_nll


def stream(spec: dict) -> tuple:
    """What, besides the cell's seed, tells a stage's random streams apart: the generator
    (its label and own seed) of one of several generators; nothing for the study's model."""
    parts = (spec.get("generator"), spec.get("generator_seed"))
    return () if parts == (None, None) else parts


def make_source(data: DataConfig, task_name: str):
    """The configured data source, told which record fields the task reads."""
    task = registry.TASKS.get(task_name)
    return registry.DATA_SOURCES.get(data.source)(data, task.fields)


def data_stage(stage: Stage) -> Stage:
    """The data stage a stage depends on (directly, or through a mixture's parts)."""
    if stage.kind == "data":
        return stage
    if "data" in stage.deps:
        return stage.deps["data"]
    return data_stage(stage.deps["parts"][0])


@dataclass
class Job:
    """One stage to build in ``run_dir``."""

    stage: Stage
    run_dir: Path
    runtime: RuntimeConfig
    data: DataConfig  # where the real data lives; its content is in the data stage's spec

    @property
    def spec(self) -> dict:
        """The stage's own settings."""
        return self.stage.spec

    @property
    def device(self) -> str:
        """The torch device this job runs on."""
        return self.runtime.device

    def dir(self, stage: Stage) -> Path:
        """The finished folder of an input stage."""
        return Path(self.run_dir) / stage.relpath

    def input(self, name: str) -> Path:
        """The finished folder of the input called ``name``."""
        return self.dir(self.stage.deps[name])

    @cached_property
    def task_config(self) -> TaskConfig:
        """The task settings, from the data stage this stage reads (so in its fingerprint)."""
        return TaskConfig.model_validate(data_stage(self.stage).spec["task"])

    @cached_property
    def task(self):
        """The task plug-in."""
        return registry.TASKS.get(self.task_config.name)(self.task_config)

    @cached_property
    def source(self):
        """The real-data source. Only the data and pool stages and fresh data read records
        through it, after checking that it is the data the data stage's spec names."""
        return make_source(self.data, self.task_config.name)

    def checked_source(self):
        """The source, refused if its data are not those the fingerprint names (the data
        files changed under a run, or a job was given another study's data settings)."""
        test = self.stage.kind == "test"
        expected = (self.stage if test else data_stage(self.stage)).spec["source"]
        if self.source.fingerprint(test=test) != expected:
            raise DataError("the real data differ from those this run was planned with (a "
                            "data file changed since): run again (its stages that read the "
                            "data are rebuilt), or start a new run directory")
        return self.source

    @property
    def truth(self):
        """The ground-truth language, when the real data come from it (else None)."""
        return getattr(self.source, "truth", None)

    def real(self, split: str) -> list[dict]:
        """The real examples of a split, from the data stage this stage reads (the test
        split: from the test stage, which an evaluation reads)."""
        stage = self.stage.deps["test"] if split == "test" else data_stage(self.stage)
        return read_jsonl(self.dir(stage) / f"{split}.jsonl")

    def encoder(self, tokenizer, family: str, context_length: int) -> Encoder:
        """How a model family turns this task's examples into ids."""
        seq2seq = registry.MODELS.get(family)().seq2seq
        return Encoder(tokenizer, seq2seq, context_length,
                       self.task_config.source_tokens(context_length, seq2seq))

    def model_encoder(self, model_dir: Path, tokenizer) -> Encoder:
        """The encoder of the model a finished train stage made (its own family and context,
        which may differ from the study's: a generator of another family)."""
        spec = json.loads((model_dir / RECORD).read_text())["spec"]["model"]
        return self.encoder(tokenizer, spec["name"], spec["context_length"])

    def prompt_ids(self, encoder: Encoder, sources: list[str]) -> list[list[int]]:
        """Encoded generation prompts for real sources (templated for decoder-only models)."""
        return [encoder.prompt_ids(context_ids(encoder, self.task, s)) for s in sources]

    def quality_scorer(self, reference: Stage):
        """rows -> mean log-likelihood per token of their targets under a frozen model."""
        model, tokenizer = load_checkpoint(self.dir(reference) / "model", self.device)
        encoder = self.model_encoder(self.dir(reference), tokenizer)

        def score(rows: list[dict]) -> np.ndarray:
            items = encode_examples(encoder, self.task, rows)
            nll, count = sequence_nll(model, items, tokenizer.pad_token_id,
                                      self.runtime.eval_batch_size, self.device)
            return -nll / np.maximum(count, 1)
        return score

    def backend(self, gcfg: GenerationConfig):
        """The generation backend the settings name."""
        return registry.BACKENDS.get(gcfg.backend)()
