"""Checkpoints as safetensors in the Hugging Face layout, loadable with ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
)


def save_checkpoint(model: PreTrainedModel, tokenizer, path: Path) -> None:
    """Write ``model.safetensors``, ``config.json`` and the tokenizer files into ``path``.

    LoRA adapters are merged first, so every checkpoint loads as a plain model.
    """
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def load_checkpoint(path: Path, device: str = "cpu"):
    """(model in eval mode, tokenizer) from a checkpoint folder; never unpickles."""
    path = Path(path)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors in checkpoint folder {path}")
    config = AutoConfig.from_pretrained(path)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(path, use_safetensors=True).to(device)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def load_tokenizer(path: Path):
    """The tokenizer saved in ``path``."""
    return AutoTokenizer.from_pretrained(path)
