"""The training loop: AdamW with warm-up and decay, seeded and deterministic on CPU.

The budget is epochs or tokens; model selection keeps the last weights or the best on a named
validation split (the caller decides which split that is, real or synthetic).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ouroboros.config import TrainingConfig
from ouroboros.models import gpt2_fast
from ouroboros.models.encoding import IGNORE
from ouroboros.models.scoring import Item, pad_rows, sequence_nll
from ouroboros.progress import show_progress


@dataclass
class TrainResult:
    """What happened during training (written into the stage's completion record)."""

    steps: int
    tokens_seen: int
    seconds: float
    final_train_loss: float
    selected_epoch: int | None = None
    history: list[dict] = field(default_factory=list)


class TrainingDiverged(RuntimeError):
    """The training loss stopped being finite (NaN or infinite)."""


def target_tokens(batch: dict[str, torch.Tensor], seq2seq: bool) -> int:
    """Label positions a model's mean loss averages over (causal: labels shift by one)."""
    labels = batch["labels"] if seq2seq else batch["labels"][:, 1:]
    return int((labels != IGNORE).sum())


BUCKET_BATCHES = 32  # batches per length bucket: enough to sort, few enough to stay random


def _batches(lengths: list[int], batch_size: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Index batches forever, reshuffled every epoch by ``gen``.

    Each epoch is cut into chunks of ``BUCKET_BATCHES`` batches whose examples are sorted by
    length before batching, and the batches are then shuffled: every example is still seen
    once per epoch, but batches hold sentences of similar length, so little compute goes to
    padding (about half of it with random batches of 3- to 40-word sentences).
    """
    n = len(lengths)
    while True:
        perm = torch.randperm(n, generator=gen).tolist()
        chunk = batch_size * BUCKET_BATCHES
        batches = []
        for start in range(0, n, chunk):
            part = sorted(perm[start:start + chunk], key=lambda i: lengths[i])
            batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[b]


def _in_order(order: list[int], batch_size: int) -> Iterator[list[int]]:
    """Index batches forever in one order, the same every epoch (ordered training)."""
    while True:
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]


class Padded:
    """Every training sequence right-padded once into one table, so that a batch is a slice
    of rows (what ``collate`` makes of the same items, without a Python loop per batch)."""

    def __init__(self, seqs: list[Item], pad_id: int) -> None:
        self.ids = pad_rows([i for i, _ in seqs], pad_id)
        self.labels = pad_rows([lab for _, lab in seqs], IGNORE)
        self.lengths = torch.tensor([len(i) for i, _ in seqs])
        # an encoder-decoder item's labels (the target) are not as long as its ids (source)
        self.label_lengths = torch.tensor([len(lab) for _, lab in seqs])

    def batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """``collate([seqs[i] for i in idx], pad_id)``."""
        rows = torch.tensor(idx)
        lengths = self.lengths[rows]
        width = int(lengths.max())
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        return {"input_ids": self.ids[rows, :width], "attention_mask": mask,
                "labels": self.labels[rows, :int(self.label_lengths[rows].max())]}


def plan_steps(items: list[Item], cfg: TrainingConfig) -> tuple[int, int]:
    """(total optimiser steps, steps per epoch) for the configured budget."""
    per_epoch = math.ceil(len(items) / cfg.batch_size)
    if cfg.epochs is not None:
        return max(1, round(cfg.epochs * per_epoch)), per_epoch
    tokens_per_epoch = sum(len(ids) for ids, _ in items)
    return max(1, math.ceil(cfg.tokens / tokens_per_epoch * per_epoch)), per_epoch


def lr_lambda(cfg: TrainingConfig, total: int):
    """Multiplier of the peak learning rate at each step: linear warm-up, then decay."""
    warm = int(cfg.warmup_fraction * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "linear":
            return 1 - progress
        return 1.0
    return factor


def train_model(model, seqs: list[Item], cfg: TrainingConfig, *, seed: int, pad_id: int,
                valid: list[Item] | None = None, device: str = "cpu",
                eval_batch_size: int = 128, micro_batch_size: int | None = None,
                progress: bool = False, desc: str = "train") -> TrainResult:
    """Train ``model`` in place on (ids, labels) pairs; selection=best needs ``valid``.

    ``micro_batch_size`` (a memory setting, not a result one) splits each batch into parts
    whose gradients are accumulated; ``cfg.precision`` bf16 runs the forward pass under bf16
    autocast (weights, optimiser state and the saved checkpoint stay float32).

    Deterministic for a given seed, data and thread count: the shuffling generator and all
    parameter noise come from ``seed``.
    """
    if not seqs:
        raise ValueError("training set is empty")
    if cfg.selection == "best" and not valid:
        raise ValueError("selection=best needs a non-empty validation split")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    total, per_epoch = plan_steps(seqs, cfg)
    micro = micro_batch_size if micro_batch_size and micro_batch_size < cfg.batch_size else 0
    seq2seq = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    model.to(device).train()
    # The fused kernel updates every tensor in one call: about a tenth less time per step of a
    # tiny model, where the per-op overhead dominates (CPU and CUDA have it).
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=torch.device(device).type in ("cpu", "cuda"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    result = TrainResult(steps=total, tokens_seen=0, seconds=0.0, final_train_loss=float("nan"))
    best = (math.inf, None)
    t0, losses = time.perf_counter(), []
    bar = tqdm(total=total, desc=desc, unit="step", disable=not show_progress(progress),
               leave=False)
    if cfg.order == "given":
        batches = _in_order(list(range(len(seqs))), cfg.batch_size)
    elif cfg.order == "fixed":  # the control of ordered training: random, but never reshuffled
        batches = _in_order(torch.randperm(len(seqs), generator=gen).tolist(), cfg.batch_size)
    else:
        batches = _batches([len(ids) for ids, _ in seqs], cfg.batch_size, gen)
    autocast = {"device_type": torch.device(device).type, "dtype": torch.bfloat16,
                "enabled": cfg.precision == "bf16"}
    padded = Padded(seqs, pad_id)
    params = [p for p in model.parameters() if p.requires_grad]  # listed once, not per step
    # GPT-2 models: the lean forward (the same loss and gradients, without Hugging Face's
    # per-call machinery; models/gpt2_fast.py).
    fast = not seq2seq and gpt2_fast.fits(model)
    for step, idx in zip(range(total), batches, strict=False):
        opt.zero_grad(set_to_none=True)
        # One optimiser step over the whole batch, in micro-batches (gradient accumulation):
        # each micro-batch's mean loss is weighted by its share of the batch's target tokens,
        # so the gradient is the batch's token mean, as without accumulation.
        width = micro or len(idx)
        parts = [padded.batch(idx[j:j + width]) for j in range(0, len(idx), width)]
        targets = ([target_tokens(part, seq2seq) for part in parts] if len(parts) > 1
                   else [1])  # the weights of micro-batches; one part needs none
        loss_value = 0.0
        for part, n in zip(parts, targets, strict=True):
            with torch.autocast(**autocast):
                if fast:
                    loss = gpt2_fast.lm_loss(model, part["input_ids"].to(device),
                                             part["labels"].to(device))
                else:
                    loss = model(**{k: v.to(device) for k, v in part.items()}).loss
            if len(parts) > 1:
                loss = loss * (n / sum(targets))
            loss.backward()
            loss_value += loss.item()
            result.tokens_seen += int(part["attention_mask"].sum())
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"{desc}: the training loss is {loss_value} at step "
                                   f"{step + 1} of {total} (peak lr {cfg.lr:g}); lower "
                                   "training.lr or check the data")
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss_value)
        bar.update(1)
        if (step + 1) % per_epoch == 0 or step + 1 == total:
            epoch = math.ceil((step + 1) / per_epoch)
            record = {"epoch": epoch, "step": step + 1, "train_loss": float(np.mean(losses))}
            losses = []
            if valid:
                nll, count = sequence_nll(model, valid, pad_id, eval_batch_size, device)
                record["valid_loss"] = float(nll.sum() / count.sum())
                model.train()
                if cfg.selection == "best" and record["valid_loss"] < best[0]:
                    best = (record["valid_loss"], copy.deepcopy(model.state_dict()))
                    result.selected_epoch = epoch
            result.history.append(record)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}")
    bar.close()
    if cfg.selection == "best":
        model.load_state_dict(best[1])
    model.eval()
    result.final_train_loss = result.history[-1]["train_loss"]
    result.seconds = time.perf_counter() - t0
    return result
