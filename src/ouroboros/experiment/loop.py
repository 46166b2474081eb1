"""The recursive-training recipe: plan the stages of a study, then run them in order.

For every seed: sample the real data, build the frozen tokenizer. For every cell (policy x
seed), generation by generation:

    trainset(g)  = real data (g = 0) or policy(real, samples of generations < g, fresh data)
    train(g)     = a model trained on trainset(g) (from scratch or from model g-1)
    generate(g)  = model g's synthetic samples (the data of generation g+1)
    evaluate(g)  = metrics of model g and its samples against REAL held-out data

Generation 0 does not depend on the policy, so cells with the same seed share it (same
fingerprint, computed once).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from ouroboros import registry
from ouroboros.config import (
    ConfigError,
    GenerationConfig,
    ModelConfig,
    PolicyConfig,
    StudyConfig,
    TrainingConfig,
    dump_config,
    notices,
)
from ouroboros.data.files import DataError
from ouroboros.data.sources import RealSplits, select_splits
from ouroboros.experiment import rundir
from ouroboros.experiment.stages import (
    RECORD,
    Stage,
    StageStore,
    derive_seed,
    read_jsonl,
    write_jsonl,
)
from ouroboros.generation.hf import generate_with_model
from ouroboros.metrics import slices as slicing
from ouroboros.metrics.references import unfinished
from ouroboros.metrics.signature import EvalContext
from ouroboros.metrics.slices import origin_of
from ouroboros.models.checkpoint import load_checkpoint, load_tokenizer, save_checkpoint
from ouroboros.models.encoding import Encoder, context_ids, encode_examples, target_cut
from ouroboros.models.scoring import sequence_nll
from ouroboros.policies.core import PolicyContext
from ouroboros.training.trainer import train_model


def _log(line: str) -> None:
    print(line, flush=True)  # stage lines reach a pipe or a log file as they happen


@dataclass
class Cell:
    """One chain of generations: a policy and a seed, with its evaluation stages in order."""

    policy: PolicyConfig
    seed: int
    evaluations: list[Stage] = field(default_factory=list)
    slices: list[Stage] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``<policy label>-s<seed>``."""
        return f"{self.policy.display}-s{self.seed}"


@dataclass
class Plan:
    """Every stage of a study once, in an order where inputs come first, and the cells."""

    stages: list[Stage]
    cells: list[Cell]


# -- planning ---------------------------------------------------------------------------------

def make_source(cfg: StudyConfig):
    """The configured data source, told which record fields the task reads."""
    task = registry.TASKS.get(cfg.task.name)
    return registry.DATA_SOURCES.get(cfg.data.source)(cfg.data, task.fields)


def plan_study(cfg: StudyConfig) -> Plan:
    """All stages of the study; identical stages (shared generation 0) appear once."""
    source = make_source(cfg)
    unique: dict[str, Stage] = {}

    def add(stage: Stage) -> Stage:
        return unique.setdefault(stage.fp, stage)

    cells = []
    for seed in cfg.seeds:
        data = add(Stage("data", f"s{seed}", {"source": source.fingerprint(), "seed": seed,
                                              "task": cfg.task.model_dump()}))
        tok = add(Stage("tokenizer", f"s{seed}", tokenizer_spec(cfg.model.model_dump(), cfg),
                        {"data": data}))
        for policy in cfg.policies:
            cell = Cell(policy, seed)
            cells.append(cell)
            _plan_cell(cfg, cell, data, tok, add)
    return Plan(list(unique.values()), cells)


def _generator_model(cfg: StudyConfig, source) -> dict:
    """The model settings of one generator (None: the study's model)."""
    return cfg.model.model_dump() if source is None else source.model_settings(cfg.model)


def tokenizer_spec(model: dict, cfg: StudyConfig) -> dict:
    """What a tokenizer stage depends on: the model family, its tokenizer settings, weights,
    and for a word-level tokenizer of the ground-truth language its closed vocabulary (the
    language's lexicon: every sentence of the language is encodable)."""
    spec = {"model": model["name"], "tokenizer": model["tokenizer"],
            "vocab_size": model["vocab_size"], "pretrained": model["pretrained"]}
    if cfg.data.source == "grammar" and model["tokenizer"] == "word" and not model["pretrained"]:
        spec["vocabulary"] = "lexicon"
    return spec


def cell_curation(cfg: StudyConfig, policy: PolicyConfig) -> list:
    """The curation steps of a policy's cells: its own, else the study's."""
    return cfg.curation if policy.curation is None else policy.curation


def cell_order(cfg: StudyConfig, policy: PolicyConfig) -> str:
    """The training order of a policy's cells from generation 1 on."""
    return policy.order or cfg.training.order


