"""Back-translation with self-curation and its forward self-training control, end to end on
the built-in task: the backward model trains on generation g's pairs reversed, writes sources
for the real targets of never-used examples, the forward model's scores keep the best share,
and the next training set is the seed data plus the kept pairs; the forward control answers
the real sources of the same examples."""

from __future__ import annotations

import json

import pytest

from ouroboros.config import load_config
from ouroboros.experiment.loop import run_study
from ouroboros.experiment.stages import read_jsonl

pytestmark = pytest.mark.integration

STUDY = ["data.source=arithmetic", "task.name=arithmetic", "metrics.names=[accuracy]",
         "data.train_size=300", "data.valid_size=30", "data.test_size=100", "generations=2",
         "seeds=[0]", "model.n_layer=1", "model.n_embd=32", "model.context_length=16",
         "training.tokens=30000", "generation.max_new_tokens=6", "runtime.progress=false",
         "runtime.threads=1",
         "policies=[{name: accumulate, label: bt, curation: [], backtranslation: {size: 120, "
         "keep_fraction: 0.5}}, {name: accumulate, label: ft, curation: [], backtranslation: "
         "{size: 120, direction: forward}}]"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("bt")
    plan = run_study(load_config(overrides=STUDY), out, log=lambda _: None)
    return plan, out


def _cell(plan, label):
    return next(c for c in plan.cells if c.policy.display == label)


def test_backward_model_pairs_self_curation_and_the_next_training_set(study):
    plan, out = study
    cell = _cell(plan, "bt")
    stage = cell.evaluations[0].deps["samples"]
    assert stage.kind == "backtranslate"
    backward = stage.deps["model"]
    reverse = read_jsonl(out / backward.deps["trainset"].relpath / "trainset.jsonl")
    forward = read_jsonl(out / cell.evaluations[0].deps["model"].deps["trainset"].relpath /
                         "trainset.jsonl")
    assert [(r["source"], r["target"]) for r in reverse] == [
        (r["target"], r["source"]) for r in forward]
    lineage = read_jsonl(out / stage.relpath / "samples.jsonl")
    kept = read_jsonl(out / stage.relpath / "curated.jsonl")
    assert len(lineage) == 120 and len(kept) == 60
    # real targets of never-used problems, each asked once; the source is the model's
    real = {r["prompted_by"] for r in lineage}
    assert len(real) == 120 and all(i.startswith("fresh-g1-") for i in real)
    assert all(r["generated"] == "source" and r["origin"] == "synthetic" for r in lineage)
    # the real target is whole: trained with its EOS whether or not the source was cut
    assert all(r["finished"] is True and "source_finished" in r for r in lineage)
    later = read_jsonl(out / cell.evaluations[1].deps["samples"].relpath / "samples.jsonl")
    assert all(r["prompted_by"].startswith("fresh-g2-") for r in later)
    kept_ids = {r["id"] for r in kept}
    assert min(r["scores"]["forward_loglik"] for r in lineage if r["id"] in kept_ids) >= max(
        r["scores"]["forward_loglik"] for r in lineage if r["id"] not in kept_ids)
    assert all(r["decisions"][0]["kept"] == (r["id"] in kept_ids) for r in lineage)
    nxt = read_jsonl(out / cell.evaluations[1].deps["model"].deps["trainset"].relpath /
                     "trainset.jsonl")
    assert len(nxt) == 300 + 60
    assert {r["id"] for r in nxt if r["origin"] == "synthetic"} == kept_ids


def test_the_forward_control_answers_the_same_real_examples(study):
    plan, out = study
    bt = read_jsonl(out / _cell(plan, "bt").evaluations[0].deps["samples"].relpath /
                    "samples.jsonl")
    ft_stage = _cell(plan, "ft").evaluations[0].deps["samples"]
    ft = read_jsonl(out / ft_stage.relpath / "samples.jsonl")
    assert ft_stage.deps["model"] == _cell(plan, "ft").evaluations[0].deps["model"]
    assert [r["prompted_by"] for r in ft] == [r["prompted_by"] for r in bt]
    assert all(r["generated"] == "target" for r in ft)
    data = ft_stage.deps["data"]
    used = {r["source"] for split in ("train", "valid") for r in read_jsonl(
        out / data.relpath / f"{split}.jsonl")}
    test = {r["source"] for r in read_jsonl(out / _cell(plan, "ft").evaluations[0]
                                           .deps["test"].relpath / "test.jsonl")}
    assert not {r["source"] for r in ft} & (used | test)  # never-used real problems
    later = read_jsonl(out / _cell(plan, "ft").evaluations[1].deps["samples"].relpath /
                       "samples.jsonl")
    assert not {r["source"] for r in later} & ({r["source"] for r in ft} | used | test)
    info = json.loads((out / ft_stage.relpath / "_complete.json").read_text())["info"]
    assert info["pairs"] == info["kept"] == 120 and info["new_tokens"] > 0
    assert (out / "backtranslation.csv").is_file()


def test_backtranslation_settings_are_checked():
    from ouroboros.config import ConfigError
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["policies=[{name: mix, real_fraction: 0.5, backtranslation: "
                               "{}, candidates: 2}]"])
    text = str(e.value)
    assert "policies.0.backtranslation: needs a source -> target task" in text
    assert "policies.0.candidates: does not go with backtranslation" in text
    assert "policies.0.name: back-translated pairs join the seed data" in text
