"""The torch / Hugging Face generation backend: batched ``generate`` with the KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ouroboros.config import GenerationConfig
from ouroboros.generation.sampling import processors
from ouroboros.generation.sampling import row_seeds as derive_rows
from ouroboros.models import gpt2_fast
from ouroboros.models.checkpoint import load_checkpoint
from ouroboros.progress import show_progress


@dataclass(frozen=True)
class Completion:
    """One continuation: its text, whether it ended with EOS, and its length in tokens."""

    text: str
    finished: bool
    new_tokens: int


def _batch_inputs(prompts: list[list[int]], pad_id: int,
                  left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids and mask; decoder-only prompts are left-padded (generation appends right)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        sl = slice(width - len(p), width) if left else slice(0, len(p))
        ids[i, sl] = torch.tensor(p, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def _decode(tokenizer, new: torch.Tensor) -> list[Completion]:
    """Cut every row at its first EOS and turn it into text."""
    out = []
    for row in new.tolist():
        finished = tokenizer.eos_token_id in row
        if finished:
            row = row[:row.index(tokenizer.eos_token_id)]
        row = [t for t in row if t != tokenizer.pad_token_id]
        text = tokenizer.decode(row, skip_special_tokens=True).strip()
        out.append(Completion(text, finished, len(row) + int(finished)))
    return out


def _context_room(model) -> int | None:
    """Positions the model can attend to, if it has a fixed limit."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(model.config, name, None)
        if isinstance(value, int):
            return value
    return None


def generate_with_model(model, tokenizer, prompts: list[list[int]], cfg: GenerationConfig, *,
                        seed: int, batch_size: int, device: str = "cpu",
                        progress: bool = False,
                        row_seeds: list[int] | None = None) -> list[Completion]:
    """Continuations of already-encoded prompts (see ``Encoder.prompt_ids``); each sampled
    with its own random stream: ``row_seeds[i]`` if given, else one derived from ``seed`` and
    the prompt's position."""
    given = row_seeds
    seq2seq = bool(model.config.is_encoder_decoder)
    eos = tokenizer.eos_token_id
    # BOS is banned for decoder-only models (it only starts prompts); encoder-decoder models
    # such as BART are forced to emit it first by their own generation config.
    never = [tokenizer.pad_token_id, tokenizer.unk_token_id]
    if not seq2seq:
        never.append(tokenizer.bos_token_id)
    banned = sorted({t for t in never if t is not None and t != eos})
    room = None if seq2seq else _context_room(model)
    # One cap for every prompt (the longest prompt's room), so whether a sample is cut before
    # its end never depends on which prompts share its batch.
    width = max((len(p) for p in prompts), default=0)
    max_new = cfg.max_new_tokens if room is None else min(cfg.max_new_tokens, room - width)
    if max_new < 1:
        raise ValueError(f"prompts of {width} tokens leave no room in the model's context of "
                         f"{room} tokens")
    # GPT-2 models sample and decode greedily through the lean decoder (models/gpt2_fast.py);
    # beam search and other models through Hugging Face's generate.
    fast = cfg.decoding != "beam" and not seq2seq and gpt2_fast.fits(model, generating=True)
    results: list[Completion] = []
    bar = tqdm(total=len(prompts), desc="generate", unit="sample",
               disable=not show_progress(progress), leave=False)
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        ids, mask = _batch_inputs(batch, tokenizer.pad_token_id, left=not seq2seq)
        seeds = None
        if cfg.decoding == "sample":
            seeds = (derive_rows(seed, start, len(batch)) if given is None
                     else given[start:start + len(batch)])
        chain = processors(cfg, banned, seeds)
        if fast:
            out = _decode_fast(model, ids.to(device), mask.to(device), max_new, chain, eos,
                               tokenizer.pad_token_id)
        else:
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                    num_beams=cfg.num_beams if cfg.decoding == "beam" else 1,
                    max_new_tokens=max_new, logits_processor=chain,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, use_cache=True)
        # Decoder-only output repeats the prompt; encoder-decoder output starts with the
        # decoder start token.
        new = out[:, 1:] if seq2seq else out[:, ids.shape[1]:]
        results += _decode(tokenizer, new.cpu())
        bar.update(len(batch))
    bar.close()
    return results


@torch.no_grad()
def _decode_fast(model, ids: torch.Tensor, mask: torch.Tensor, max_new: int, chain, eos: int,
                 pad: int) -> torch.Tensor:
    """What ``generate(do_sample=False, logits_processor=chain)`` returns for a GPT-2 model:
    the prompts and up to ``max_new`` tokens, a row's tokens after its EOS padding, stopping
    once every row has ended; with a static key/value cache and none of generate's per-step
    machinery."""
    decoder = gpt2_fast.Decoder(model, ids, mask, max_new)
    b, w = ids.shape
    out = torch.full((b, w + max_new), pad, dtype=torch.long, device=ids.device)
    out[:, :w] = ids
    running = torch.ones(b, dtype=torch.bool, device=ids.device)
    logits = decoder.start()
    for t in range(max_new):
        scores = chain(out[:, :w + t], logits.float())
        token = torch.where(running, scores.argmax(dim=-1), pad)
        out[:, w + t] = token
        running &= token != eos
        if not bool(running.any()):
            return out[:, :w + t + 1]
        if t + 1 < max_new:
            logits = decoder.step(token)
    return out


class HFBackend:
    """The ``hf`` backend: loads a checkpoint folder and generates on the configured device."""

    def generate(self, checkpoint: Path, prompts: list[list[int]], cfg: GenerationConfig, *,
                 seed: int, batch_size: int, device: str = "cpu", progress: bool = False,
                 runtime=None) -> list[Completion]:
        """Continuations of encoded ``prompts`` by the model saved in ``checkpoint``."""
        model, tokenizer = load_checkpoint(checkpoint, device)
        return generate_with_model(model, tokenizer, prompts, cfg, seed=seed,
                                   batch_size=batch_size, device=device, progress=progress)
