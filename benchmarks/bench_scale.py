"""Benchmark: the executors and the generation backends, side by side in one run.

1. The demo study (or a smaller grammar study with ``--quick``) with ``runtime.executor``
   local, then processes, at the same ``runtime.threads``: wall time, ratio, and whether
   metrics.csv is byte-identical.
2. One trained checkpoint of that study, sampled with the ``hf`` and the ``vllm`` backend:
   new tokens per second, vLLM's process and engine start-up included, and without it
   (the time of vLLM's generate call alone).

Medians over ``--repeats``; ratios > 1 mean the alternative (processes, vllm) is faster.

    python benchmarks/bench_scale.py --quick --vllm-python .venv-vllm/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK = ["seeds=[0,1]", "generations=3", "data.train_size=200", "data.test_size=100"]
# Head size 64: the CPU build of vLLM refuses smaller heads.
MODEL = ["model.n_embd=128", "model.n_head=2"]


def run_study(out: Path, args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ouroboros", "run", "--no-report", "--out",
                    str(out), *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def sample_throughput(checkpoint: Path, backend: str, n: int, vllm_python: str | None) -> dict:
    """New tokens per second of ``n`` unconditional samples from ``checkpoint``."""
    from ouroboros import registry
    from ouroboros.config import GenerationConfig, RuntimeConfig
    from ouroboros.models.checkpoint import load_tokenizer
    tok = load_tokenizer(checkpoint)
    runtime = RuntimeConfig(vllm={"python": vllm_python, "dtype": "float32"})
    cfg = GenerationConfig(backend=backend, max_new_tokens=48)
    t0 = time.perf_counter()
    backend_obj = registry.BACKENDS.get(backend)()
    done = backend_obj.generate(
        checkpoint, [[tok.bos_token_id]] * n, cfg, seed=0, batch_size=256, runtime=runtime)
    seconds = time.perf_counter() - t0
    return {"tokens": sum(c.new_tokens for c in done), "seconds": seconds,
            "engine": getattr(backend_obj, "info", {}).get("engine_generate_seconds", seconds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller grammar study")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--vllm-python", default=None, help="the Python with vLLM (default: this)")
    args = ap.parse_args()
    study = (QUICK if args.quick else []) + MODEL + [
        "runtime.progress=false", f"runtime.threads={args.threads}"]
    times: dict[str, list[float]] = {"local": [], "processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for r in range(args.repeats):
            for executor in times:
                out = root / f"{executor}-{r}"
                times[executor].append(run_study(out, study + [f"runtime.executor={executor}"]))
        same = all((root / f"processes-{r}" / "metrics.csv").read_bytes()
                   == (root / "local-0" / "metrics.csv").read_bytes()
                   for r in range(args.repeats))
        local, procs = (statistics.median(times[k]) for k in ("local", "processes"))
        checkpoint = next((root / "local-0" / "stages" / "train").glob("s0-g0-*")) / "model"
        speeds: dict[str, list[float]] = {"hf": [], "vllm": [], "vllm_engine": []}
        for _ in range(args.repeats):
            for backend in ("hf", "vllm"):
                m = sample_throughput(checkpoint, backend, args.samples, args.vllm_python)
                speeds[backend].append(m["tokens"] / m["seconds"])
                if backend == "vllm":
                    speeds["vllm_engine"].append(m["tokens"] / m["engine"])
    hf, vllm, engine = (statistics.median(speeds[k]) for k in ("hf", "vllm", "vllm_engine"))
    print(f"{'':34}{'baseline':>14}{'alternative':>14}{'ratio':>8}")
    print(f"{'study wall s (local | processes)':34}{local:14.1f}{procs:14.1f}"
          f"{local / procs:7.2f}x   metrics.csv identical: {same}")
    print(f"{'sampling tok/s (hf | vllm)':34}{hf:14.0f}{vllm:14.0f}{vllm / hf:7.2f}x   "
          f"({args.samples} samples, vLLM start-up included)")
    print(f"{'sampling tok/s (hf | vllm generate)':34}{hf:14.0f}{engine:14.0f}"
          f"{engine / hf:7.2f}x   (vLLM's generate call alone)")
    print(json.dumps({"study_seconds": times, "sampling_tokens_per_second": speeds}))


if __name__ == "__main__":
    main()
