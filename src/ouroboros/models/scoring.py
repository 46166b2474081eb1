"""Log-likelihood of token sequences under a causal language model (batched, no grad)."""

from __future__ import annotations

import numpy as np
import torch


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(ids, attention_mask)``, both of shape [batch, longest]."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t >= 1, zero at padding; shape [batch, longest - 1]."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return logp * mask[:, 1:]


@torch.no_grad()
def sequence_nll(model, seqs: list[list[int]], pad_id: int, batch_size: int,
                 device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per sequence: negative log-likelihood in nats (all tokens after the first) and count.

    Sequences are scored in length-sorted batches to waste little compute on padding; the
    result is in the input order.
    """
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    nll, count = np.zeros(len(seqs)), np.zeros(len(seqs), dtype=np.int64)
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in idx], pad_id)
        logp = token_logprobs(model, ids.to(device), mask.to(device)).double().cpu()
        nll[idx] = (-logp.sum(dim=1)).numpy()
        count[idx] = (mask[:, 1:].sum(dim=1)).numpy()
    return nll, count
