"""Benchmark: the demo study's wall time, and training / generation throughput of ouroboros
against a plain baseline measured in the same run on the same model and data.

Baselines: a minimal PyTorch loop (random batches, AdamW, no schedule) for training, and
Hugging Face ``generate(do_sample=True)`` for sampling. Throughput counts real tokens (training:
non-padding tokens; generation: new tokens up to EOS). Medians over ``--repeats``; ratios > 1
mean ouroboros is faster.

    python benchmarks/bench_demo.py               # components x3, then the whole demo
    python benchmarks/bench_demo.py --no-study    # components only (about a minute)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ouroboros.config import load_config
from ouroboros.data.sources import GrammarSource
from ouroboros.experiment.loop import configure_torch, run_study
from ouroboros.generation.hf import generate_with_model
from ouroboros.models.encoding import Encoder, encode_examples
from ouroboros.models.scoring import collate
from ouroboros.models.tiny import TinyGPT2
from ouroboros.tasks.lm import LanguageModelling
from ouroboros.training.trainer import plan_steps, train_model


def baseline_train(model, seqs, cfg, pad_id, steps, device: str = "cpu") -> float:
    """A minimal loop: random batches, AdamW at the peak rate. Returns real tokens/s."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    tokens, t0 = 0, time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(seqs), (cfg.batch_size,), generator=gen).tolist()
        batch = collate([seqs[i] for i in idx], pad_id)
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        tokens += int(batch["attention_mask"].sum())
    _sync(device)
    return tokens / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    """Wait for queued GPU work, so that a timer reads the work done."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def baseline_generate_from(model, tok, prompts, batch_size, max_new, device="cpu") -> float:
    """Plain ``generate(do_sample=True)`` continuing left-padded encoded prompts. Returns new
    tokens/s (up to EOS)."""
    torch.manual_seed(0)
    _sync(device)
    tokens, t0 = 0, time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.no_grad():
            out = model.generate(ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                 top_k=0, max_new_tokens=max_new, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        new = out[:, width:]
        tokens += int(((new != tok.pad_token_id) | (new == tok.eos_token_id)).sum())
    _sync(device)
    return tokens / (time.perf_counter() - t0)


def baseline_generate(model, tok, n, batch_size, max_new) -> float:
    """Plain ``generate(do_sample=True)`` from BOS. Returns new tokens/s."""
    torch.manual_seed(0)
    tokens, t0 = 0, time.perf_counter()
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        ids = torch.full((b, 1), tok.bos_token_id)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 top_k=0, max_new_tokens=max_new, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        new = out[:, 1:]
        tokens += int(((new != tok.pad_token_id) | (new == tok.eos_token_id)).sum())
    return tokens / (time.perf_counter() - t0)


def gpt2_small_sampling(repeats: int, batch: int = 8, max_new: int = 32) -> dict[str, list]:
    """Sampling from a GPT-2-small-shaped model (12 layers, 768 wide, 50,257 tokens; random
    weights, so no sample ends early), ours and Hugging Face's, new tokens/s."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ouroboros.config import GenerationConfig

    class Tok:  # what generate_with_model reads of a tokenizer
        pad_token_id, eos_token_id, bos_token_id, unk_token_id = 50256, 50256, 50256, None

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    tok, prompts = Tok(), [[50256]] * batch
    cfg = GenerationConfig(max_new_tokens=max_new, temperature=1.0, top_k=0, top_p=1.0)
    res: dict[str, list] = {"gen": [], "gen_base": []}
    for r in range(repeats):
        t0 = time.perf_counter()
        done = generate_with_model(model, tok, prompts, cfg, seed=r, batch_size=batch)
        res["gen"].append(sum(c.new_tokens for c in done) / (time.perf_counter() - t0))
        res["gen_base"].append(baseline_generate_from(model, tok, prompts, batch, max_new))
    return res


def components(repeats: int) -> dict[str, list[float]]:
    """Training and generation throughput, ours and baseline, on the demo's generation 0."""
    cfg = load_config()
    threads = torch.get_num_threads()
    configure_torch(cfg)
    torch.set_num_threads(threads)  # --threads, or the demo's (main sets them before)
    texts = [r["text"] for r in GrammarSource(cfg.data).records(0)["train"]]
    family = TinyGPT2()
    tok = family.build_tokenizer(cfg.model, texts)
    encoder = Encoder(tok, False, cfg.model.context_length, cfg.task.max_source_tokens)
    seqs = encode_examples(encoder, LanguageModelling(cfg.task),
                           [{"source": "", "target": t} for t in texts])
    steps, _ = plan_steps(seqs, cfg.training)
    n = len(texts)
    res: dict[str, list[float]] = {k: [] for k in ("train", "train_base", "gen", "gen_base")}
    for r in range(repeats):
        model = family.build(cfg.model, tok, seed=r)
        out = train_model(model, seqs, cfg.training, seed=r, pad_id=tok.pad_token_id)
        res["train"].append(out.tokens_seen / out.seconds)
        res["train_base"].append(baseline_train(family.build(cfg.model, tok, seed=r), seqs,
                                                cfg.training, tok.pad_token_id, steps))
        t0 = time.perf_counter()
        done = generate_with_model(model, tok, [encoder.prompt_ids([])] * n, cfg.generation,
                                   seed=r,
                                   batch_size=cfg.runtime.generation_batch_size)
        res["gen"].append(sum(c.new_tokens for c in done) / (time.perf_counter() - t0))
        res["gen_base"].append(baseline_generate(model, tok, n,
                                                 cfg.runtime.generation_batch_size,
                                                 cfg.generation.max_new_tokens))
    return res


def whole_demo() -> tuple[float, dict[str, float]]:
    """Wall time of the demo study and its median per-stage throughput."""
    cfg = load_config(overrides=["runtime.progress=false"])
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run_study(cfg, Path(d), log=lambda _: None)
        wall = time.perf_counter() - t0
        rates = {}
        for kind in ("train", "generate"):
            recs = [json.loads(p.read_text())
                    for p in Path(d).glob(f"stages/{kind}/*/_complete.json")]
            rates[kind] = statistics.median(r["info"]["tokens_per_second"] for r in recs)
    return wall, rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-study", action="store_true", help="skip timing the whole demo")
    ap.add_argument("--threads", type=int, default=None,
                    help="PyTorch threads (default: the demo's runtime.threads)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.threads:
        torch.set_num_threads(load_config().runtime.threads)
    res = components(args.repeats)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"demo generation 0, median of {args.repeats} repeats, {torch.get_num_threads()} threads")
    print(f"{'':<12}{'ouroboros':>14}{'baseline':>14}{'ratio':>8}")
    for name, ours, base in (("train tok/s", "train", "train_base"),
                             ("gen tok/s", "gen", "gen_base")):
        print(f"{name:<12}{med[ours]:>14,.0f}{med[base]:>14,.0f}{med[ours] / med[base]:>8.2f}")
    big = gpt2_small_sampling(args.repeats)
    ours, base = statistics.median(big["gen"]), statistics.median(big["gen_base"])
    print("GPT-2-small-shaped model (124M, random weights), batch 8 x 32 new tokens:")
    print(f"{'gen tok/s':<12}{ours:>14,.1f}{base:>14,.1f}{ours / base:>8.2f}")
    if not args.no_study:
        wall, rates = whole_demo()
        print(f"\nwhole demo study: {wall:.0f} s wall; median stage throughput: "
              f"train {rates['train']:,.0f} tok/s, generate {rates['generate']:,.0f} tok/s")


if __name__ == "__main__":
    main()
