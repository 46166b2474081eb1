"""Tiny decoder-only transformers trained from scratch: a small-width GPT-2 configuration."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from ouroboros.config import ModelConfig
from ouroboros.models.tokenizer import train_bpe_tokenizer, train_word_tokenizer


class TinyGPT2:
    """The ``tiny-gpt2`` family: a tokenizer from the real training split, GPT-2 blocks."""

    seq2seq = False

    def check(self, cfg: ModelConfig) -> None:
        """Nothing to load: always available."""

    def build_tokenizer(self, cfg: ModelConfig, texts: list[str],
                        vocabulary: list[str] | None = None) -> PreTrainedTokenizerFast:
        """The frozen tokenizer: BPE learned from the real training texts, or word-level over
        ``vocabulary`` (a closed language's lexicon) or else the training texts' words."""
        if cfg.tokenizer == "bpe":
            return train_bpe_tokenizer(texts, cfg.vocab_size)
        return train_word_tokenizer(texts, vocabulary)

    def build(self, cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast,
              seed: int) -> GPT2LMHeadModel:
        """Fresh weights, initialised deterministically from ``seed``."""
        config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=cfg.context_length, n_embd=cfg.n_embd,
            n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)

    def prepare(self, model, cfg: ModelConfig):
        """Nothing to add for full training."""
        return model
