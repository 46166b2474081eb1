"""Server generators (an LLM behind an OpenAI-compatible server) in configs and plans: what is
refused before any work, what enters fingerprints and the request cache, and how a broad model
seeds the loop. The real server is in tests/integration/test_openai.py."""

import pytest

from ouroboros.config import ConfigError, GenerationConfig, ServerConfig, load_config
from ouroboros.experiment.plan import plan_study
from ouroboros.generation import server as server_module
from ouroboros.generation.sampling import row_seeds
from ouroboros.generation.server import (
    ServerError,
    api_key,
    cache_key,
    complete,
    request_body,
)

SERVER = "{base_url: 'http://127.0.0.1:9/v1', model: big, template: '[BOS]'}"
BASE = ["generations=2", "seeds=[0]"]


def _config(policy: str, *extra: str):
    return load_config(overrides=[*BASE, f"policies=[{policy}]", *extra])


def _problems(policy: str, *extra: str) -> str:
    with pytest.raises(ConfigError) as e:
        _config(policy, *extra)
    return "\n".join(e.value.problems)


MIXED = f"{{name: replace, generators: [{{label: own, share: 0.5}}, " \
        f"{{label: llm, share: 0.5, server: {SERVER}}}]}}"
SEEDED = f"{{name: replace, generators: [{{label: own, share: 1.0, generations: [1]}}, " \
         f"{{label: llm, share: 1.0, generations: [0], server: {SERVER}}}]}}"


@pytest.mark.parametrize(("policy", "extra", "expected"), [
    (f"{{name: replace, generators: [{{label: llm, share: 1.0, server: {SERVER}}}]}}", [],
     "policies.0.generators.0: the first generator is the evaluated model, so it must be "
     "trained"),
    (f"{{name: replace, generators: [{{label: own, share: 1.0, generations: [1]}}, "
     f"{{label: llm, share: 0.5, generations: [0], server: {SERVER}}}]}}", [],
     "policies.0.generators: in generation 0 the shares of the generators that make data "
     "sum to 0.5, not 1"),
    (f"{{name: replace, generators: [{{label: own, share: 1.0, generations: [1]}}, "
     f"{{label: llm, share: 1.0, generations: [0, 2], server: {SERVER}}}]}}", [],
     "policies.0.generators.1.generations: [2] not among the study's generations 0..1"),
    (MIXED, ["generation.decoding=beam"], "decoding beam is not an option"),
    (MIXED, ["curation=[{name: length, min_words: 2}]", "policies.0.refill=2"],
     "policies.0.refill: re-asking a server generator is not supported"),
    (MIXED.replace("template: '[BOS]'", "template: '{source}'"), [],
     "policies.0.generators.1.server.template: unconditional samples"),
    (MIXED.replace("template: '[BOS]'", "template: 'Say something'"),
     ["generation.prompt=real-prefix"],
     "policies.0.generators.1.server.template: needs {source}"),
    (MIXED.replace("model: big", "model: big, api_key: sk-secret"), [],
     "policies.0.generators.1.server.api_key: unknown key"),
    (MIXED.replace("label: llm,", "label: llm, n_layer: 2,"), [],
     "a server generator is not trained: n_layer do not apply"),
    (MIXED.replace("template: '[BOS]'", "system: be brief"), [],
     "system is a chat message: it needs api chat"),
])
def test_what_is_refused(policy, extra, expected):
    assert expected in _problems(policy, *extra)


def test_a_key_given_as_the_variable_name_is_refused_without_being_echoed():
    text = _problems(MIXED.replace("model: big", "model: big, api_key_env: sk-abc123-secret"))
    assert "policies.0.generators.1.server.api_key_env" in text
    assert "sk-abc123" not in text


def test_server_stages_read_only_the_real_prompts_and_seed_the_loop():
    plan = plan_study(_config(SEEDED))
    generate = {s.label: s for s in plan.stages if s.kind == "generate"}
    assert sorted(generate) == ["replace-s0-g1-own", "s0-g0-llm"]
    llm = generate["s0-g0-llm"]
    assert set(llm.deps) == {"data"} and llm.spec["server"]["model"] == "big"
    assert "base_url" not in llm.spec["server"] and llm.access["server"]["base_url"]
    assert not [s for s in plan.stages if s.kind == "train" and "llm" in s.label]
    # Generation 1 trains on generation 0's samples: the served model's alone.
    (trainset,) = [s for s in plan.stages if s.kind == "trainset" and s.spec["generation"] == 1]
    assert [s.label for s in trainset.deps["samples"]] == ["s0-g0-llm"]


def test_where_and_how_hard_a_server_is_asked_is_not_in_a_fingerprint():
    def fingerprints(*changes: str) -> set[str]:
        policy = MIXED
        for old, new in changes:
            policy = policy.replace(old, new)
        return {s.fp for s in plan_study(_config(policy)).stages}

    same = fingerprints()
    assert fingerprints(("127.0.0.1:9", "10.0.0.5:8000"),
                        ("model: big", "model: big, concurrency: 64, api_key_env: KEY, "
                                       "timeout: 5.0, max_retries: 0")) == same
    assert fingerprints(("model: big", "model: bigger")) != same
    assert fingerprints(("'[BOS]'", "'<s>'")) != same


