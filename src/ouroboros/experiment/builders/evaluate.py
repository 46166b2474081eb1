"""The evaluate stage: every configured metric of generation g's model and samples, against
real held-out data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouroboros import registry
from ouroboros.config import GenerationConfig, MetricsConfig
from ouroboros.experiment import rundir
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.stages import derive_seed, read_jsonl, write_jsonl
from ouroboros.generation.hf import generate_with_model
from ouroboros.metrics.references import sample_shape
from ouroboros.metrics.signature import EvalContext
from ouroboros.models.checkpoint import load_checkpoint


def predict(job: Job, model, encoder, test: list[dict], gcfg: GenerationConfig) -> list[str]:
    """The model's outputs for real test sources, decoded as the spec's ``prediction`` says
    (the study's generation settings with metrics.eval_decoding)."""
    done = generate_with_model(
        model, encoder.tokenizer, job.prompt_ids(encoder, [e["source"] for e in test]),
        gcfg, seed=job.spec["seed"], batch_size=job.runtime.generation_batch_size,
        device=job.device, progress=job.runtime.progress)
    return [c.text for c in done]


def build_evaluate(job: Job, out: Path) -> dict:
    """metrics.json (one row per value, with its signature) and per-sample artifacts."""
    mcfg = MetricsConfig.model_validate(job.spec["metrics"])
    model, tokenizer = load_checkpoint(job.input("model") / "model", job.device)
    samples = read_jsonl(job.input("samples") / "samples.jsonl")
    test = job.real("test")
    encoder = job.model_encoder(job.input("model"), tokenizer)
    predictions = None
    if job.task.conditional:
        scored = test[:mcfg.eval_size or len(test)]
        gcfg = GenerationConfig.model_validate(job.spec["prediction"])
        predictions = predict(job, model, encoder, scored, gcfg)
        write_jsonl(out / "predictions.jsonl", [
            {"id": e["id"], "source": e["source"], "prediction": p, "reference": e["target"]}
            for e, p in zip(scored, predictions, strict=True)])
    train_predictions = None
    if "accuracy" in mcfg.names:  # what the model gets right of its own real training set
        train = job.real("train")
        if mcfg.eval_size and mcfg.eval_size < len(train):  # a seeded subset, not file order
            keep = np.random.default_rng(derive_seed(job.spec["seed"], "train-accuracy"))
            train = [train[i] for i in sorted(keep.permutation(len(train))[:mcfg.eval_size])]
        said = predict(job, model, encoder, train, gcfg)
        train_predictions = {e["id"]: p for e, p in zip(train, said, strict=True)}
        write_jsonl(out / "train_predictions.jsonl", [
            {"id": e["id"], "source": e["source"], "prediction": p, "reference": e["target"],
             "correct": job.task.check(p, e["target"])[1]}
            for e, p in zip(train, said, strict=True)])
    reference = None
    if "reference" in job.stage.deps:
        reference, _ = load_checkpoint(job.input("reference") / "model", job.device)
    ctx = EvalContext(
        # the generated side: a back-translated pair's source, else the target
        samples=[s["source"] if s.get("generated") == "source" else job.task.text(s)
                 for s in samples], real_test=test,
        real_train=job.real("train"), sample_rows=samples, reference_model=reference,
        seed=job.spec["seed"], truth=job.truth, model=model, tokenizer=tokenizer,
        encoder=encoder, task=job.task, predictions=predictions,
        train_predictions=train_predictions,
        batch_size=job.runtime.eval_batch_size, device=job.device,
        options={**job.spec["metrics"], "trait_configs": mcfg.traits,
                 "prefix_words": job.spec.get("prefix_words")})
    values = [v for name in mcfg.names for v in registry.METRICS.get(name)(ctx)]
    values += sample_shape(ctx)  # always: unfinished, length and empty share of the samples
    rows = [{"metric": v.metric, "value": v.value, "higher_is_better": v.higher_is_better,
             "signature": v.signature} for v in values]
    rundir.write_json(out / "metrics.json", {"generation": job.spec["g"], "values": rows})
    for name, values in ctx.artifacts.items():  # per-sample values, e.g. for histograms
        rundir.write_json(out / f"{name}.json", {"values": values})
    return {"metrics": len(rows)}