def metric_versions(cfg: StudyConfig) -> dict[str, int]:
    """The code version of every configured metric: a new version re-runs the evaluations."""
    import importlib
    return {name: importlib.import_module(registry.METRICS.entries[name].split(":")[0]).VERSION
            for name in cfg.metrics.names}


def _plan_cell(cfg: StudyConfig, cell: Cell, data: Stage, tok: Stage,
               add: Callable[[Stage], Stage]) -> None:
    """The four stages of every generation of one cell."""
    samples: list[Stage] = []
    model: Stage | None = None
    first: Stage | None = None  # generation 0's model: the frozen reference
    curation = cell_curation(cfg, cell.policy)
    training = cfg.training.model_dump()
    train_spec = {"model": cfg.model.model_dump(), "training": training}
    # Generation 0 trains on real data with the study's settings, shared by every cell; a
    # policy's own training order applies from generation 1 on.
    later_spec = {**train_spec, "training": {**training, "order": cell_order(cfg, cell.policy)}}
    generation = {**cfg.generation.model_dump(),
                  "candidates": cell.policy.candidates or cfg.generation.candidates}
    sources: list = cell.policy.generators or [None]  # None: the study's model alone
    previous: list = [None] * len(sources)
    for g in range(cfg.generations):
        label = f"s{cell.seed}-g{g}" if g == 0 else f"{cell.policy.display}-s{cell.seed}-g{g}"
        if g == 0:
            trainset = add(Stage("trainset", label, {"generation": 0}, {"data": data}))
        else:
            inputs: dict = {"data": data, "samples": list(samples)}
            if cell.policy.name == "fresh":  # never-used real data, from the seed's pool
                inputs["pool"] = add(Stage("pool", f"s{cell.seed}", {}, {"data": data}))
            trainset = add(Stage("trainset", label,
                                 {"generation": g, "policy": cell.policy.model_dump()}, inputs))
        spec = train_spec if g == 0 else later_spec
        models, parts = [], []
        for j, source in enumerate(sources):
            own_tok = tok
            if source is not None and source.own_family:  # e.g. a pretrained model's own
                own_tok = add(Stage("tokenizer", f"s{cell.seed}-{source.label}",
                                    tokenizer_spec(_generator_model(cfg, source), cfg),
                                    {"data": data}))
            deps: dict = {"trainset": trainset, "tokenizer": own_tok, "data": data}
            if cfg.training.init == "previous" and previous[j] is not None:
                deps["init"] = previous[j]
            name = label if source is None else f"{label}-{source.label}"
            model_spec = {**spec, "model": _generator_model(cfg, source)}
            # A generator's own seed selects its own random streams (derived, never another
            # cell's seed); seed 0 with the study's settings is the study's model itself.
            stream = {"generator_seed": source.seed or None} if source else {}
            models.append(add(Stage("train", name, {**model_spec, "generation": g,
                                                     "seed": cell.seed, **stream}, deps)))
            share = {} if source is None else {"share": source.share, "generator": source.label}
            parts.append(add(Stage("generate", name,
                                   {"generation": generation, "task": cfg.task.model_dump(),
                                    "g": g, "seed": cell.seed, **stream, **share},
                                   {"model": models[-1], "data": data})))
        previous = models
        model = models[0]  # the evaluated model: the first generator
        gen = parts[0] if len(parts) == 1 else add(Stage(
            "mixture", f"{cell.policy.display}-s{cell.seed}-g{g}",
            {"generators": [s.label for s in sources]}, {"parts": parts}))
        if curation:  # the policy sees the curated samples; metrics see what was generated
            curate_inputs = {"samples": gen, "data": data}
            if any(s.name == "quality" for s in curation):
                curate_inputs["reference"] = first or model  # generation 0's model
            refill = ({"refill": cell.policy.refill, "generation": generation}
                      if cell.policy.refill else {})
            samples.append(add(Stage("curate", f"{cell.policy.display}-s{cell.seed}-g{g}",
                                     {"curation": [s.model_dump() for s in curation],
                                      "g": g, "seed": cell.seed, **refill}, curate_inputs)))
        else:
            samples.append(gen)
        first = first or model
        own = f"{cell.policy.display}-s{cell.seed}-g{g}"  # a stage this cell does not share
        inputs = {"model": model, "samples": gen, "data": data}
        if "reference-perplexity" in cfg.metrics.names:
            inputs["reference"] = first
        cell.evaluations.append(add(Stage(
            "evaluate", label if len(sources) == 1 else own,
            {"metrics": cfg.metrics.model_dump(exclude={"slices"}), "g": g, "seed": cell.seed,
             "metric_versions": metric_versions(cfg)}, inputs)))
        if cfg.metrics.slices:  # metrics by origin, generator and curation outcome
            slice_inputs = {"trainset": trainset, "samples": gen, "data": data,
                            "reference": first}
            if curation and "candidates" in cfg.metrics.slices:
                slice_inputs["curate"] = samples[-1]
            cell.slices.append(add(Stage(
                "slice", label if len(sources) == 1 and not curation else own,
                {"sets": cfg.metrics.slices, "g": g, "seed": cell.seed,
                 "version": slicing.VERSION}, slice_inputs)))