def test_the_request_cache_key_is_the_request_not_the_address():
    server = ServerConfig(base_url="http://a:1/v1", model="m", template="Translate: {source}")
    gcfg = GenerationConfig(top_k=5)
    body = request_body(server, "hello", gcfg, seed=2**60 + 7, max_tokens=9)
    assert body == {"model": "m", "max_tokens": 9, "seed": 7, "temperature": 1.0,
                    "top_p": 1.0, "top_k": 5, "prompt": "Translate: hello"}
    moved = server.model_copy(update={"base_url": "http://b:2/v1", "concurrency": 1})
    assert cache_key(moved, body) == cache_key(server, body)
    other = request_body(server, "hello", gcfg, seed=8, max_tokens=9)
    assert cache_key(server, other) != cache_key(server, body)
    chat = server.model_copy(update={"api": "chat", "system": "be brief"})
    assert request_body(chat, "hi", GenerationConfig(decoding="greedy"), 1, 3)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Translate: hi"}]


def test_the_key_comes_from_the_named_variable(monkeypatch):
    server = ServerConfig(base_url="http://a:1/v1", model="m", api_key_env="MY_KEY")
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ServerError, match="MY_KEY is not set"):
        api_key(server, "x")
    monkeypatch.setenv("MY_KEY", "sk-1")
    assert api_key(server) == "sk-1"
    assert api_key(server.model_copy(update={"api_key_env": None})) == "EMPTY"


def test_a_credential_in_the_address_is_refused_without_being_echoed():
    for url in ("https://user:sk-zz9secret@api.example.com/v1",
                "https://api.example.com/v1?key=sk-zz9secret"):
        text = _problems(MIXED.replace("http://127.0.0.1:9/v1", url))
        assert "policies.0.generators.1.server.base_url: holds credentials" in text
        assert "zz9secret" not in text


def test_distinct_samples_send_distinct_seeds():
    # 200,000 samples of one prompt (an unconditional stage): with 31-bit seeds about 5 pairs
    # of them would be the same request, and so the same sample.
    server = ServerConfig(base_url="http://a:1/v1", model="m", template="[BOS]")
    seeds = row_seeds(12345, 0, 200_000)
    sent = {request_body(server, "", GenerationConfig(), s, 9)["seed"] for s in seeds}
    assert len(sent) == len(seeds) and max(sent) < 2**53


def test_the_same_request_twice_in_a_stage_is_sent_once(tmp_path, monkeypatch):
    pytest.importorskip("openai")
    from types import SimpleNamespace
    calls = []

    def create(**fields):
        calls.append(fields["prompt"])
        choice = SimpleNamespace(text=f"answer to {fields['prompt']}", finish_reason="stop")
        return SimpleNamespace(choices=[choice], model="m", system_fingerprint=None,
                               usage=SimpleNamespace(completion_tokens=3, prompt_tokens=1))

    fake = SimpleNamespace(completions=SimpleNamespace(create=create))
    monkeypatch.setattr(server_module, "_client", lambda server, key: fake)
    server = ServerConfig(base_url="http://a:1/v1", model="m", concurrency=4)
    answers, info = complete(server, ["a", "b", "a", "c"], [1, 2, 1, 3], GenerationConfig(),
                             tmp_path)
    assert sorted(calls) == ["a", "b", "c"] and info["sent"] == 3 and info["cached"] == 1
    assert [a.text for a in answers] == ["answer to a", "answer to b", "answer to a",
                                         "answer to c"]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 3
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    again, info = complete(server, ["a", "b"], [1, 2], GenerationConfig(), tmp_path)
    assert len(calls) == 3 and info["cached"] == 2  # a repeated run pays nothing


def test_a_server_that_echoes_the_key_never_gets_it_printed(tmp_path, monkeypatch):
    """A loopback server answers 403 to the model list and 400 to a request, each body quoting
    the Authorization header it was sent: neither error line holds the key."""
    pytest.importorskip("openai")
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def _echo(self, status):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            body = json.dumps({"error": {"message": f"bad: {self.headers['authorization']}"}})
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self):  # noqa: N802 - the handler's API
            self._echo(403)

        def do_POST(self):  # noqa: N802
            self._echo(400)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    secret = "sk-test-" + "q" * 24
    monkeypatch.setenv("ECHO_KEY", secret)
    server = ServerConfig(base_url=f"http://127.0.0.1:{httpd.server_port}/v1", model="m",
                          api_key_env="ECHO_KEY", max_retries=0)
    try:
        problems = server_module.check(server, "policies.0.generators.1.server")
        assert problems and "403" in problems[0] and secret not in " ".join(problems)
        assert "[API key redacted]" in problems[0]
        with pytest.raises(ServerError) as e:
            server_module.complete(server, ["a source"], [1], GenerationConfig(), tmp_path)
        assert secret not in str(e.value) and "400" in str(e.value)
    finally:
        httpd.shutdown()
