"""Several generators of one cell split a generation's requests by share: disjoint prompts,
every real source asked once when each is asked (issue: both generators answered the same 100
prompts, and 61.5% of the real sources got no synthetic answer)."""

from pathlib import Path

import pytest

from ouroboros.config import PolicyConfig, RuntimeConfig, load_config
from ouroboros.experiment.builders.generate import generation_requests
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.plan import request_part
from ouroboros.experiment.stages import Stage, write_jsonl


def _config(*extra: str):
    return load_config(overrides=["task.name=translation", "data.source=files",
                                  "data.files.train=x.tsv", "data.files.test=y.tsv",
                                  "model.tokenizer=bpe", "metrics.names=[perplexity]", *extra])


def _job(tmp_path: Path, spec: dict) -> Job:
    cfg = _config()
    data = Stage("data", "s0", {"task": cfg.task.model_dump(), "seed": 0})
    folder = tmp_path / data.relpath
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", [{"id": f"train-{i}", "source": f"source {i}",
                                          "target": f"target {i}"} for i in range(200)])
    stage = Stage("generate", "g", spec, {"data": data})
    return Job(stage, tmp_path, RuntimeConfig(), cfg.data)


def _policy(*shares: float) -> PolicyConfig:
    return PolicyConfig(name="replace", generators=[
        {"label": f"gen{j}", "share": s} for j, s in enumerate(shares)])


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.3, 0.7), (0.2, 0.5, 0.3)])
@pytest.mark.parametrize("num_samples", [None, 150])
def test_generators_split_the_requests_disjointly_and_cover_them(tmp_path, shares, num_samples):
    cfg = _config(f"generation.num_samples={num_samples or 'null'}")
    policy = _policy(*shares)
    asked = []
    for source in policy.generators:
        spec = {"generation": cfg.generation.model_dump(), "seed": 0, "g": 1,
                "share": source.share, "generator": source.label,
                "part": request_part(policy, source, 1)}
        asked.append(generation_requests(_job(tmp_path, spec), cfg.generation, 0, 1))
    total = num_samples or 200
    for source, requests in zip(policy.generators, asked, strict=True):
        assert abs(len(requests) - source.share * total) <= 1
    indices = [r["request"] for requests in asked for r in requests]
    assert sorted(indices) == list(range(total))  # disjoint, and every request answered once
    if num_samples is None:  # every real source prompted exactly once over the generators
        ids = [r["prompted_by"] for requests in asked for r in requests]
        assert sorted(ids) == sorted(f"train-{i}" for i in range(200))


def test_one_generator_answers_every_request_in_order(tmp_path):
    cfg = _config()
    assert request_part(_policy(1.0), _policy(1.0).generators[0], 1) is None
    spec = {"generation": cfg.generation.model_dump(), "seed": 0, "g": 1}
    requests = generation_requests(_job(tmp_path, spec), cfg.generation, 0, 1)
    assert [r["prompted_by"] for r in requests] == [f"train-{i}" for i in range(200)]


def test_generators_of_one_generation_only_split_that_generation():
    policy = PolicyConfig(name="replace", generators=[
        {"label": "own", "share": 0.5}, {"label": "broad", "share": 0.5, "generations": [0]},
        {"label": "later", "share": 0.5, "generations": [1]}])
    own, broad, later = policy.generators
    assert request_part(policy, own, 0) == [0.0, 0.5]
    assert request_part(policy, broad, 0) == [0.5, 1.0]
    assert request_part(policy, later, 1) == [0.5, 1.0]


def test_cut_points_are_shared_so_no_request_is_asked_twice(monkeypatch):
    """Shares whose running sums differ by an ulp when summed afresh (Python >= 3.12's
    compensated sum, imitated here with math.fsum on 3.11) must still meet exactly: generator
    k's end is generator k+1's start."""
    import math

    from ouroboros.experiment import plan
    monkeypatch.setattr(plan, "sum", math.fsum, raising=False)
    policy = _policy(0.05, 0.15, 0.35, 0.45)
    parts = [request_part(policy, s, 1) for s in policy.generators]
    assert parts[0][0] == 0.0 and parts[-1][1] == 1.0
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


def test_generators_need_distinct_labels_even_per_generation():
    import pytest

    from ouroboros.config import ConfigError
    with pytest.raises(ConfigError, match="distinct labels"):
        load_config(overrides=["policies=[{name: replace, generators: [{label: a, share: 0.5, "
                               "generations: [0, 1]}, {label: a, share: 0.5, "
                               "generations: [0, 1]}]}]", "generations=2"])
