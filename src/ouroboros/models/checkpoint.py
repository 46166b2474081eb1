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
    model = _load_direct(auto, config, path)
    if model is None:
        model = auto.from_pretrained(path, use_safetensors=True)
    model.to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


DIRECT_MOST = 256 * 2**20  # bytes of weights up to which checkpoints load directly


def _load_direct(auto, config, path: Path):
    """The model built from its config and the safetensors file loaded into it as they are,
    or None where that would not give every weight (then ``from_pretrained`` does it).
    ``from_pretrained`` spends 0.1 s per call on the demo's tiny model (0.4 s the first time
    in a process: it builds about a thousand regular expressions for its weight-name
    conversion rules), this 0.03 s, and a generation of the demo loads 4 checkpoints; the
    weights are the same tensors either way (tests/unit/test_checkpoint.py)."""
    import contextlib

    import torch
    from safetensors.torch import load_file
    try:
        from transformers.initialization import no_init_weights
        quiet_init = no_init_weights()
    except ImportError:  # another transformers layout: initialise, then overwrite
        quiet_init = contextlib.nullcontext()
    if (path / "model.safetensors").stat().st_size > DIRECT_MOST:
        return None  # it pays for tiny models only; big ones would be held twice in memory
    state = load_file(str(path / "model.safetensors"))
    with torch.random.fork_rng(devices=[]):  # building draws nothing from the global stream
        with quiet_init:
            model = auto.from_config(config)
    current = model.state_dict()
    if any(k in current and (current[k].dtype != v.dtype or current[k].shape != v.shape)
           for k, v in state.items()):
        return None  # from_pretrained keeps some modules in another dtype, or shapes differ
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:
        return None
    model.tie_weights()
    current = model.state_dict()
    loaded = {current[k].data_ptr() for k in state if k in current}
    if unexpected or any(current[k].data_ptr() not in loaded for k in missing):
        return None  # a weight the file does not hold, or one the model does not have
    if (path / "generation_config.json").is_file():
        from transformers import GenerationConfig
        model.generation_config = GenerationConfig.from_pretrained(path)
    return model


def load_tokenizer(path: Path):
    """The tokenizer saved in ``path``."""
    return AutoTokenizer.from_pretrained(path)
