"""The generate and mixture stages: a model's synthetic samples, each row with its provenance,
and several generators' samples in one set."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ouroboros.config import GenerationConfig, ServerConfig
from ouroboros.experiment.builders.job import Job, stream
from ouroboros.experiment.stages import derive_seed, read_jsonl, write_jsonl
from ouroboros.generation.sampling import row_seeds
from ouroboros.generation.server import complete as server_complete
from ouroboros.models.checkpoint import load_tokenizer


def sample(job: Job, model_id: str, requests: list[dict], gcfg: GenerationConfig, seed: int,
           g: int, prefix: str, extra: dict) -> tuple[list[dict], dict]:
    """``gcfg.candidates`` samples per request from the model of stage folder ``model_id``,
    each row with its provenance; and a summary of the sampling."""
    prompts = [p for p in requests for _ in range(gcfg.candidates)]
    checkpoint = Path(job.run_dir) / model_id / "model"
    encoder = job.model_encoder(Path(job.run_dir) / model_id, load_tokenizer(checkpoint))
    t0 = time.perf_counter()
    backend = job.backend(gcfg)
    completions = backend.generate(
        checkpoint, job.prompt_ids(encoder, [p["source"] for p in prompts]), gcfg,
        seed=seed, batch_size=job.runtime.generation_batch_size, device=job.device,
        progress=job.runtime.progress, runtime=job.runtime)
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
                  "unfinished": sum(not c.finished for c in completions),
                  **getattr(backend, "info", {"backend": gcfg.backend})}


def build_generate(job: Job, out: Path) -> dict:
    """Synthetic samples of generation g's model."""
    gcfg = GenerationConfig.model_validate(job.spec["generation"])  # this cell's settings
    seed, g = job.spec["seed"], job.spec["g"]
    requests = generation_requests(job, gcfg, seed, g)
    n = len(requests)
    extra = {"generator": job.spec["generator"]} if "generator" in job.spec else {}
    stage_seed = derive_seed(seed, "generate", g, *stream(job.spec))
    if "server" in job.spec:
        rows, info = ask_server(job, requests, gcfg, stage_seed, g, f"g{g}-", extra)
    else:
        rows, info = sample(job, job.stage.deps["model"].relpath, requests, gcfg, stage_seed,
                            g, f"g{g}-", extra)
    write_jsonl(out / "samples.jsonl", rows)
    return {**info, "requests": n}


def generation_requests(job: Job, gcfg: GenerationConfig, seed: int, g: int) -> list[dict]:
    """Generation g's requests that this stage answers, each with its index ``request``.

    One list of ``generation.num_samples`` requests (null: every real training source once) is
    drawn per seed and generation; one of several generators answers the part ``[lo, hi)`` of
    a seeded permutation of it (``spec["part"]``), so the generators' prompts are disjoint and
    cover the list. ``request`` numbers the whole list, so it names the same prompt in every
    generator's samples."""
    real_train = job.real("train")
    total = gcfg.num_samples or len(real_train)
    rng = np.random.default_rng(derive_seed(seed, "prompts", g))
    part = job.spec.get("part")
    if part is None:  # the only generator (or a pre-split spec: its share of a fresh draw)
        n = max(1, round(job.spec.get("share", 1.0) * total))
        return [{**p, "request": i} for i, p in enumerate(job.task.prompts(real_train, n, gcfg,
                                                                           rng))]
    everything = job.task.prompts(real_train, total, gcfg, rng)
    order = np.random.default_rng(derive_seed(seed, "prompt-split", g)).permutation(total)
    lo, hi = (round(x * total) for x in part)
    return [{**everything[i], "request": int(i)} for i in sorted(order[lo:hi])]


def ask_server(job: Job, requests: list[dict], gcfg: GenerationConfig, seed: int, g: int,
               prefix: str, extra: dict) -> tuple[list[dict], dict]:
    """``gcfg.candidates`` samples per request from an LLM behind an OpenAI-compatible server
    (the model and prompt from the spec; the address, key and limits from the stage's
    access settings)."""
    server = ServerConfig.model_validate(job.stage.access["server"])
    if server.spec() != job.spec["server"]:
        raise ValueError("the server settings differ from the stage's spec")
    prompts = [p for p in requests for _ in range(gcfg.candidates)]
    answers, info = server_complete(
        server, [p["source"] for p in prompts], row_seeds(seed, 0, len(prompts)), gcfg,
        job.run_dir, where=f"generator {job.spec['generator']}: server")
    decoding = gcfg.model_dump(exclude={"backend", "num_samples"})
    rows = [{"id": f"{prefix}{i}", "source": p["source"], "target": a.text,
             "origin": "synthetic", "generation": g, "model": f"server:{server.model}",
             "prompted_by": p["prompted_by"], "request": p["request"],
             "finished": a.finished, "decoding": decoding, **extra}
            for i, (p, a) in enumerate(zip(prompts, answers, strict=True))]
    seconds = info["request_seconds"]
    return rows, {"samples": len(rows), "new_tokens": info["completion_tokens"],
                  "seconds": seconds, "unfinished": sum(not a.finished for a in answers),
                  "tokens_per_second": info["paid_completion_tokens"] / max(seconds, 1e-9),
                  "backend": "openai", **info}


def build_mixture(job: Job, out: Path) -> dict:
    """Several generators' samples in one set, each row tagged with its source."""
    rows, counts = [], {}
    for part in job.stage.deps["parts"]:
        tag = part.spec["generator"]
        part_rows = read_jsonl(job.dir(part) / "samples.jsonl")
        rows += [{**r, "id": f"{tag}:{r['id']}", "request": f"{tag}:{r['request']}"}
                 for r in part_rows]
        counts[tag] = len(part_rows)
    write_jsonl(out / "samples.jsonl", rows)
    return {"generators": counts}
