"""Generators behind an OpenAI-compatible server (vLLM's ``serve``, a hosted API), through the
official ``openai`` client (``pip install 'ouroboros[openai]'``).

One request per sample, each with its own seed (derived from the stage seed and the sample's
index, as for the other backends; servers that honour ``seed``, such as vLLM, then answer the
same request the same way on the same hardware and version; hosted APIs promise at best
"mostly"). Requests run ``concurrency`` at a time; a 429, a 5xx, a timeout or a lost
connection is retried up to ``max_retries`` times with exponential backoff and jitter (or the
server's Retry-After); any other error stops the stage with the server's message.

Every answered request is stored in the run's request cache (``<run>/cache/openai/``), keyed by
the request itself (model, prompt or messages, decoding, seed: never the address or the key),
as soon as it is answered: a resumed or repeated run re-sends nothing it already paid for, and
a resumed stage is built from the very answers the crashed one received.

The API key is read from the environment variable the config names, in the process that sends
the requests; it is never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ouroboros.atomic import write_atomic
from ouroboros.config import GenerationConfig, ServerConfig

CACHE = Path("cache") / "openai"  # under the run directory
RETRYABLE = {408, 409, 429}  # and every 5xx
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # seconds: base * 2^attempt, at most cap


_SECRETS: set[str] = set()  # every API key read in this process, never to be shown


def redact(text: str) -> str:
    """``text`` with every API key this process read replaced: a server's error body may echo
    the key it was sent (a 400 or 403 quoting the request's headers)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[API key redacted]")
    return text


class ServerError(RuntimeError):
    """The server refused a request, or kept failing it after every retry (its message never
    holds the key)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass(frozen=True)
class Answer:
    """One sample from the server: its text, whether it ended by itself (not cut at
    max_new_tokens) and its token counts as the server reports them."""

    text: str
    finished: bool
    new_tokens: int
    prompt_tokens: int
    cached: bool = False


@dataclass
class Tally:
    """What a stage's requests cost: sent, answered from the cache, retried, tokens."""

    sent: int = 0
    cached: int = 0
    retries: int = 0
    errors: dict = field(default_factory=dict)  # status (or error kind) -> count, retried ones
    served_models: set = field(default_factory=set)
    fingerprints: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, **changes) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(self, name, getattr(self, name) + value)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.retries += 1


def api_key(server: ServerConfig, where: str = "server") -> str:
    """The key from the environment variable the config names ("EMPTY" where none is named,
    which local servers without --api-key accept)."""
    if server.api_key_env is None:
        return "EMPTY"
    key = os.environ.get(server.api_key_env)
    if not key:
        raise ServerError(f"{where}.api_key_env: the environment variable "
                          f"{server.api_key_env} is not set (it holds the API key)")
    if len(key) >= 4:  # shorter values would redact ordinary words
        _SECRETS.add(key)
    return key


