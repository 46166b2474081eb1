"""The ``vllm`` backend: offline vLLM in a process of its own per generate stage.

What matches the ``hf`` backend: the prompts, the tokens never emitted (padding, unknown, BOS
for decoder-only models), the cap on new tokens, temperature, top-k and top-p, and how a
completion is cut at EOS and decoded. What does not: the random noise. Each sample has its own
seed (derived from the stage seed and the sample's index, as for ``hf``; a request's N
candidates are one request with ``n = N``), so a sample does not depend on its batch, but vLLM
draws different noise from the same seed than PyTorch does: the two backends give the same
*distribution* (tests/integration/test_vllm.py checks it), not the same samples. vLLM's own
outputs are reproducible on the same hardware and vLLM version, which each stage records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ouroboros.config import GenerationConfig, RuntimeConfig
from ouroboros.generation.hf import Completion, _decode
from ouroboros.generation.sampling import row_seeds
from ouroboros.models.checkpoint import load_tokenizer

WORKER = Path(__file__).with_name("vllm_worker.py")


class VLLMError(RuntimeError):
    """vLLM could not generate (not installed, refused the model, ran out of memory)."""


def _model_config(checkpoint: Path) -> dict:
    return json.loads((Path(checkpoint) / "config.json").read_text())


class VLLMBackend:
    """Generate with vLLM; settings in ``runtime.vllm`` (never in a fingerprint)."""

    def __init__(self) -> None:
        self.info: dict = {"backend": "vllm"}

    def generate(self, checkpoint: Path, prompts: list[list[int]], cfg: GenerationConfig, *,
                 seed: int, batch_size: int, device: str = "cpu", progress: bool = False,
                 runtime: RuntimeConfig | None = None) -> list[Completion]:
        """Continuations of encoded ``prompts`` by the model saved in ``checkpoint``."""
        settings = (runtime or RuntimeConfig()).vllm
        tokenizer = load_tokenizer(checkpoint)
        config = _model_config(checkpoint)
        seq2seq = bool(config.get("is_encoder_decoder"))
        if seq2seq:
            raise VLLMError("generation.backend: vllm runs decoder-only models; use hf for "
                            "encoder-decoder models")
        eos = tokenizer.eos_token_id
        never = {tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id}
        banned = {t for t in never if t is not None and t != eos}
        room = config.get("n_positions") or config.get("max_position_embeddings")
        width = max((len(p) for p in prompts), default=0)
        max_new = cfg.max_new_tokens if room is None else min(cfg.max_new_tokens, room - width)
        if max_new < 1:
            raise ValueError(f"prompts of {width} tokens leave no room in the model's context "
                             f"of {room} tokens")
        if not prompts:
            return []
        utilization = settings.gpu_memory_utilization or (0.8 if device.startswith("cuda")
                                                          else 0.3)
        request = {
            "checkpoint": str(checkpoint), "prompts": prompts, "decoding": cfg.decoding,
            "seeds": row_seeds(seed, 0, len(prompts)), "candidates": cfg.candidates,
            "engine_seed": seed % 2**31, "temperature": cfg.temperature, "top_k": cfg.top_k,
            "top_p": cfg.top_p, "num_beams": cfg.num_beams, "max_new_tokens": max_new,
            "eos": eos, "allowed": sorted(set(range(len(tokenizer))) - banned),
            "engine": {"dtype": settings.dtype, "tensor_parallel_size":
                       settings.tensor_parallel_size, "gpu_memory_utilization": utilization,
                       "max_model_len": settings.max_model_len or room}}
        if device.startswith("cuda"):
            import torch
            torch.cuda.empty_cache()  # what this process cached is the worker's to use
        python = settings.python or sys.executable
        try:
            done = subprocess.run([python, str(WORKER)], input=json.dumps(request),
                                  capture_output=True, text=True, check=False)
        except OSError as e:
            raise VLLMError(f"runtime.vllm.python: cannot run {python}: {e.strerror}") from e
        if done.returncode != 0 or not done.stdout.strip():
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            hint = (" (is vLLM installed there? pip install 'ouroboros[vllm]', or see "
                    "docs/scale.md for the CPU build)" if "No module named 'vllm'" in tail else "")
            raise VLLMError(f"vLLM failed with exit code {done.returncode}{hint}:\n{tail}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.info = {"backend": "vllm", "vllm": result["vllm"], "dtype": settings.dtype,
                     "gpu_memory_utilization": utilization,
                     "engine_generate_seconds": result["seconds"]}
        import torch
        width = max(len(t) for t in result["tokens"]) or 1
        pad = tokenizer.pad_token_id
        rows = torch.tensor([t + [pad] * (width - len(t)) for t in result["tokens"]])
        return _decode(tokenizer, rows)
