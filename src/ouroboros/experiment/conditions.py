"""Build conditions: the runtime settings that change the bits of a stage's result without
being among its settings, recorded in every stage's completion record and never mixed.

PyTorch's CPU kernels split work by thread count, so ``runtime.threads`` changes the rounding
of every model computation (measured: 226 of 3,000 samples of the demo's generation 0 differ
between 1 and 2 threads); a training batch split into micro-batches sums its gradient in
another order; scoring pads a batch to its longest sequence, so which sequences share a batch
changes their scores in the last bits, and sampling pads prompts of other lengths the same way;
a GPU computes differently from a CPU; vLLM's version, dtype, parallelism and batch scheduling
change its numbers. These are speed or memory settings, so they stay out of
the fingerprints (changing them on a new run directory reuses nothing and costs nothing), but
a run directory keeps the conditions its stages were built under, and ``run``/``resume``
refuse, before any work, to reuse or extend stages built under other ones: one ``error:`` line
names the setting and both values. Settings that are not conditions (executor, workers,
progress bars, checkpoint retention) are tested to change no byte.
"""

from __future__ import annotations

import contextlib
from functools import cache
from importlib import metadata

from ouroboros.config import BUILD_CONDITIONS, RuntimeConfig

# Stage kinds that run PyTorch (the others read and write JSON only).
TORCH_KINDS = {"train", "generate", "curate", "evaluate", "slice", "backtranslate"}
# Kinds that score sequences in batches of runtime.eval_batch_size (training: the validation
# loss that picks the best epoch; curation: the quality step; slices: quality by origin).
SCORING_KINDS = {"train", "curate", "evaluate", "slice", "backtranslate"}
VLLM_KEYS = tuple(k.removeprefix("vllm.") for k in BUILD_CONDITIONS if k.startswith("vllm."))


class ConditionMismatch(ValueError):
    """Finished stages of a run directory were built under other runtime conditions."""


def conditions(kind: str, spec: dict, runtime: RuntimeConfig) -> dict:
    """The runtime settings a stage of ``kind`` with ``spec`` is built under that can change a
    bit of its result (``runtime.device`` already resolved: cpu or cuda[:N])."""
    if "server" in spec:  # a server's answers: no local compute
        return {}
    if kind == "tokenizer":  # BPE training: the tokenizers library's merges
        return packages(("tokenizers", "transformers"))
    if kind == "augment":  # the student's answers (greedy) or a local teacher's samples
        if "prediction" not in spec and spec["teacher"]["kind"] != "model":
            return {}
        return {"device": runtime.device.partition(":")[0], "threads": runtime.threads,
                **packages(("torch", "transformers", "tokenizers")),
                "generation_batch_size": runtime.generation_batch_size}
    if kind not in TORCH_KINDS:
        return {}
    out: dict = {"device": runtime.device.partition(":")[0], "threads": runtime.threads,
                 **packages(("torch", "transformers", "tokenizers"))}
    if kind == "train":
        out["micro_batch_size"] = runtime.micro_batch_size
    if kind in SCORING_KINDS:
        out["eval_batch_size"] = runtime.eval_batch_size
    # Sampling pads each batch to its longest prompt, which changes the logits in the last bits
    # (measured: 3 of 300 samples differ between batch sizes 1 and 64 on prompts of 2-30
    # tokens): generation, refill rounds and test predictions.
    sampling = [spec.get(k) for k in ("generation", "prediction") if spec.get(k)]
    if kind in ("generate", "curate", "evaluate", "backtranslate") and sampling:
        out["generation_batch_size"] = runtime.generation_batch_size
    # vLLM samples generate stages and refill rounds; test predictions always use HF.
    if (kind in ("generate", "curate", "backtranslate")
            and (spec.get("generation") or {}).get("backend") == "vllm"):
        out.update({f"vllm.{k}": getattr(runtime.vllm, k) for k in VLLM_KEYS})
    return out


@cache
def packages(names: tuple[str, ...]) -> dict:
    """``{"package NAME": version}``: another PyTorch or transformers release computes in
    other kernels, so a ``pip install -U`` between runs changes bits too."""
    out = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[f"package {name}"] = metadata.version(name)
    return out


def mismatches(records: list[dict], runtime: RuntimeConfig) -> list[str]:
    """One line per runtime setting that finished stages were built with another value of
    (``records``: the completion records of the plan's finished stages)."""
    seen: dict[str, tuple[object, object, int]] = {}
    for record in records:
        before = record.get("conditions")
        if before is None:  # a record from before conditions were kept: nothing to compare
            continue
        now = conditions(record["kind"], record.get("spec", {}), runtime)
        for key in sorted(set(before) | set(now)):
            if key in before and key in now and before[key] != now[key]:
                old, new, count = seen.get(key, (before[key], now[key], 0))
                seen[key] = (old, new, count + 1)
    return [_line(key, old, new, count) for key, (old, new, count) in seen.items()]


def _line(key: str, old: object, new: object, count: int) -> str:
    if key.startswith("package "):
        name = key.removeprefix("package ")
        return (f"{name} {old} built {count} finished stage(s) of this run directory, this "
                f"process has {name} {new}; another release changes results, so install "
                f"{name}=={old} to go on here, or use a new run directory (--out)")
    return (f"runtime.{key}: {count} finished stage(s) of this run directory were built with "
            f"{_show(old)}, this run asks for {_show(new)}; the value changes results, so use "
            f"runtime.{key}={_show(old)} here, or a new run directory (--out) for {_show(new)}")


def _show(value: object) -> str:
    return "null" if value is None else str(value)
