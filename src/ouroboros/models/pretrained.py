"""Any Hugging Face causal or seq2seq model by name or local folder, optionally with LoRA.

Loading never runs remote code unless ``model.trust_remote_code`` is on. Without network, a name
that is not in the local cache fails in ``check`` with a clear message before any stage runs.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from ouroboros.config import ModelConfig


class ModelLoadError(RuntimeError):
    """A configured model cannot be loaded (offline, unknown name, bad folder)."""


class _Pretrained:
    seq2seq = False
    auto_class = AutoModelForCausalLM

    def check(self, cfg: ModelConfig) -> None:
        """Fail early, with the reason, if the model's config cannot be loaded."""
        try:
            config = AutoConfig.from_pretrained(cfg.pretrained, revision=cfg.revision,
                                                trust_remote_code=cfg.trust_remote_code)
        except Exception as e:  # OSError offline, ValueError for remote code, ...
            if "trust_remote_code" in str(e) and not cfg.trust_remote_code:
                raise ModelLoadError(
                    f"model '{cfg.pretrained}' ships its own code, which runs only with "
                    f"model.trust_remote_code: true (read that code first: it will run on this "
                    f"machine)") from None
            raise ModelLoadError(
                f"model '{cfg.pretrained}' cannot be loaded: {type(e).__name__}: "
                f"{str(e).splitlines()[0]} (offline? give a local folder, or set "
                f"HF_HUB_OFFLINE=0 with network)") from None
        if bool(getattr(config, "is_encoder_decoder", False)) != self.seq2seq:
            kind = "an encoder-decoder" if self.seq2seq else "a decoder-only"
            raise ModelLoadError(f"model '{cfg.pretrained}' is not {kind} model; use "
                                 f"{'hf-causal' if self.seq2seq else 'hf-seq2seq'}")

    def build_tokenizer(self, cfg: ModelConfig, texts: list[str],
                        vocabulary: list[str] | None = None):
        """The model's own tokenizer (a pad token is added as EOS where it has none)."""
        tok = AutoTokenizer.from_pretrained(cfg.pretrained, revision=cfg.revision,
                                            trust_remote_code=cfg.trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    def build(self, cfg: ModelConfig, tokenizer, seed: int):
        """The pretrained weights (``seed`` only seeds adapter initialisation)."""
        torch.manual_seed(seed)
        return self.auto_class.from_pretrained(cfg.pretrained, use_safetensors=None,
                                               revision=cfg.revision,
                                               trust_remote_code=cfg.trust_remote_code)

    def prepare(self, model, cfg: ModelConfig):
        """Wrap with LoRA adapters when configured."""
        if cfg.lora is None:
            return model
        from peft import LoraConfig, TaskType, get_peft_model
        task = TaskType.SEQ_2_SEQ_LM if self.seq2seq else TaskType.CAUSAL_LM
        return get_peft_model(model, LoraConfig(
            task_type=task, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout, target_modules=cfg.lora.target_modules))


class HFCausal(_Pretrained):
    """``hf-causal``: GPT-2, OPT, Llama-style models (decoder-only)."""


class HFSeq2Seq(_Pretrained):
    """``hf-seq2seq``: BART, T5, Marian-style models (encoder-decoder)."""

    seq2seq = True
    auto_class = AutoModelForSeq2SeqLM