def request_body(server: ServerConfig, source: str, gcfg: GenerationConfig, seed: int,
                 max_tokens: int) -> dict:
    """The JSON body of one request (what the cache is keyed by)."""
    text = server.template.replace("{source}", source)
    # 53 bits: distinct samples keep distinct seeds (a 31-bit seed made two of 100,000
    # samples one request), and every JSON parser, JavaScript's included, reads it exactly.
    body: dict = {"model": server.model, "max_tokens": max_tokens, "seed": seed % 2**53}
    if gcfg.decoding == "greedy":
        body["temperature"] = 0.0
    else:
        body.update(temperature=gcfg.temperature, top_p=gcfg.top_p)
        if gcfg.top_k:
            body["top_k"] = gcfg.top_k  # a vLLM extension; OpenAI's own API has no top_k
    if server.api == "chat":
        messages = [{"role": "system", "content": server.system}] if server.system else []
        body["messages"] = [*messages, {"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


def cache_key(server: ServerConfig, body: dict) -> str:
    """The hash of the request: the same request at another address or with another key is
    the same request."""
    canonical = json.dumps({"api": server.api, "body": body}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _client(server: ServerConfig, key: str):
    try:
        import openai
    except ImportError as e:
        raise ServerError("server generators need the openai client: pip install "
                          "'ouroboros[openai]'") from e
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0,
                         timeout=server.timeout)


def check(server: ServerConfig, where: str) -> list[str]:
    """What would make every request fail, found in one call before any work: the key's
    variable unset, the server unreachable, the key refused, the model not served."""
    try:
        client = _client(server, api_key(server, where))
    except ServerError as e:
        return [str(e)]
    import openai
    try:
        served = [m.id for m in client.with_options(timeout=min(server.timeout, 20.0))
                  .models.list()]
    except openai.AuthenticationError:
        return [f"{where}.api_key_env: {server.base_url} refused the key in "
                f"{server.api_key_env or '(none: set api_key_env)'} (401)"]
    except openai.NotFoundError:
        return []  # no model list at this address: the first request will tell
    except openai.APIStatusError as e:
        return [f"{where}.base_url: {server.base_url} answered {e.status_code} {_message(e)}"]
    except (openai.APIConnectionError, openai.APITimeoutError):
        return [f"{where}.base_url: cannot reach {server.base_url} (is the server running?)"]
    if server.model not in served:
        return [f"{where}.model: {server.base_url} serves {', '.join(served) or 'no model'}, "
                f"not {server.model!r}"]
    return []


def _retry_after(error) -> float | None:
    """The server's Retry-After in seconds, if it sent one."""
    response = getattr(error, "response", None)
    value = None if response is None else response.headers.get("retry-after")
    try:
        return None if value is None else min(float(value), 60.0)
    except ValueError:
        return None


def _send(client, server: ServerConfig, body: dict, tally: Tally) -> dict:
    """One request with retries; the answer as stored in the cache."""
    import openai
    fields = {k: v for k, v in body.items() if k != "top_k"}
    extra = {"top_k": body["top_k"]} if "top_k" in body else None
    create = (client.chat.completions.create if server.api == "chat"
              else client.completions.create)
    for attempt in range(server.max_retries + 1):
        try:
            tally.count(sent=1)
            response = create(**fields, extra_body=extra)
            break
        except openai.APIStatusError as e:
            kind = str(e.status_code)
            if e.status_code not in RETRYABLE and e.status_code < 500:
                raise ServerError(f"{server.base_url} refused the request for model "
                                  f"{server.model!r}: {e.status_code} {_message(e)}") from None
            wait_s = _retry_after(e)
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            kind, wait_s = ("timeout" if isinstance(e, openai.APITimeoutError)
                            else "connection"), None
        if attempt == server.max_retries:
            raise ServerError(f"{server.base_url} failed a request {attempt + 1} times (last: "
                              f"{kind}); the answers so far are cached, so resuming the run "
                              f"re-sends only the rest") from None
        tally.error(kind)
        delay = BACKOFF_BASE * 2 ** attempt * random.uniform(0.5, 1.0)
        time.sleep(min(BACKOFF_CAP, wait_s if wait_s is not None else delay))
    choice = response.choices[0]
    text = choice.message.content if server.api == "chat" else choice.text
    usage = response.usage
    with tally.lock:
        tally.served_models.add(response.model)
        if getattr(response, "system_fingerprint", None):
            tally.fingerprints.add(response.system_fingerprint)
    return {"text": text or "", "finish_reason": choice.finish_reason,
            "completion_tokens": usage.completion_tokens if usage else None,
            "prompt_tokens": usage.prompt_tokens if usage else None}


def _message(error) -> str:
    """The server's own error message, short."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        body = (body.get("message") or (inner.get("message") if isinstance(inner, dict)
                                        else inner) or body)
    return redact(str(body or error.message))[:300]


def _answer(stored: dict, cached: bool) -> Answer:
    return Answer(text=stored["text"].strip(), finished=stored["finish_reason"] == "stop",
                  new_tokens=stored["completion_tokens"] or 0,
                  prompt_tokens=stored["prompt_tokens"] or 0, cached=cached)


def complete(server: ServerConfig, sources: list[str], seeds: list[int],
             gcfg: GenerationConfig, run_dir: Path, where: str = "server") -> tuple[list[Answer],
                                                                                   dict]:
    """One answer per source (each with its seed), from the cache or the server; and what it
    cost."""
    key = api_key(server, where)
    cache = Path(run_dir) / CACHE
    bodies = [request_body(server, s, gcfg, seed, gcfg.max_new_tokens)
              for s, seed in zip(sources, seeds, strict=True)]
    answers: list[Answer | None] = [None] * len(bodies)
    todo: dict[str, tuple[list[int], dict, Path]] = {}  # cache key -> samples asking it
    for i, body in enumerate(bodies):
        path = cache / (k := cache_key(server, body))[:2] / f"{k}.json"
        if k in todo:  # the very same request twice: sent once, one answer for both
            todo[k][0].append(i)
        elif path.is_file():
            answers[i] = _answer(json.loads(path.read_text())["answer"], cached=True)
        else:
            todo[k] = ([i], body, path)
    tally = Tally(cached=len(bodies) - len(todo))  # from the cache, or a twin request
    start = time.perf_counter()
    if todo:
        client = _client(server, key)

        def one(indices: list[int], body: dict, path: Path) -> None:
            stored = _send(client, server, body, tally)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({"request": body, "answer": stored}, sort_keys=True))
            for n, i in enumerate(indices):
                answers[i] = _answer(stored, cached=n > 0)

        with ThreadPoolExecutor(max_workers=server.concurrency) as pool:
            futures = [pool.submit(one, *item) for item in todo.values()]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in finished if f.exception() is not None]
            if failed:  # stop sending; requests in flight finish and are cached
                for f in futures:
                    f.cancel()
                raise failed[0].exception()
    done = [a for a in answers if a is not None]
    fresh = [a for a in done if not a.cached]
    info = {"base_url": server.base_url, "server_model": server.model, "api": server.api,
            "requests": len(bodies), "cached": tally.cached, "sent": tally.sent,
            "retries": tally.retries, "retried_errors": dict(sorted(tally.errors.items())),
            "prompt_tokens": sum(a.prompt_tokens for a in done),
            "completion_tokens": sum(a.new_tokens for a in done),
            "paid_completion_tokens": sum(a.new_tokens for a in fresh),
            "served_as": sorted(tally.served_models),
            "system_fingerprints": sorted(tally.fingerprints),
            "request_seconds": time.perf_counter() - start}
    return done, info
