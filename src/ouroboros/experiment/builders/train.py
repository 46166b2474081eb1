"""The train stage: generation g's model, trained on its training set, saved as a Hugging Face
checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ouroboros import registry
from ouroboros.config import ModelConfig, TrainingConfig
from ouroboros.experiment import rundir
from ouroboros.experiment.builders.job import Job, stream
from ouroboros.experiment.stages import derive_seed, read_jsonl
from ouroboros.models.checkpoint import load_checkpoint, load_tokenizer, save_checkpoint
from ouroboros.models.encoding import context_ids, encode_examples
from ouroboros.training.trainer import train_model


def selection_split(job: Job, texts: list[dict],
                    tcfg: TrainingConfig) -> tuple[list[dict], list[dict]]:
    """(training examples, validation examples) for model selection as configured."""
    if tcfg.selection_split == "real":
        return texts, job.real("valid")
    if tcfg.selection_split == "synthetic":
        rng = np.random.default_rng(derive_seed(job.spec["seed"], "holdout",
                                                job.spec["generation"]))
        order = rng.permutation(len(texts))
        k = max(1, math.ceil(tcfg.synthetic_valid_fraction * len(texts)))
        # The training part keeps the training set's order (ordered training needs it).
        return [texts[i] for i in sorted(order[k:])], [texts[i] for i in order[:k]]
    return texts, []


def cut_count(enc, task, examples: list[dict]) -> int:
    """Examples whose target lost tokens to the context length: finished ones lose their EOS
    too, unfinished synthetic ones (no EOS) are measured by their whole length."""
    count = 0
    for e in examples:
        eos = e.get("finished", True) is not False and enc.tokenizer.eos_token_id is not None
        context = context_ids(enc, task, e["source"])
        target = enc.ids(f" {e['target']}" if context and not enc.seq2seq else e["target"])
        length = len(target) + eos + (0 if enc.seq2seq else len(enc.prompt_ids(context)))
        count += length > enc.context_length
    return count


def build_train(job: Job, out: Path) -> dict:
    """Train the model the spec describes (from scratch, pretrained or the previous
    generation's) and record how training went."""
    tokenizer = load_tokenizer(job.input("tokenizer"))
    rows = read_jsonl(job.input("trainset") / "trainset.jsonl")
    tcfg = TrainingConfig.model_validate(job.spec["training"])  # this cell's settings
    texts, valid = selection_split(job, rows, tcfg)
    if tcfg.selection_split == "synthetic":  # which rows of the training set it never trained on
        rundir.write_json(out / "holdout.json", {"ids": [e.get("id") for e in valid]})
    if job.spec.get("direction") == "backward" and tcfg.selection_split == "real":
        valid = [{**e, "source": e["target"], "target": e["source"]} for e in valid]
    seed = derive_seed(job.spec["seed"], "train", job.spec["generation"], *stream(job.spec))
    mcfg = ModelConfig.model_validate(job.spec["model"])  # the study's or a generator's
    family = registry.MODELS.get(mcfg.name)()
    if "init" in job.stage.deps:
        model, _ = load_checkpoint(job.input("init") / "model", job.device)
    else:
        model = family.build(mcfg, tokenizer, seed)
    model = family.prepare(model, mcfg)
    enc = job.encoder(tokenizer, mcfg.name, mcfg.context_length)
    items = encode_examples(enc, job.task, texts)
    valid_items = encode_examples(enc, job.task, valid) if valid else None
    cut = {"train": cut_count(enc, job.task, texts), "valid": cut_count(enc, job.task, valid)}
    result = train_model(
        model, items, tcfg, seed=seed, pad_id=tokenizer.pad_token_id, valid=valid_items,
        device=job.device, eval_batch_size=job.runtime.eval_batch_size,
        micro_batch_size=job.runtime.micro_batch_size,
        progress=job.runtime.progress, desc=f"train {job.stage.label}")
    save_checkpoint(model.cpu(), tokenizer, out / "model")
    info = {**result.__dict__, "train_examples": len(texts), "valid_examples": len(valid),
            "targets_cut": cut, "order": tcfg.order,
            "unfinished_examples": sum(r.get("finished", True) is False for r in texts),
            "first_examples": [r["id"] for r in texts[:5]],
            "tokens_per_second": result.tokens_seen / max(result.seconds, 1e-9)}
    rundir.write_json(out / "train.json", info)
    return info
