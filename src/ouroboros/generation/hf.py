"""The torch / Hugging Face generation backend: batched ``generate`` with the KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ouroboros.config import GenerationConfig
from ouroboros.generation.sampling import processors, row_seeds
from ouroboros.models.checkpoint import load_checkpoint
from ouroboros.progress import show_progress


@dataclass(frozen=True)
class Completion:
    """One continuation: its text, whether it ended with EOS, and its length in tokens."""

    text: str
    finished: bool
    new_tokens: int


def _encode_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``[BOS] prompt`` ids and attention mask (generation appends on the right)."""
    rows = [[tokenizer.bos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"]
            for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def _decode(tokenizer, new: torch.Tensor) -> list[Completion]:
    """Cut every row at its first EOS and turn it into text."""
    out = []
    for row in new.tolist():
        finished = tokenizer.eos_token_id in row
        if finished:
            row = row[:row.index(tokenizer.eos_token_id)]
        text = tokenizer.decode(row, skip_special_tokens=True).strip()
        out.append(Completion(text, finished, len(row) + int(finished)))
    return out


def generate_with_model(model, tokenizer, prompts: list[str], cfg: GenerationConfig, *,
                        seed: int, batch_size: int, device: str = "cpu",
                        progress: bool = False) -> list[Completion]:
    """Continuations of ``prompts`` by an already loaded model."""
    banned = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    room = model.config.n_positions if hasattr(model.config, "n_positions") else None
    results: list[Completion] = []
    bar = tqdm(total=len(prompts), desc="generate", unit="sample",
               disable=not show_progress(progress), leave=False)
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        ids, mask = _encode_prompts(tokenizer, batch)
        max_new = cfg.max_new_tokens if room is None else min(cfg.max_new_tokens,
                                                              room - ids.shape[1])
        if max_new < 1:
            raise ValueError(f"prompts of {ids.shape[1]} tokens leave no room in the model's "
                             f"context of {room} tokens")
        seeds = row_seeds(seed, start, len(batch)) if cfg.decoding == "sample" else None
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                num_beams=cfg.num_beams if cfg.decoding == "beam" else 1,
                max_new_tokens=max_new, logits_processor=processors(cfg, banned, seeds),
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                use_cache=True)
        results += _decode(tokenizer, out[:, ids.shape[1]:].cpu())
        bar.update(len(batch))
    bar.close()
    return results


class HFBackend:
    """The ``hf`` backend: loads a checkpoint folder and generates on the configured device."""

    def generate(self, checkpoint: Path, prompts: list[str], cfg: GenerationConfig, *,
                 seed: int, batch_size: int, device: str = "cpu",
                 progress: bool = False) -> list[Completion]:
        """Continuations of ``prompts`` by the model saved in ``checkpoint``."""
        model, tokenizer = load_checkpoint(checkpoint, device)
        return generate_with_model(model, tokenizer, prompts, cfg, seed=seed,
                                   batch_size=batch_size, device=device, progress=progress)
