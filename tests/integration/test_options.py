"""The loop's options end to end: init=previous, selection on synthetic data, fresh data."""

import json

import pytest

from ouroboros.experiment.loop import run_study
from ouroboros.experiment.stages import read_jsonl

pytestmark = pytest.mark.integration


def test_previous_init_best_selection_and_every_policy(tiny_config, tmp_path):
    cfg = tiny_config(
        "training.init=previous", "training.selection=best",
        "training.selection_split=synthetic", "generations=3",
        "policies=[{name: fresh, real_fraction: 0.5}, {name: accumulate-subsample}]")
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    g2 = next(s for s in plan.stages if s.kind == "train" and s.label == "fresh-0.5-s0-g2")
    assert g2.deps["init"].label == "fresh-0.5-s0-g1"
    info = json.loads((tmp_path / g2.relpath / "train.json").read_text())
    assert info["selected_epoch"] == 1 and info["valid_examples"] == 12  # 10% of 120
    rows = read_jsonl(tmp_path / plan_trainset(plan, "fresh-0.5-s0-g2") / "trainset.jsonl")
    assert sum(r["origin"] == "real-fresh" for r in rows) == 60
    assert sum(r["origin"] == "synthetic" and r["generation"] == 1 for r in rows) == 60
    sub = read_jsonl(tmp_path / plan_trainset(plan, "accumulate-subsample-s0-g2")
                     / "trainset.jsonl")
    assert len(sub) == 120
    assert {r.get("generation") for r in sub if r["origin"] == "synthetic"} == {0, 1}
    metrics = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(metrics) - 1 == 2 * 3 * len({m.split(",")[4] for m in metrics[1:]})


def plan_trainset(plan, label):
    return next(s.relpath for s in plan.stages if s.kind == "trainset" and s.label == label)


def test_reference_perplexity_and_tails(tiny_config, tmp_path):
    from ouroboros.report.html import render_report
    cfg = tiny_config("metrics.names=[perplexity, tails, reference-perplexity]")
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    g1 = next(s for s in plan.stages if s.kind == "evaluate" and s.label == "replace-s0-g1")
    assert g1.deps["reference"].label == "s0-g0"  # the frozen generation-0 model
    rows = (tmp_path / "sample_perplexity.csv").read_text().splitlines()
    assert rows[0] == "cell,policy,seed,generation,value"
    assert len(rows) - 1 == 2 * 2 * 120  # cells x generations x samples
    metrics = (tmp_path / "metrics.csv").read_text()
    assert "rare_recall_2g_17+" in metrics and "missing_mass" in metrics
    html = render_report(tmp_path).read_text()
    assert "The tail of the samples" in html and '"tail' in html  # the CCDF figures


def test_curation_lineage_ordered_training_and_composition(tiny_config, tmp_path):
    cfg = tiny_config(
        "policies=[{name: replace, label: human-first, order: given, "
        "curation: [{name: dedup, threshold: 0.9}, {name: detector, mode: order}]}, "
        "{name: mix, real_fraction: 0.5}]")
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    curate = next(s for s in plan.stages if s.kind == "curate" and s.label == "s0-g0"
                  or s.kind == "curate" and s.label.startswith("human-first-s0-g0"))
    lineage = read_jsonl(tmp_path / curate.relpath / "lineage.jsonl")
    assert all([d["step"] for d in r["decisions"]][0] == "dedup" for r in lineage)
    curated = read_jsonl(tmp_path / curate.relpath / "curated.jsonl")
    human = [r["scores"]["human_likeness"] for r in curated]
    assert human == sorted(human, reverse=True)
    train = next(s for s in plan.stages if s.kind == "train" and s.label == "human-first-s0-g1")
    info = json.loads((tmp_path / train.relpath / "train.json").read_text())
    assert info["order"] == "given"
    assert info["first_examples"] == [r["id"] for r in curated[:5]]
    mix_train = next(s for s in plan.stages if s.kind == "train" and s.label == "mix-0.5-s0-g1")
    assert json.loads((tmp_path / mix_train.relpath / "train.json").read_text())["order"] == \
        "shuffle"
    assert not [s for s in plan.stages if s.kind == "curate" and s.label.startswith("mix")]
    composition = (tmp_path / "composition.csv").read_text().splitlines()
    assert "mix-0.5-s0,mix-0.5,0,1,real,60" in composition
    assert "mix-0.5-s0,mix-0.5,0,1,synthetic-g0,60" in composition
    from ouroboros.report.tables import read_slices
    sliced = [r for r in read_slices(tmp_path) if r["policy"] == "human-first"
              and r["set"] == "candidates" and r["generation"] == 0 and r["metric"] == "count"]
    counts = {r["group"]: r["value"] for r in sliced}
    assert counts["all"] == 120 and counts["kept"] == len(curated)
    assert counts["kept"] + counts.get("dropped:dedup", 0) == 120


