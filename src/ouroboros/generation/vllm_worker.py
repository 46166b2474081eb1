"""One vLLM generation job, run as its own process (``python vllm_worker.py``) by the vllm
backend: the engine's CPU or GPU memory is returned when the process ends, which releasing it
in-process does not reliably do (vLLM issues 1908, 6544, 18806).

Standalone on purpose: it imports only vLLM and the standard library, so it runs in whatever
environment vLLM is installed in (``runtime.vllm.python``), with vLLM's own pins of torch and
transformers. Reads one JSON request on stdin, writes one JSON result line to the original
stdout; everything vLLM prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _sampling(req: dict, params_cls) -> tuple[list[dict], list]:
    """(prompts, one SamplingParams per prompt): a distinct seed per sample, or one request
    with n candidates (vLLM seeds candidate i with seed + i) when a request's candidates are
    consecutive copies of one prompt."""
    prompts, seeds, n = req["prompts"], req["seeds"], req["candidates"]
    common = {"max_tokens": req["max_new_tokens"], "stop_token_ids": [req["eos"]],
              "allowed_token_ids": req["allowed"], "skip_special_tokens": False,
              "detokenize": False}
    if req["decoding"] == "greedy":
        return ([{"prompt_token_ids": p} for p in prompts],
                [params_cls(temperature=0.0, **common)] * len(prompts))
    sample = {"temperature": req["temperature"], "top_k": req["top_k"] or 0,
              "top_p": req["top_p"], **common}
    if n > 1 and len(prompts) % n == 0 and all(
            prompts[i] == prompts[i - i % n] for i in range(len(prompts))):
        groups = range(0, len(prompts), n)
        return ([{"prompt_token_ids": prompts[i]} for i in groups],
                [params_cls(n=n, seed=seeds[i], **sample) for i in groups])
    return ([{"prompt_token_ids": p} for p in prompts],
            [params_cls(seed=s, **sample) for s in seeds])


def main() -> None:
    out = os.fdopen(os.dup(1), "w")  # the result channel; vLLM's prints go to stderr
    os.dup2(2, 1)
    req = json.loads(sys.stdin.read())
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # this process is the engine
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import BeamSearchParams

    engine = {k: v for k, v in req["engine"].items() if v is not None}
    llm = LLM(model=req["checkpoint"], tokenizer=req["checkpoint"], seed=req["engine_seed"],
              enforce_eager=True, **engine)
    start = time.perf_counter()
    if req["decoding"] == "beam":
        results = llm.beam_search(
            [{"prompt_token_ids": p} for p in req["prompts"]],
            BeamSearchParams(beam_width=req["num_beams"], max_tokens=req["max_new_tokens"]))
        tokens = [r.sequences[0].tokens[len(p):]
                  for r, p in zip(results, req["prompts"], strict=True)]
    else:
        prompts, params = _sampling(req, SamplingParams)
        results = llm.generate(prompts, params, use_tqdm=False)
        tokens = [list(c.token_ids) for r in results for c in r.outputs]
    seconds = time.perf_counter() - start  # generation alone, without the engine's start
    out.write(json.dumps({"tokens": tokens, "vllm": vllm.__version__, "seconds": seconds}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
