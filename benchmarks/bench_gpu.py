"""Benchmark: training and generation throughput of a model of paper shape on wikitext-2 blocks,
ouroboros against a plain baseline measured in the same run on the same model and data.

The model is ``tiny-gpt2`` at OPT-125m's shape (12 blocks, width 768, 12 heads: 12 + vocabulary
x 768 parameters, about 98M with a 16k BPE vocabulary), trained from scratch (no download).
Training: ``train_model`` in float32 and under bf16 autocast (and with micro-batches) against a
minimal float32 PyTorch loop; generation: ``generate_with_model`` (per-sample seeded sampling)
against plain Hugging Face ``generate(do_sample=True)``, both continuing real 8-word prefixes.
Throughput counts real tokens (training: non-padding tokens; generation: new tokens up to EOS).
Medians over ``--repeats``; ratios > 1 mean ouroboros is faster.

    python benchmarks/bench_gpu.py --data ../shared/data/wikitext-2 --device cuda
    python benchmarks/bench_gpu.py --data ../shared/data/wikitext-2 --shape small   # a CPU
    python benchmarks/bench_gpu.py --device cuda --repeats 3 --profile   # + host-bound check
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from bench_demo import baseline_generate_from, baseline_train  # noqa: E402

from ouroboros.config import load_config
from ouroboros.experiment.loop import configure_torch, resolve_device
from ouroboros.generation.hf import generate_with_model
from ouroboros.models.encoding import Encoder, encode_examples
from ouroboros.models.tiny import TinyGPT2
from ouroboros.tasks.lm import LanguageModelling
from ouroboros.training.trainer import train_model

SHAPES = {"opt-125m": ["model.n_layer=12", "model.n_embd=768", "model.n_head=12"],
          "small": ["model.n_layer=2", "model.n_embd=128", "model.n_head=2"]}


def blocks(path: Path, words: int, limit: int) -> list[str]:
    """The first ``limit`` blocks of ``words`` whitespace tokens of a text file."""
    out, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            current += line.split()
            while len(current) >= words and len(out) < limit:
                out.append(" ".join(current[:words]))
                current = current[words:]
            if len(out) >= limit:
                break
    return out


def busy(model, seqs, cfg, budget: dict, pad_id: int, device: str) -> None:
    """Profile fp32 training (after one warm-up run): wall time per step against the time the
    device's kernels ran (CUDA) or the CPU operators' self time (CPU)."""
    from torch.profiler import ProfilerActivity, profile
    tcfg = cfg.training.model_copy(update={k.split(".")[1]: v for k, v in budget.items()})
    train_model(model, seqs, tcfg, seed=0, pad_id=pad_id, device=device)  # warm-up
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        out = train_model(model, seqs, tcfg, seed=0, pad_id=pad_id, device=device)
    events = prof.key_averages()
    if cuda:
        kernel = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))
                     for e in events) / 1e6
    else:
        kernel = sum(e.self_cpu_time_total for e in events) / 1e6
    wall = out.seconds
    print(f"profile: {out.steps} fp32 steps, {wall / out.steps * 1000:.1f} ms wall per step, "
          f"{kernel / out.steps * 1000:.1f} ms of {'GPU kernels' if cuda else 'CPU operators'} "
          f"per step ({100 * kernel / wall:.0f}% of the wall time"
          f"{'; host-bound' if cuda and kernel < 0.8 * wall else ''})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/wikitext-2"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--shape", choices=list(SHAPES), default="opt-125m")
    ap.add_argument("--blocks", type=int, default=8192, help="64-word training blocks")
    ap.add_argument("--steps", type=int, default=60, help="optimiser steps per training run")
    ap.add_argument("--batch-size", type=int, default=32, help="training sequences per step")
    ap.add_argument("--prompts", type=int, default=1024, help="prompts per generation run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="also profile fp32 training steps: the step's wall time against the "
                         "device's kernel time (host-bound when the kernels fill little of it)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    cfg = load_config(overrides=SHAPES[args.shape] + [
        "data.source=files", "data.files.train=x", "data.files.test=x", "task.block_words=64",
        "model.tokenizer=bpe", "model.vocab_size=16000", "model.context_length=256",
        f"training.batch_size={args.batch_size}", "training.lr=0.0003",
        "generation.max_new_tokens=64",
        "generation.prompt=real-prefix", "generation.prefix_words=8", "metrics.names=[]",
        f"runtime.device={device}", "runtime.generation_batch_size=256"])
    configure_torch(cfg)
    texts = blocks(args.data / "train.txt", 64, args.blocks)
    family = TinyGPT2()
    tok = family.build_tokenizer(cfg.model, texts)
    encoder = Encoder(tok, False, cfg.model.context_length, cfg.task.max_source_tokens)
    seqs = encode_examples(encoder, LanguageModelling(cfg.task),
                           [{"source": "", "target": t} for t in texts])
    per_step = sum(len(ids) for ids, _ in seqs) / len(seqs) * cfg.training.batch_size
    budget = {"training.tokens": int(per_step * args.steps), "training.warmup_fraction": 0.0}
    prompts = [encoder.prompt_ids(encoder.ids(" ".join(t.split()[:8])))
               for t in texts[:args.prompts]]
    n_params = sum(p.numel() for p in family.build(cfg.model, tok, 0).parameters())
    print(f"{args.shape}: {n_params / 1e6:.1f}M parameters, {len(tok)} BPE tokens, device "
          f"{device}{' (' + torch.cuda.get_device_name() + ')' if device != 'cpu' else ''}, "
          f"torch {torch.__version__}, median of {args.repeats} repeats")

    arms = {"fp32": {}, "bf16": {"precision": "bf16"},
            f"bf16, micro-batch {args.batch_size // 4}": {"precision": "bf16",
                                                          "micro": args.batch_size // 4}}
    res: dict[str, list[float]] = {k: [] for k in [*arms, "train baseline fp32", "generate",
                                                   "generate baseline"]}
    for r in range(args.repeats):
        for name, arm in arms.items():
            tcfg = cfg.training.model_copy(update={**{k.split(".")[1]: v
                                                      for k, v in budget.items()},
                                                   "precision": arm.get("precision", "fp32")})
            model = family.build(cfg.model, tok, seed=r)
            out = train_model(model, seqs, tcfg, seed=r, pad_id=tok.pad_token_id, device=device,
                              micro_batch_size=arm.get("micro"))
            res[name].append(out.tokens_seen / out.seconds)
        base = family.build(cfg.model, tok, seed=r).to(device)
        res["train baseline fp32"].append(baseline_train(base, seqs, cfg.training,
                                                         tok.pad_token_id, args.steps, device))
        model.to(device).eval()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = generate_with_model(model, tok, prompts, cfg.generation, seed=r,
                                   batch_size=cfg.runtime.generation_batch_size, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        res["generate"].append(sum(c.new_tokens for c in done) / (time.perf_counter() - t0))
        res["generate baseline"].append(baseline_generate_from(
            model, tok, prompts, cfg.runtime.generation_batch_size,
            cfg.generation.max_new_tokens, device))
    if args.profile:
        busy(family.build(cfg.model, tok, seed=0), seqs, cfg, budget, tok.pad_token_id, device)
    med = {k: statistics.median(v) for k, v in res.items()}
    base = med["train baseline fp32"]
    print(f"{'':<34}{'tokens/s':>12}{'ratio':>8}")
    print(f"{'train baseline (plain loop, fp32)':<34}{base:>12,.0f}{1:>8.2f}")
    for name in arms:
        print(f"{'train ouroboros ' + name:<34}{med[name]:>12,.0f}{med[name] / base:>8.2f}")
    gbase = med["generate baseline"]
    print(f"{'generate baseline (HF sampling)':<34}{gbase:>12,.0f}{1:>8.2f}")
    print(f"{'generate ouroboros (hf backend)':<34}{med['generate']:>12,.0f}"
          f"{med['generate'] / gbase:>8.2f}")


if __name__ == "__main__":
    main()
