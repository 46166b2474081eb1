"""Batching of (ids, labels) pairs and their log-likelihood under a causal or seq2seq model."""

from __future__ import annotations

import numpy as np
import torch

from ouroboros.models.encoding import IGNORE

Item = tuple[list[int], list[int]]


def pad_rows(rows: list[list[int]], value: int) -> torch.Tensor:
    """Rows of ids as one right-padded int64 tensor."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)


def collate(items: list[Item], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 at padding)."""
    ids = pad_rows([i for i, _ in items], pad_id)
    mask = pad_rows([[1] * len(i) for i, _ in items], 0)
    return {"input_ids": ids, "attention_mask": mask,
            "labels": pad_rows([lab for _, lab in items], IGNORE)}


def label_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each label token, mask of real label positions), both [batch, positions]."""
    logits = model(**batch).logits.float()
    labels = batch["labels"]
    if not model.config.is_encoder_decoder:  # token t is predicted from tokens < t
        logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp_min(0)[..., None])
    return logp.squeeze(-1) * keep, keep


@torch.no_grad()
def sequence_nll(model, items: list[Item], pad_id: int, batch_size: int,
                 device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per example: negative log-likelihood (nats) of its labels, and their count.

    Examples are scored in length-sorted batches to waste little compute on padding; the
    result is in the input order.
    """
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]) + len(items[i][1]))
    nll, count = np.zeros(len(items)), np.zeros(len(items), dtype=np.int64)
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([items[i] for i in idx], pad_id).items()}
        logp, keep = label_logprobs(model, batch)
        nll[idx] = (-logp.double().sum(dim=1)).cpu().numpy()
        count[idx] = keep.sum(dim=1).cpu().numpy()
    return nll, count