def test_best_of_n_and_quality_through_the_loop(tiny_config, tmp_path):
    cfg = tiny_config(
        "generation.candidates=3",
        "policies=[{name: replace, curation: [{name: quality, mode: order}, "
        "{name: best-of-n, scorer: quality}]}]")
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    gen = next(s for s in plan.stages if s.kind == "generate" and s.label == "s0-g0")
    samples = read_jsonl(tmp_path / gen.relpath / "samples.jsonl")
    assert len(samples) == 360 and {s["request"] for s in samples} == set(range(120))
    curate = next(s for s in plan.stages if s.kind == "curate")
    assert curate.deps["reference"].label == "s0-g0"
    curated = read_jsonl(tmp_path / curate.relpath / "curated.jsonl")
    assert len(curated) == 120 and len({r["request"] for r in curated}) == 120
    by_request = {}
    for s in read_jsonl(tmp_path / curate.relpath / "lineage.jsonl"):
        by_request.setdefault(s["request"], []).append(s["scores"]["quality"])
    assert all(r["scores"]["quality"] == max(by_request[r["request"]]) for r in curated)


def test_several_generators_mixed_by_share(tiny_config, tmp_path):
    cfg = tiny_config(
        "policies=[{name: replace, label: pair, generators: [{label: main, share: 0.75}, "
        "{label: narrow, share: 0.25, n_embd: 8, n_head: 2, seed: 3}]}]")
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    mixture = next(s for s in plan.stages if s.kind == "mixture" and s.label == "pair-s0-g0")
    rows = read_jsonl(tmp_path / mixture.relpath / "samples.jsonl")
    assert sum(r["generator"] == "main" for r in rows) == 90
    assert sum(r["generator"] == "narrow" for r in rows) == 30
    assert all(r["id"].startswith(r["generator"] + ":") for r in rows)
    narrow = next(s for s in plan.stages if s.kind == "train" and s.label == "s0-g0-narrow")
    config = json.loads((tmp_path / narrow.relpath / "model" / "config.json").read_text())
    assert config["n_embd"] == 8
    evaluation = plan.cells[0].evaluations[1]
    assert evaluation.deps["model"].label == "pair-s0-g1-main"  # the first generator
    composition = (tmp_path / "composition.csv").read_text().splitlines()
    assert "pair-s0,pair,0,1,synthetic-g0-narrow,30" in composition
    sliced = (tmp_path / "slices.csv").read_text().splitlines()
    assert "pair-s0,pair,0,1,trainset,synthetic-g0-narrow,count,30.0,30" in sliced
    assert "pair-s0,pair,0,1,samples,narrow,count,30.0,30" in sliced
    assert any(r.startswith("pair-s0,pair,0,1,samples,main,error_rate,") for r in sliced)
    # the whole generated set, sliced or not, has the error rate the evaluation measured
    whole = next(r for r in sliced if r.startswith("pair-s0,pair,0,1,samples,all,error_rate,"))
    metrics = (tmp_path / "metrics.csv").read_text().splitlines()
    measured = next(r for r in metrics if r.startswith("pair-s0,pair,0,1,error_rate,"))
    assert float(whole.split(",")[7]) == float(measured.split(",")[5])


def test_refill_generates_until_accepted(tiny_config, tmp_path):
    steps = "[{name: dedup}, {name: verifier, false_accept: 0.3}]"
    cfg = tiny_config(f"policies=[{{name: replace, label: pruned, curation: {steps}}}, "
                      f"{{name: replace, label: refilled, refill: 4, curation: {steps}}}]")
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    pruned, refilled = (next(s for s in plan.stages if s.kind == "curate"
                             and s.label == f"{p}-s0-g0") for p in ("pruned", "refilled"))
    info = json.loads((tmp_path / refilled.relpath / "_complete.json").read_text())["info"]
    rounds = info["rounds"]
    assert len(rounds) == 5 and rounds[0]["candidates"] == 120
    # every round re-asks exactly the requests that still have no kept sample
    for a, b in zip(rounds, rounds[1:], strict=False):
        assert b["candidates"] == a["candidates"] - a["kept"]
    kept = read_jsonl(tmp_path / refilled.relpath / "curated.jsonl")
    first = read_jsonl(tmp_path / pruned.relpath / "curated.jsonl")
    assert len(kept) == sum(r["kept"] for r in rounds) > len(first)
    assert len({r["request"] for r in kept}) == len(kept)  # one accepted sample per request
    assert info["unfilled_requests"] == 120 - len(kept)
    lineage = read_jsonl(tmp_path / refilled.relpath / "lineage.jsonl")
    assert {r.get("round", 0) for r in lineage} == {0, 1, 2, 3, 4}
    again = [r for r in lineage if r.get("round") == 1]
    assert all(r["id"].startswith("g0-r1-") and r["model"] == again[0]["model"] for r in again)
    assert len({r["target"] for r in kept}) == len(kept)  # dedup holds across rounds