# -- running ----------------------------------------------------------------------------------

def _stream(spec: dict) -> tuple:
    """What, besides the cell's seed, tells a stage's random streams apart: the generator
    (its label and own seed) of one of several generators; nothing for the study's model."""
    parts = (spec.get("generator"), spec.get("generator_seed"))
    return () if parts == (None, None) else parts

SAMPLE_FILES = {"generate": "samples.jsonl", "curate": "curated.jsonl",
                "mixture": "samples.jsonl"}

def real_splits(cfg: StudyConfig, source, task, seed: int) -> RealSplits:
    """The real examples of one seed: records -> task examples -> seeded subsets."""
    records = source.records(seed)
    examples = {split: None if rows is None else task.examples(rows, split)
                for split, rows in records.items()}
    for split, rows in examples.items():
        if rows is not None and not rows:
            why = (f"its text is shorter than one block of task.block_words="
                   f"{cfg.task.block_words} words" if cfg.task.block_words
                   else "an empty file, or every line blank?")
            raise DataError(f"the real {split} split has no examples for task {cfg.task.name} "
                            f"({why})")
    return select_splits(examples, cfg.data, seed, exact=getattr(source, "exact_sizes", False))


def plan_problems(cfg: StudyConfig, splits: RealSplits, source) -> list[str]:
    """What would fail after generation 0 is trained, from the sizes of the real data: a
    policy that takes more synthetic examples than a generation yields, ``fresh`` running
    out of never-used real data, ground-truth sentences longer than the model's context."""
    problems = []
    size = len(splits.train)
    requests = cfg.generation.num_samples or size
    for i, p in enumerate(cfg.policies):
        if p.name not in ("mix", "fresh") or cfg.generations < 2:
            continue
        n_real = round(p.real_fraction * size)
        best_of = any(s.name == "best-of-n" for s in cell_curation(cfg, p))
        most = requests * (1 if best_of else p.candidates or cfg.generation.candidates)
        if most < size - n_real:
            problems.append(
                f"policies.{i}: {p.display} takes {size - n_real} synthetic examples a "
                f"generation, but a generation yields at most {most} (generation.num_samples"
                f"={requests} for {size} real training examples)")
        needed = (cfg.generations - 1) * n_real
        if p.name == "fresh" and splits.pool is not None and needed > len(splits.pool):
            problems.append(
                f"policies.{i}: {p.display} needs {needed} never-used real examples over "
                f"{cfg.generations - 1} generations, but the data leave {len(splits.pool)} "
                f"after the training split; lower real_fraction or generations, or "
                f"data.train_size")
    truth = getattr(source, "truth", None)
    if (truth is not None and "ground-truth" in cfg.metrics.names
            and cfg.model.tokenizer == "word" and cfg.model.name == "tiny-gpt2"):
        longest = max(len(e["target"].split()) for e in splits.test)
        if longest + 2 > cfg.model.context_length:  # [BOS] words [EOS]
            problems.append(f"model.context_length: {cfg.model.context_length} tokens cut "
                            f"real test sentences of {longest} words (+ BOS, EOS); sentence "
                            f"probabilities (kl_true_model) need at least {longest + 2}")
    return problems


def preflight(cfg: StudyConfig) -> None:
    """Everything that can fail before training, checked before anything is written: the
    data of the first seed reads and splits, and the model can be loaded."""
    task = registry.TASKS.get(cfg.task.name)(cfg.task)
    source = make_source(cfg)
    problems = []
    for seed in cfg.seeds:  # each seed has its own training subset and fresh pool
        problems += plan_problems(cfg, real_splits(cfg, source, task, seed), source)
        if getattr(source, "exact_sizes", False):
            break  # the grammar: every seed has the configured sizes and an endless pool
    problems += device_problems(cfg.runtime.device)
    if "traits" in cfg.metrics.names:  # read only at evaluation, after generation 0 trained
        for i, t in enumerate(cfg.metrics.traits):
            if t.file is not None and not Path(t.file).is_file():
                what = "is a directory, not a file" if Path(t.file).is_dir() else "no such file"
                problems.append(f"metrics.traits.{i}.file: {t.file}: {what}")
    if problems:
        raise ConfigError(sorted(set(problems)), "study plan")
    registry.MODELS.get(cfg.model.name)().check(cfg.model)
    for generator in {g.label: g for p in cfg.policies for g in (p.generators or [])
                      if g.own_family}.values():
        model = ModelConfig.model_validate(generator.model_settings(cfg.model))
        registry.MODELS.get(model.name)().check(model)


