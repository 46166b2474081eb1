"""LLM2LLM's targeted augmentation with the oracle teacher, and its random control: only the
seed examples the student gets wrong are shown to the teacher (never a synthetic one), the
oracle's problems have the prompting problem's shape and exact answers, the control matches
the targeted policy's count, and the accepted examples are what the next training set adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ouroboros.config import RuntimeConfig, load_config
from ouroboros.data.arithmetic import answer_of, parse_problem, true_answer
from ouroboros.experiment.builders import augment
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.loop import run_study
from ouroboros.experiment.stages import read_jsonl

pytestmark = pytest.mark.integration

STUDY = ["data.source=arithmetic", "task.name=arithmetic", "metrics.names=[accuracy]",
         "data.train_size=300", "data.valid_size=30", "data.test_size=100", "generations=3",
         "seeds=[0]", "model.n_layer=1", "model.n_embd=32", "model.context_length=16",
         "training.tokens=40000", "generation.max_new_tokens=6", "runtime.progress=false",
         "runtime.threads=1",
         "policies=[{name: accumulate, label: llm2llm, curation: [], teacher: {kind: oracle, "
         "per_example: 2}}, {name: accumulate, label: random, curation: [], teacher: {kind: "
         "oracle, per_example: 2, target: random, match: llm2llm}}]"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("llm2llm")
    cfg = load_config(overrides=STUDY)
    plan = run_study(cfg, out, log=lambda _: None)
    return cfg, plan, out


def _augments(plan, label):
    cell = next(c for c in plan.cells if c.policy.display == label)
    return [e.deps["samples"] for e in cell.evaluations]


def test_only_wrong_seed_examples_are_augmented_with_oracle_problems_of_their_shape(study):
    cfg, plan, out = study
    spec = cfg.data.arithmetic.spec()
    for stage in _augments(plan, "llm2llm"):
        folder = out / stage.relpath
        scored = {r["id"]: r for r in read_jsonl(folder / "scored.jsonl")}
        seed = {r["id"]: r for r in read_jsonl(out / stage.deps["data"].relpath / "train.jsonl")}
        assert set(scored) == set(seed)  # every seed example scored, none synthetic
        wrong = {i for i, r in scored.items() if not r["correct"]}
        replies = read_jsonl(folder / "teacher.jsonl")
        assert {r["prompted_by"] for r in replies} == wrong
        assert all(sum(r["prompted_by"] == i for r in replies) == 2 for i in wrong)
        kept = read_jsonl(folder / "samples.jsonl")
        assert len(kept) == sum(r["kept"] for r in replies) > 0
        for row in kept:
            a, op, b = parse_problem(row["source"])
            x, op2, y = parse_problem(seed[row["prompted_by"]]["source"])
            assert op == op2 and len(str(a)) == len(str(x)) and len(str(b)) == len(str(y))
            assert answer_of(row["target"]) == true_answer(row["source"], spec)
        sources = [r["source"] for r in kept]
        assert len(set(sources)) == len(sources)
        assert not set(sources) & {r["source"] for r in seed.values()}
        test = {r["source"] for r in read_jsonl(out / stage.deps["test"].relpath /
                                                "test.jsonl")}
        assert not set(sources) & test


def test_the_random_control_matches_the_count_and_the_training_sets_accumulate(study):
    _, plan, out = study
    targeted, control = _augments(plan, "llm2llm"), _augments(plan, "random")
    for t, c in zip(targeted, control, strict=True):
        n = len(read_jsonl(out / t.relpath / "samples.jsonl"))
        assert len(read_jsonl(out / c.relpath / "samples.jsonl")) == n
        replies = read_jsonl(out / c.relpath / "teacher.jsonl")
        kept = [r for r in replies if r["kept"]]
        assert len(kept) == n
        # over quota only once the count is reached, and nothing kept after it
        first_over = next((i for i, r in enumerate(replies) if r.get("reason") == "over quota"),
                          len(replies))
        assert sum(r["kept"] for r in replies[:first_over]) == n
        assert not any(r["kept"] for r in replies[first_over:])
    for label, stages in (("llm2llm", targeted), ("random", control)):
        cell = next(c for c in plan.cells if c.policy.display == label)
        for g in (1, 2):
            trainset = read_jsonl(out / cell.evaluations[g].deps["model"].deps["trainset"]
                                  .relpath / "trainset.jsonl")
            added = [r for s in stages[:g] for r in read_jsonl(out / s.relpath /
                                                                "samples.jsonl")]
            assert len(trainset) == 300 + len(added)
            assert {r["id"] for r in trainset if r["origin"] == "synthetic"} == {
                r["id"] for r in added}


def test_a_planted_student_gets_exactly_its_wrong_examples_augmented(study, monkeypatch,
                                                                      tmp_path):
    cfg, plan, out = study
    stage = _augments(plan, "llm2llm")[1]
    seed = read_jsonl(out / stage.deps["data"].relpath / "train.jsonl")
    planted = {e["id"] for e in seed[::7]}
    monkeypatch.setattr(augment, "score_student", lambda job, real: [
        {"id": e["id"], "prediction": "", "correct": e["id"] not in planted} for e in real])
    info = augment.build_augment(Job(stage, out, RuntimeConfig(threads=1), cfg.data), tmp_path)
    replies = read_jsonl(tmp_path / "teacher.jsonl")
    assert {r["prompted_by"] for r in replies} == planted
    assert info["wrong"] == info["prompted"] == len(planted)
    earlier = {r["source"] for r in read_jsonl(out / stage.deps["earlier"][0].relpath /
                                                 "samples.jsonl")}
    assert not earlier & {r["source"] for r in read_jsonl(tmp_path / "samples.jsonl")}


def test_parsing_and_dedup_refuse_and_count():
    class Task:
        @staticmethod
        def answer(text):
            return answer_of(text)

    class FakeJob:
        task = Task()

    from ouroboros.config import TeacherConfig
    teacher = augment.Teacher(FakeJob(), TeacherConfig(kind="model", model="x"))
    assert teacher.parse("3 + 4 =\nAnswer: 7") == ({"source": "3 + 4 =", "target": "7"}, None)
    assert teacher.parse("Question: 3 + 4 =\nAnswer: seven") == (None, "no answer")
    assert teacher.parse("I cannot help with that.") == (None, "unparsed")
    # a teacher that goes on with more examples: the first one, its own answer
    assert teacher.parse("3 + 4 =\nAnswer: 7\n\nQuestion: 5 + 5 =\nAnswer: 1 0")[0] == {
        "source": "3 + 4 =", "target": "7"}
    assert teacher.parse("3 + 4 =\nAnswer: 7\nQuestion: 5 + 5 =\nAnswer: 1 0")[0] == {
        "source": "3 + 4 =", "target": "7"}
    # cut at max_new_tokens inside the answer: "1 2" may have been "1 2 3"
    assert teacher.parse("6 + 6 =\nAnswer: 1 2", finished=False) == (None, "unfinished")
    assert teacher.parse("6 + 6 =\nAnswer: 1 2\n\nQuestion: 7", finished=False)[1] is None
    assert augment.rouge_l("a b c d".split(), "a b x d".split()) == pytest.approx(0.75)
    dedup = augment.Dedup(["a b c d"], 0.7)
    assert dedup.seen("A b  c d")  # exact, after case and whitespace
    assert dedup.seen("a b x d")  # ROUGE-L 0.75 >= 0.7
    assert not dedup.seen("d c b a")  # the same words, out of order: LCS 1, F1 0.25
    assert not dedup.seen("q r s t")
    dedup.add("q r s t")
    assert dedup.seen("q r s t")  # what it kept counts too
    exact = augment.Dedup(["a b c d"], 1.0)
    assert exact.seen("a  B c d") and not exact.seen("a b x d")


def test_teacher_settings_are_checked_before_any_work():
    from ouroboros.config import ConfigError
    base = STUDY[:-1]
    with pytest.raises(ConfigError) as e:
        load_config(overrides=base + ["policies=[{name: replace, teacher: {kind: oracle}}, "
                                      "{name: accumulate, label: r, curation: [], teacher: "
                                      "{kind: oracle, target: random, match: nobody}}]"])
    text = str(e.value)
    assert "policies.0.name: a teacher's examples accumulate" in text
    assert "policies.1.teacher.match: no policy is labelled 'nobody'" in text
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["policies=[{name: accumulate, curation: [], teacher: "
                               "{kind: oracle}}]"])
    assert "policies.0.teacher: needs a task with exact answers" in str(e.value)
    assert "policies.0.teacher.kind: the oracle writes arithmetic problems" in str(e.value)


def test_the_record_says_what_the_teacher_cost(study):
    _, plan, out = study
    for stage in _augments(plan, "llm2llm"):
        info = json.loads((Path(out) / stage.relpath / "_complete.json").read_text())["info"]
        assert info["cost"]["requests"] == info["replies"] == 2 * info["wrong"]
        assert info["teacher_right"] == 1.0
        assert sum(info["refused"].values()) + info["accepted"] == info["replies"]


def test_a_local_model_teacher_is_sampled_and_its_garbage_counted_not_trained_on(study,
                                                                                  tmp_path):
    """A teacher that is a Hugging Face model folder (here the study's own tiny generation-0
    checkpoint, which cannot follow the prompt): its replies are sampled here, recorded with
    their cost, refused as unparsed, and the next training set is the seed data alone."""
    _, plan, out = study
    (folder,) = {p for p in out.glob("stages/train/s0-g0-*/model")}
    overrides = [o for o in STUDY if not o.startswith(("policies=", "generations="))] + [
        "generations=2", "policies=[{name: accumulate, label: hf, curation: [], teacher: "
        f"{{kind: model, model: '{folder}', max_new_tokens: 8, template: 'Q: {{source}} "
        "A: {target} Q:'}}]"]
    plan = run_study(load_config(overrides=overrides), tmp_path, log=lambda _: None)
    cell = plan.cells[0]
    stage = cell.evaluations[0].deps["samples"]
    assert stage.spec["files"]["teacher.model"]  # the folder's content is in the fingerprint
    info = json.loads((tmp_path / stage.relpath / "_complete.json").read_text())["info"]
    assert info["replies"] == info["wrong"] > 0 and info["accepted"] == 0
    assert info["refused"] == {"unparsed": info["replies"]}
    assert info["cost"]["completion_tokens"] > 0 and info["cost"]["prompt_tokens"] > 0
    replies = read_jsonl(tmp_path / stage.relpath / "teacher.jsonl")
    assert all(r["reply"] is not None and not r["kept"] for r in replies)
    trainset = read_jsonl(tmp_path / cell.evaluations[1].deps["model"].deps["trainset"].relpath
                          / "trainset.jsonl")
    assert len(trainset) == 300 and {r["origin"] for r in trainset} == {"real"}
