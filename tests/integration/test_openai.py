"""Server generators for real: a tiny checkpoint served by vLLM's OpenAI-compatible server
(``vllm.entrypoints.openai.api_server`` from .venv-vllm) on loopback, reached through a proxy
that fails requests the way real servers do (503, 429 with Retry-After, a hang past the
timeout) and, once, goes down for good mid-stage. The study retries what can be retried, stops
with a clear message otherwise, resumes without paying for any request twice, and never writes
the API key anywhere.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ouroboros.config import GenerationConfig, ServerConfig
from ouroboros.generation.server import check, complete

from ..conftest import TINY, VLLM_PYTHON, require_vllm

pytestmark = pytest.mark.integration

KEY = "sk-ouroboros-test-5c1d9e"  # must never reach a run directory, a log or the output
KEY_ENV = "OUROBOROS_TEST_SERVER_KEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A trained GPT-2-type checkpoint with head size 64 (the CPU build refuses 16)."""
    require_vllm()
    out = tmp_path_factory.mktemp("ckpt") / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ouroboros", "run", "--no-report", "--out", str(out), *TINY,
         "generations=1", "model.n_embd=128", "model.n_head=2", "training.epochs=3",
         "data.train_size=300", "metrics.names=[ground-truth]", "metrics.bootstrap=0",
         "policies=[{name: replace}]"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (model,) = out.glob("stages/train/*/model")
    return model


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """vLLM's OpenAI-compatible server of the checkpoint, as model 'tiny', on loopback."""
    folder = tmp_path_factory.mktemp("server")
    template = folder / "chat.jinja"  # the checkpoint has no chat template of its own
    template.write_text("[BOS]{% for m in messages %}{{ m['content'] }} {% endfor %}")
    port = _free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model",
         str(checkpoint), "--served-model-name", "tiny", "--host", "127.0.0.1", "--port",
         str(port), "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.2",
         "--chat-template", str(template)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "VLLM_API_KEY": KEY, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("vLLM's server did not start:\n"
                            + (folder / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


class Proxy:
    """A loopback proxy in front of the server. The first attempt of some requests fails
    (chosen by a hash of the request: 503, 429 with Retry-After, or a hang past the client's
    timeout); ``down_after`` makes every request after that many answered ones fail with 503.
    Counts what reaches the server."""

    def __init__(self, upstream: str, hang: float) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.hang = hang
        self.down_after: int | None = None
        self.seen: set[str] = set()
        self.answered = 0  # completions the server made (each one paid for)
        self.posts = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.reply(None)

            def do_POST(self):
                self.reply(self.rfile.read(int(self.headers["Content-Length"])))

            def reply(self, body: bytes | None) -> None:
                try:
                    proxy.forward(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): so would a real server's peer

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def fault(self, body: bytes) -> str | None:
        digest = hashlib.sha256(body).hexdigest()
        with self.lock:
            self.posts += 1
            if self.down_after is not None and self.answered >= self.down_after:
                return "503"
            first = digest not in self.seen
            self.seen.add(digest)
        if not first:
            return None
        h = int(digest, 16)
        if h % 29 == 3:  # a few only: each costs the client its whole timeout
            return "hang"
        return {0: "503", 1: "429"}.get(h % 7)

    def forward(self, handler, body: bytes | None) -> None:
        fault = None if body is None else self.fault(body)
        if fault == "hang":
            time.sleep(self.hang)
            fault = "503"
        if fault:
            handler.send_response(int(fault))
            if fault == "429":
                handler.send_header("Retry-After", "0")
            payload = b'{"error": {"message": "injected by the test proxy"}}'
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        conn.request(handler.command, handler.path, body, headers)
        response = conn.getresponse()
        payload = response.read()
        if body is not None and response.status == 200:
            with self.lock:
                self.answered += 1
        handler.send_response(response.status)
        handler.send_header("Content-Type", response.getheader("Content-Type", "text/plain"))
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        conn.close()

    def close(self) -> None:
        self.http.shutdown()


def _study(path: Path, url: str) -> Path:
    """Two cells: the tiny model mixed half and half with the served LLM, and a loop seeded
    by the served LLM (generation 0's data come from it alone)."""
    server = {"base_url": url, "model": "tiny", "api_key_env": KEY_ENV, "template": "[BOS]",
              "concurrency": 4, "max_retries": 3, "timeout": 5.0}
    study = {
        "generations": 2, "seeds": [0],
        "data": {"train_size": 120, "valid_size": 30, "test_size": 60},
        "model": {"n_embd": 16, "n_head": 2, "n_layer": 1}, "training": {"epochs": 1},
        "generation": {"max_new_tokens": 24},
        "metrics": {"names": ["ground-truth"], "bootstrap": 0},
        "runtime": {"progress": False, "threads": 1},
        "policies": [
            {"name": "replace", "label": "mixed", "generators": [
                {"label": "own", "share": 0.5},
                {"label": "llm", "share": 0.5, "server": server}]},
            {"name": "replace", "label": "seeded", "generators": [
                {"label": "own", "share": 1.0, "generations": [1]},
                {"label": "llm", "share": 1.0, "generations": [0], "server": server}]}]}
    path.write_text(json.dumps(study))  # JSON is YAML
    return path


def _ouroboros(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    return subprocess.run([sys.executable, "-m", "ouroboros", *args], capture_output=True,
                          text=True, timeout=600, env={**env, "OMP_NUM_THREADS": "1"})


def _records(run: Path, pattern: str) -> list[dict]:
    return [json.loads((d / "_complete.json").read_text())
            for d in sorted(run.glob(f"stages/generate/{pattern}"))]


def test_server_generators_retry_stop_resume_and_never_pay_twice(server, tmp_path):
    proxy = Proxy(server, hang=8.0)  # a hang longer than the 5 s timeout
    try:
        config, run = _study(tmp_path / "study.yaml", proxy.url), tmp_path / "run"
        # Before any work: the key's variable unset, and a wrong key.
        for key, expected in ((None, f"{KEY_ENV} is not set"), ("sk-wrong", "refused the key")):
            done = _ouroboros("run", "--no-report", "--out", str(run), str(config), key=key)
            assert done.returncode != 0 and expected in done.stderr
            assert "policies.0.generators.1.server.api_key_env" in done.stderr
            assert not (run / "stages").exists()
        # The server goes down for good after 40 answers: the stage stops with a clear
        # message; what was answered is cached.
        proxy.down_after = 40
        crashed = _ouroboros("run", "--no-report", "--out", str(run), str(config))
        assert crashed.returncode != 0
        assert "failed a request 4 times (last: 503)" in crashed.stderr, crashed.stderr[-2000:]
        assert "Traceback" not in crashed.stderr
        cached = list(run.glob("cache/openai/*/*.json"))
        assert len(cached) >= 40
        # Back up: resume re-sends only what was not answered.
        proxy.down_after = None
        done = _ouroboros("resume", str(run))
        assert done.returncode == 0, done.stderr[-3000:]
        cache = list(run.glob("cache/openai/*/*.json"))
        assert proxy.answered == len(cache)  # every request paid for exactly once
        llm = _records(run, "*-llm-*")
        # Generation 0's llm samples of both cells (shares 0.5 and 1) and generation 1's.
        assert sorted(r["info"]["requests"] for r in llm) == [60, 60, 120]  # folder order
        # Generation 0's 120 requests (the half share's 60 are the same requests) and
        # generation 1's 60.
        assert len(cache) == 120 + 60
        info = [r["info"] for r in llm]
        assert sum(i["cached"] for i in info) >= 40 + 60
        assert {"429", "503", "timeout"} <= {k for i in info for k in i["retried_errors"]}
        assert all(i["completion_tokens"] > 0 and i["served_as"] == ["tiny"] for i in info)
        assert all(i["base_url"] == proxy.url and "api_key" not in json.dumps(i) for i in info)
        # The seeded cell's generation 1 trains on the served model's samples alone.
        (trainset,) = run.glob("stages/trainset/seeded-s0-g1-*/trainset.jsonl")
        rows = [json.loads(line) for line in trainset.read_text().splitlines()]
        assert len(rows) == 120 and {r["generator"] for r in rows} == {"llm"}
        assert {r["model"] for r in rows} == {"server:tiny"}
        # The key is in no file of the run and in no output.
        for f in run.rglob("*"):
            if f.is_file():
                assert KEY.encode() not in f.read_bytes(), f
        for out in (crashed, done):
            assert KEY not in out.stdout + out.stderr
        # With every sample made, the server is not needed (nor asked) again.
        posts = proxy.posts
        proxy.close()
        again = _ouroboros("run", "--no-report", "--out", str(run), str(config))
        assert again.returncode == 0, again.stderr[-2000:]
        assert proxy.posts == posts
    finally:
        proxy.close()


def test_chat_api_and_what_preflight_says(server, tmp_path, monkeypatch):
    url = f"{server}/v1"
    chat = ServerConfig(base_url=url, model="tiny", api="chat", api_key_env=KEY_ENV,
                        system="continue the text")
    monkeypatch.setenv(KEY_ENV, KEY)
    answers, info = complete(chat, ["the", "a"], [1, 2], GenerationConfig(max_new_tokens=12),
                             tmp_path)
    assert info["api"] == "chat" and info["sent"] == 2 and info["completion_tokens"] > 0
    assert all(a.new_tokens > 0 for a in answers)
    assert len(list(tmp_path.glob("cache/openai/*/*.json"))) == 2
    assert check(chat, "x") == []
    assert check(chat.model_copy(update={"model": "huge"}), "x") == [
        f"x.model: {url} serves tiny, not 'huge'"]
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    assert check(chat.model_copy(update={"base_url": dead}), "x") == [
        f"x.base_url: cannot reach {dead} (is the server running?)"]
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    assert check(chat, "x") == [f"x.api_key_env: {url} refused the key in {KEY_ENV} (401)"]


def test_llm2llm_teacher_behind_the_server_writes_garbage_that_is_counted_and_refused(
        server, tmp_path):
    """configs/llm2llm-server.yaml on GSM8K-format files, its teacher the tiny served model:
    the student is scored, the teacher is asked for every seed problem the student gets
    wrong, its replies (garbage: the tiny model cannot follow the prompt) are parsed, counted
    and refused, and the next training sets hold nothing the teacher wrote that states no
    answer; the key is written nowhere."""
    import yaml
    for split, n in (("train", 40), ("test", 20)):
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for i in range(n):
                a, b = i % 7 + 2, i % 5 + 3
                f.write(json.dumps({"question": f"Ann has {a} bags of {b} apples.",
                                    "answer": f"{a} * {b} = {a * b}\n#### {a * b}"}) + "\n")
    study = yaml.safe_load((Path(__file__).parents[2] / "configs" / "llm2llm-server.yaml")
                           .read_text())
    study.update(generations=2, seeds=[0], runtime={"progress": False, "threads": 1})
    study["data"] = {"source": "files", "files": {
        "root": str(tmp_path), "train": "train.jsonl", "test": "test.jsonl",
        "fields": {"source": "question", "target": "answer"}},
        "train_size": None, "valid_size": 10, "test_size": None}
    study["model"].update(n_layer=1, n_embd=32, context_length=64, vocab_size=300)
    study["training"] = {"epochs": 1}
    study["generation"] = {"max_new_tokens": 12}
    for p in study["policies"][1:]:
        p["teacher"].update(max_new_tokens=8, template="Question: {source}\nAnswer: {target}"
                                                       "\nQuestion:")
        p["teacher"]["server"] = {**p["teacher"]["server"], "base_url": f"{server}/v1",
                                  "model": "tiny", "api_key_env": KEY_ENV}
    config = tmp_path / "study.yaml"
    config.write_text(json.dumps(study))
    run = tmp_path / "run"
    done = _ouroboros("run", "--out", str(run), str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(run / "teacher.csv") as f:
        rows = list(__import__("csv").DictReader(f))
    targeted = [r for r in rows if r["policy"] == "llm2llm"]
    assert len(targeted) == 2 and all(int(r["wrong"]) > 0 for r in targeted)
    for r in targeted:
        refused = sum(int(r[k]) for k in ("unparsed", "unfinished", "no_answer",
                                          "held_out_problem", "duplicate"))
        assert int(r["replies"]) == int(r["wrong"]) == int(r["requests"])
        assert refused + int(r["accepted"]) == int(r["replies"])
        assert int(r["unparsed"]) + int(r["no_answer"]) > 0  # garbage, counted
        assert int(r["completion_tokens"]) > 0
    control = [r for r in rows if r["policy"] == "llm2llm-random"]
    for t, c in zip(targeted, control, strict=True):  # as many accepted, as many asked
        assert int(c["quota"]) == int(c["accepted"]) + int(c["short"]) == int(t["accepted"])
        assert int(c["replies"]) >= int(t["replies"])
    records = [json.loads(p.read_text())["info"] for p in
               run.glob("stages/augment/llm2llm-s0-*/_complete.json")]
    assert {tuple(r["cost"]["served_as"]) for r in records} == {("tiny",)}
    from ouroboros.config import TaskConfig
    from ouroboros.tasks.conditional import GSM8K
    task = GSM8K(TaskConfig(name="gsm8k"))
    trainsets = list(run.glob("stages/trainset/llm2llm*-g1-*/trainset.jsonl"))
    assert len(trainsets) == 2
    accepted = sum(int(r["accepted"]) for r in rows if r["generation"] == "0")
    for trainset in trainsets:
        synthetic = [json.loads(line) for line in trainset.read_text().splitlines()
                     if json.loads(line)["origin"] == "synthetic"]
        assert all(task.answer(r["target"]) is not None for r in synthetic)
    assert sum(len([1 for line in t.read_text().splitlines() if '"synthetic"' in line])
               for t in trainsets) == accepted  # only what was accepted is trained on
    assert list(run.glob("cache/openai/*/*.json"))
    for f in run.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in done.stdout + done.stderr