class Runner:
    """Builds the stages of one study in one run directory."""

    def __init__(self, cfg: StudyConfig, run_dir: Path, log: Callable[[str], None] = _log,
                 provenance: dict | None = None):
        self.cfg, self.run_dir, self.log = cfg, Path(run_dir), log
        self.store = StageStore(self.run_dir, provenance)
        self.source = make_source(cfg)
        self.task = registry.TASKS.get(cfg.task.name)(cfg.task)
        self.family = registry.MODELS.get(cfg.model.name)()
        self.backend = registry.BACKENDS.get(cfg.generation.backend)()
        self.progress = cfg.runtime.progress

    def encoder(self, tokenizer, seq2seq: bool | None = None,
                context_length: int | None = None) -> Encoder:
        """How a model family (default: the study's) turns examples into ids."""
        return Encoder(tokenizer, self.family.seq2seq if seq2seq is None else seq2seq,
                       context_length or self.cfg.model.context_length,
                       self.cfg.task.max_source_tokens)

    def model_encoder(self, model_dir: Path, tokenizer) -> Encoder:
        """The encoder of the model a finished train stage made (its own family and context,
        which may differ from the study's: a generator of another family)."""
        spec = json.loads((model_dir / RECORD).read_text())["spec"]["model"]
        family = registry.MODELS.get(spec["name"])()
        return self.encoder(tokenizer, family.seq2seq, spec["context_length"])

    def prompt_ids(self, encoder: Encoder, sources: list[str]) -> list[list[int]]:
        """Encoded generation prompts for real sources (templated for decoder-only models)."""
        return [encoder.prompt_ids(context_ids(encoder, self.task, s)) for s in sources]

    def dir(self, stage: Stage) -> Path:
        """The finished folder of a stage."""
        return self.store.path(stage)

    def build_data(self, stage: Stage, out: Path) -> dict:
        """Real train/validation/test examples of one seed (and the unused pool)."""
        splits = real_splits(self.cfg, self.source, self.task, stage.spec["seed"])
        for name in ("train", "valid", "test"):
            write_jsonl(out / f"{name}.jsonl",
                        [{**e, "origin": "real"} for e in getattr(splits, name)])
        return {"sizes": {n: len(getattr(splits, n)) for n in ("train", "valid", "test")}}

    def build_pool(self, stage: Stage, out: Path) -> dict:
        """The training examples this seed does not use: where fresh real data comes from.
        (A stage of its own, planned only for the fresh policy: it can be large.)"""
        seed = stage.deps["data"].spec["seed"]
        pool = real_splits(self.cfg, self.source, self.task, seed).pool
        if pool is not None:
            write_jsonl(out / "pool.jsonl", [{**e, "origin": "real"} for e in pool])
        return {"size": None if pool is None else len(pool)}

    def real(self, data: Stage, split: str) -> list[dict]:
        """The real examples of a split."""
        return read_jsonl(self.dir(data) / f"{split}.jsonl")

    def build_tokenizer(self, stage: Stage, out: Path) -> dict:
        """The tokenizer, from the real training split only; frozen for every generation."""
        train = self.real(stage.deps["data"], "train")
        texts = [self.task.context(e["source"]) for e in train if e["source"]]
        spec = stage.spec
        model = self.cfg.model.model_copy(update={
            "name": spec["model"], "pretrained": spec.get("pretrained"), "lora": None})
        lexicon = self.source.truth.lexicon if spec.get("vocabulary") == "lexicon" else None
        tokenizer = registry.MODELS.get(spec["model"])().build_tokenizer(
            model, texts + [e["target"] for e in train], lexicon)
        tokenizer.save_pretrained(out)
        return {"vocab_size": len(tokenizer)}

    def _fresh(self, stage: Stage, g: int, n: int) -> list[dict]:
        """``n`` real examples never used before, for generation ``g`` (policy ``fresh``)."""
        data = stage.deps["data"]
        pool_file = self.dir(stage.deps["pool"]) / "pool.jsonl"
        if pool_file.is_file():
            pool = read_jsonl(pool_file)
            rows = pool[(g - 1) * n:g * n]
            if len(rows) < n:
                raise ValueError(f"the fresh-data pool is used up: generation {g} needs {n} "
                                 f"new real examples, {len(pool)} were left over from train")
        else:
            records = self.source.fresh(n, data.spec["seed"], g)
            rows = self.task.examples(records, "new")
        return [{**e, "id": f"fresh-g{g}-{e['id']}", "origin": "real-fresh"} for e in rows]

    def build_trainset(self, stage: Stage, out: Path) -> dict:
        """Generation g's training set: real data at g = 0, else what the policy assembles."""
        data = stage.deps["data"]
        real = self.real(data, "train")
        g = stage.spec["generation"]
        if g == 0:
            rows = real
        else:
            policy = PolicyConfig.model_validate(stage.spec["policy"])
            seed = data.spec["seed"]
            ctx = PolicyContext(
                generation=g, real=real, size=len(real),
                synthetic=[read_jsonl(self.dir(s) / SAMPLE_FILES[s.kind])
                           for s in stage.deps["samples"]],
                rng=np.random.default_rng(derive_seed(seed, "policy", g)),
                fresh=lambda n: self._fresh(stage, g, n),
                real_fraction=policy.real_fraction)
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

    def _selection_split(self, stage: Stage, texts: list[dict],
                         tcfg: TrainingConfig) -> tuple[list[dict], list[dict]]:
        """(training examples, validation examples) for model selection as configured."""
        if tcfg.selection_split == "real":
            return texts, self.real(stage.deps["data"], "valid")
        if tcfg.selection_split == "synthetic":
            rng = np.random.default_rng(derive_seed(stage.spec["seed"], "holdout",
                                                    stage.spec["generation"]))
            order = rng.permutation(len(texts))
            k = max(1, math.ceil(tcfg.synthetic_valid_fraction * len(texts)))
            # The training part keeps the training set's order (ordered training needs it).
            return [texts[i] for i in sorted(order[k:])], [texts[i] for i in order[:k]]
        return texts, []

    def build_train(self, stage: Stage, out: Path) -> dict:
        """Train generation g's model and save it as a Hugging Face checkpoint."""
        tokenizer = load_tokenizer(self.dir(stage.deps["tokenizer"]))
        rows = read_jsonl(self.dir(stage.deps["trainset"]) / "trainset.jsonl")
        tcfg = TrainingConfig.model_validate(stage.spec["training"])  # this cell's settings
        texts, valid = self._selection_split(stage, rows, tcfg)
        seed = derive_seed(stage.spec["seed"], "train", stage.spec["generation"],
                           *_stream(stage.spec))
        mcfg = ModelConfig.model_validate(stage.spec["model"])  # the study's or a generator's
        family = registry.MODELS.get(mcfg.name)()
        if "init" in stage.deps:
            model, _ = load_checkpoint(self.dir(stage.deps["init"]) / "model",
                                       self.cfg.runtime.device)
        else:
            model = family.build(mcfg, tokenizer, seed)
        model = family.prepare(model, mcfg)
        enc = self.encoder(tokenizer, family.seq2seq, mcfg.context_length)
        items = encode_examples(enc, self.task, texts)
        valid_items = encode_examples(enc, self.task, valid) if valid else None
        cut = {name: sum(target_cut(enc, it) for it, r in zip(part, rows_, strict=True)
                         if r.get("finished", True) is not False)
               for name, part, rows_ in (("train", items, texts),
                                         ("valid", valid_items or [], valid))}
        result = train_model(
            model, items, tcfg, seed=seed, pad_id=tokenizer.pad_token_id, valid=valid_items,
            device=self.cfg.runtime.device, eval_batch_size=self.cfg.runtime.eval_batch_size,
            micro_batch_size=self.cfg.runtime.micro_batch_size,
            progress=self.progress, desc=f"train {stage.label}")
        save_checkpoint(model.cpu(), tokenizer, out / "model")
        info = {**result.__dict__, "train_examples": len(texts), "valid_examples": len(valid),
                "targets_cut": cut, "order": tcfg.order,
                "unfinished_examples": sum(r.get("finished", True) is False for r in texts),
                "first_examples": [r["id"] for r in texts[:5]],
                "tokens_per_second": result.tokens_seen / max(result.seconds, 1e-9)}
        rundir.write_json(out / "train.json", info)
        return info

    def build_generate(self, stage: Stage, out: Path) -> dict:
        """Synthetic samples of generation g's model, each recorded with its provenance."""
        gcfg = GenerationConfig.model_validate(stage.spec["generation"])  # this cell's settings
        seed, g = stage.spec["seed"], stage.spec["g"]
        real_train = self.real(stage.deps["data"], "train")
        n = max(1, round(stage.spec.get("share", 1.0) * (gcfg.num_samples or len(real_train))))
        requests = self.task.prompts(real_train, n, gcfg,
                                     np.random.default_rng(derive_seed(seed, "prompts", g)))
        # N candidates per request (best-of-N curation keeps one); sample j of the stage always
        # draws the same noise, so candidates of one request differ only by their noise.
        requests = [{**p, "request": i} for i, p in enumerate(requests)]
        extra = {"generator": stage.spec["generator"]} if "generator" in stage.spec else {}
        rows, info = self._sample(stage.deps["model"].relpath, requests, gcfg,
                                  derive_seed(seed, "generate", g, *_stream(stage.spec)), g,
                                  f"g{g}-", extra)
        write_jsonl(out / "samples.jsonl", rows)
        return {**info, "requests": n}

    def _sample(self, model_id: str, requests: list[dict], gcfg: GenerationConfig, seed: int,
                g: int, prefix: str, extra: dict) -> tuple[list[dict], dict]:
        """``gcfg.candidates`` samples per request from the model of stage ``model_id``, each
        row with its provenance; and a summary of the sampling."""
        prompts = [p for p in requests for _ in range(gcfg.candidates)]
        checkpoint = self.run_dir / model_id / "model"
        encoder = self.model_encoder(self.run_dir / model_id, load_tokenizer(checkpoint))
        t0 = time.perf_counter()
        completions = self.backend.generate(
            checkpoint, self.prompt_ids(encoder, [p["source"] for p in prompts]), gcfg,
            seed=seed, batch_size=self.cfg.runtime.generation_batch_size,
            device=self.cfg.runtime.device, progress=self.progress)
        seconds = time.perf_counter() - t0
        decoding = gcfg.model_dump(exclude={"backend", "num_samples"})
        rows = [{"id": f"{prefix}{i}", "source": p["source"], "target": c.text,
                 "origin": "synthetic", "generation": g, "model": model_id,
                 "prompted_by": p["prompted_by"], "request": p["request"],
                 "finished": c.finished, "decoding": decoding, **extra}
                for i, (p, c) in enumerate(zip(prompts, completions, strict=True))]
        tokens = sum(c.new_tokens for c in completions)
        return rows, {"samples": len(prompts), "new_tokens": tokens, "seconds": seconds,
                      "tokens_per_second": tokens / max(seconds, 1e-9),
                      "unfinished": sum(not c.finished for c in completions)}

    def _quality_scorer(self, reference: Stage):
        """rows -> mean log-likelihood per token of their targets under a frozen model."""
        model, tokenizer = load_checkpoint(self.dir(reference) / "model", self.cfg.runtime.device)
        encoder = self.model_encoder(self.dir(reference), tokenizer)

        def score(rows: list[dict]) -> np.ndarray:
            items = encode_examples(encoder, self.task, rows)
            nll, count = sequence_nll(model, items, tokenizer.pad_token_id,
                                      self.cfg.runtime.eval_batch_size, self.cfg.runtime.device)
            return -nll / np.maximum(count, 1)
        return score

    def build_mixture(self, stage: Stage, out: Path) -> dict:
        """Several generators' samples in one set, each row tagged with its source."""
        rows, counts = [], {}
        for part in stage.deps["parts"]:
            tag = part.spec["generator"]
            part_rows = read_jsonl(self.dir(part) / "samples.jsonl")
            rows += [{**r, "id": f"{tag}:{r['id']}", "request": f"{tag}:{r['request']}"}
                     for r in part_rows]
            counts[tag] = len(part_rows)
        write_jsonl(out / "samples.jsonl", rows)
        return {"generators": counts}

    def build_curate(self, stage: Stage, out: Path) -> dict:
        """The curation steps over generation g's samples; every sample's scores and
        decisions are kept (lineage.jsonl), the survivors in order (curated.jsonl)."""
        from ouroboros.config import CurationStepConfig
        from ouroboros.curation.steps import CurationContext, curate
        rows = read_jsonl(self.dir(stage.deps["samples"]) / "samples.jsonl")
        ctx = CurationContext(real=self.real(stage.deps["data"], "train"), task=self.task,
                              rng=np.random.default_rng(derive_seed(stage.spec["seed"], "curate",
                                                                    stage.spec["g"])),
                              truth=getattr(self.source, "truth", None))
        steps = [CurationStepConfig.model_validate(s) for s in stage.spec["curation"]]
        if "reference" in stage.deps:
            ctx.score_quality = self._quality_scorer(stage.deps["reference"])
        refill = stage.spec.get("refill")
        kept, annotated = curate(rows, steps, ctx, allow_empty=bool(refill))
        info = {"candidates": len(rows), "kept": len(kept), "steps": ctx.info}
        if refill:
            kept, annotated, info = self._refill(stage, rows, kept, annotated, steps, ctx)
        write_jsonl(out / "curated.jsonl", kept)
        write_jsonl(out / "lineage.jsonl", annotated)
        return info

    def _refill(self, stage: Stage, rows: list[dict], kept: list[dict], annotated: list[dict],
                steps: list, ctx) -> tuple[list[dict], list[dict], dict]:
        """Generate until accepted: re-ask every request without a kept sample, from the model
        that answered it first, for up to ``refill`` rounds; each round is curated by the same
        steps (dedup also against what earlier rounds kept)."""
        from ouroboros.curation.steps import curate
        gcfg = GenerationConfig.model_validate(stage.spec["generation"])
        seed, g = stage.spec["seed"], stage.spec["g"]
        first: dict = {}  # request -> its first candidate (prompt, model, generator)
        for r in rows:
            first.setdefault(r["request"], r)
        rounds = [{"round": 0, "candidates": len(rows), "kept": len(kept), "steps": ctx.info}]
        for k in range(1, stage.spec["refill"] + 1):
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
                new, _ = self._sample(
                    model_id, [{"source": r["source"], "prompted_by": r["prompted_by"],
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
            self.log(f"  refill: {short} of {len(first)} requests still have no accepted sample "
                     f"after {len(rounds) - 1} extra rounds")
        return kept, annotated, {"candidates": len(annotated), "kept": len(kept),
                                 "requests": len(first), "unfilled_requests": short,
                                 "rounds": rounds}

    def build_slice(self, stage: Stage, out: Path) -> dict:
        """Per-example measures of generation g's training set, samples and curation
        candidates, sliced by origin, generator and outcome (metrics/slices.py)."""
        sets = {"trainset": self.dir(stage.deps["trainset"]) / "trainset.jsonl",
                "samples": self.dir(stage.deps["samples"]) / "samples.jsonl"}
        if "curate" in stage.deps:
            sets["candidates"] = self.dir(stage.deps["curate"]) / "lineage.jsonl"
        score = self._quality_scorer(stage.deps["reference"])
        truth = getattr(self.source, "truth", None)
        rows = []
        for name in stage.spec["sets"]:
            if name in sets:
                rows += slicing.slice_rows(name, read_jsonl(sets[name]), self.task.text, truth,
                                           lambda r: np.exp(-score(r)))
        rundir.write_json(out / "slices.json", {"generation": stage.spec["g"], "rows": rows})
        return {"rows": len(rows)}

    def _predict(self, model, encoder: Encoder, test: list[dict], seed: int) -> list[str]:
        """The model's outputs for real test sources, decoded as metrics.eval_decoding says."""
        gcfg = self.cfg.generation.model_copy(update={"decoding": self.cfg.metrics.eval_decoding})
        done = generate_with_model(
            model, encoder.tokenizer, self.prompt_ids(encoder, [e["source"] for e in test]),
            gcfg, seed=seed, batch_size=self.cfg.runtime.generation_batch_size,
            device=self.cfg.runtime.device, progress=self.progress)
        return [c.text for c in done]

    def build_evaluate(self, stage: Stage, out: Path) -> dict:
        """Every configured metric of generation g against real held-out data."""
        model, tokenizer = load_checkpoint(self.dir(stage.deps["model"]) / "model",
                                           self.cfg.runtime.device)
        samples = read_jsonl(self.dir(stage.deps["samples"]) / "samples.jsonl")
        test = self.real(stage.deps["data"], "test")
        encoder = self.model_encoder(self.dir(stage.deps["model"]), tokenizer)
        predictions = None
        if self.task.conditional:
            scored = test[:self.cfg.metrics.eval_size or len(test)]
            predictions = self._predict(model, encoder, scored, stage.spec["seed"])
            write_jsonl(out / "predictions.jsonl", [
                {"id": e["id"], "source": e["source"], "prediction": p, "reference": e["target"]}
                for e, p in zip(scored, predictions, strict=True)])
        reference = None
        if "reference" in stage.deps:
            reference, _ = load_checkpoint(self.dir(stage.deps["reference"]) / "model",
                                           self.cfg.runtime.device)
        ctx = EvalContext(
            samples=[self.task.text(s) for s in samples], real_test=test,
            real_train=self.real(stage.deps["data"], "train"), sample_rows=samples,
            reference_model=reference,
            seed=stage.spec["seed"], truth=getattr(self.source, "truth", None), model=model,
            tokenizer=tokenizer, encoder=encoder, task=self.task, predictions=predictions,
            batch_size=self.cfg.runtime.eval_batch_size, device=self.cfg.runtime.device,
            options={**self.cfg.metrics.model_dump(), "trait_configs": self.cfg.metrics.traits,
                     "prefix_words": (self.cfg.generation.prefix_words
                                      if self.cfg.generation.prompt == "real-prefix" else None)})
        values = [v for name in self.cfg.metrics.names for v in registry.METRICS.get(name)(ctx)]
        values += unfinished(ctx)  # always: the share of samples cut before their end
        rows = [{"metric": v.metric, "value": v.value, "higher_is_better": v.higher_is_better,
                 "signature": v.signature} for v in values]
        rundir.write_json(out / "metrics.json", {"generation": stage.spec["g"], "values": rows})
        for name, values in ctx.artifacts.items():  # per-sample values, e.g. for histograms
            rundir.write_json(out / f"{name}.json", {"values": values})
        return {"metrics": len(rows)}

    def run(self, plan: Plan) -> int:
        """Build every unfinished stage in order; returns how many were built now."""
        builders = {"data": self.build_data, "pool": self.build_pool,
                    "curate": self.build_curate, "mixture": self.build_mixture,
                    "tokenizer": self.build_tokenizer,
                    "trainset": self.build_trainset, "train": self.build_train,
                    "slice": self.build_slice,
                    "generate": self.build_generate, "evaluate": self.build_evaluate}
        built, t0 = 0, time.perf_counter()
        for i, stage in enumerate(plan.stages, 1):
            if self.store.is_done(stage):
                continue
            start = time.perf_counter()
            self.store.run(stage, lambda out, s=stage: builders[s.kind](s, out))
            built += 1
            elapsed = time.perf_counter() - t0
            self.log(f"[{i}/{len(plan.stages)}] {stage.kind:<9} {stage.label:<28} "
                     f"{time.perf_counter() - start:6.1f}s  (elapsed {elapsed:.0f}s)")
        return built


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


def resolve_device(name: str) -> str:
    """``runtime.device`` as a torch device: auto is cuda where PyTorch sees a GPU, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def device_problems(name: str) -> list[str]:
    """A CUDA device asked for that this machine's PyTorch cannot use."""
    if not name.startswith("cuda"):
        return []
    if not torch.cuda.is_available():
        return [f"runtime.device: {name} asked for, but PyTorch {torch.__version__} sees no "
                "CUDA device here (use auto or cpu)"]
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return [f"runtime.device: {name} asked for, but there are "
                f"{torch.cuda.device_count()} CUDA device(s)"]
    return []


def configure_torch(cfg: StudyConfig) -> None:
    """Threads and deterministic kernels for reproducible stages; quiet library logs."""
    # cuBLAS needs a fixed workspace for deterministic matrix products (set before CUDA starts).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(cfg.runtime.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would drown the stage log


def run_study(cfg: StudyConfig, run_dir: Path, log: Callable[[str], None] = _log,
              finish: Callable[[], None] | None = None) -> Plan:
    """Run (or resume) a study in ``run_dir``; finished stages with matching fingerprints are
    skipped. Writes config.yaml, manifest.json, the stages and metrics.csv; then ``finish``
    (the summary and report), still holding the lock. manifest.json gets ``finished`` only
    once everything is written, which is what ``status`` calls complete."""
    run_dir = Path(run_dir)
    preflight(cfg)
    with rundir.locked(run_dir):
        rundir.write_config(run_dir, dump_config(cfg))
        # Stages see the device that runs them (auto resolved); config.yaml keeps the setting.
        cfg = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(
            update={"device": resolve_device(cfg.runtime.device)})})
        prov = rundir.provenance(cfg.runtime.device, cfg.runtime.threads,
                                  cfg.training.precision)
        info = {**rundir.manifest(run_dir, prov), "notices": notices(cfg)}
        rundir.write_json(run_dir / "manifest.json", info)
        configure_torch(cfg)
        plan = plan_study(cfg)
        store = StageStore(run_dir)
        done = sum(store.is_done(s) for s in plan.stages)
        log(f"study {cfg.name}: {len(plan.cells)} cells, {len(plan.stages)} stages "
            f"({done} already finished) in {run_dir}")
        built = Runner(cfg, run_dir, log, prov).run(plan)
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
        moved = rundir.move_aside(run_dir, rundir.stale_stages(
            run_dir, {s.relpath for s in plan.stages}))
        if moved:
            log(f"stages no longer in the plan were moved to {moved}")
        if finish is not None:
            finish()
        info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info["stages_built"] = built
        rundir.write_json(run_dir / "manifest.json", info)
    return plan


def study_status(cfg: StudyConfig, run_dir: Path) -> dict:
    """How many stages of each kind are finished, and which cell generations are evaluated."""
    plan = plan_study(cfg)
    store = StageStore(run_dir)
    kinds: dict[str, list[int]] = {}
    for s in plan.stages:
        done_total = kinds.setdefault(s.kind, [0, 0])
        done_total[0] += store.is_done(s)
        done_total[1] += 1
    cells = {c.name: sum(store.is_done(s) for s in c.evaluations) for c in plan.cells}
    manifest = Path(run_dir) / "manifest.json"
    try:
        written = "finished" in json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        written = False
    stages_done = all(store.is_done(s) for s in plan.stages)
    return {"stages": kinds, "cells": cells, "generations": cfg.generations,
            "stages_done": stages_done, "complete": stages_done and written}
