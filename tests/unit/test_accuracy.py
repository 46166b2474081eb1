"""The built-in verifiable task: problems, exact answers, the checker and the accuracy metric
on planted right and wrong answers."""

import math

import numpy as np
import pytest

from ouroboros.config import ArithmeticConfig, TaskConfig, load_config
from ouroboros.data.arithmetic import ArithmeticSpec, answer_of, check, example, sample_problems
from ouroboros.metrics.accuracy import accuracy
from ouroboros.metrics.signature import EvalContext, parse_signature
from ouroboros.tasks.conditional import Arithmetic


def arithmetic_context(predictions, train_predictions=None, sample_rows=(), seed=0):
    """An evaluation context of the arithmetic task: 4 test problems, 3 training problems."""
    spec = ArithmeticSpec()
    test = [{"id": f"test-{i}", **example(spec, a, "+", b)}
            for i, (a, b) in enumerate([(12, 34), (9, 9), (50, 50), (7, 0)])]
    train = [{"id": f"train-{i}", **example(spec, a, "+", b)}
             for i, (a, b) in enumerate([(1, 2), (45, 55), (30, 3)])]
    said = None if train_predictions is None else {
        e["id"]: p for e, p in zip(train, train_predictions, strict=True)}
    return EvalContext(samples=[r["target"] for r in sample_rows], real_test=test, seed=seed,
                       task=Arithmetic(TaskConfig(name="arithmetic")), predictions=predictions,
                       train_predictions=said, real_train=train,
                       sample_rows=list(sample_rows), options={"eval_decoding": "greedy"})


def test_problems_have_exact_answers_in_their_format():
    spec = ArithmeticSpec(operators=("+", "-", "*"), reverse=True)
    assert example(spec, 47, "+", 85) == {"source": "4 7 + 8 5 =", "target": "2 3 1"}  # 132
    assert example(spec, 3, "-", 10)["target"] == "- 7"
    assert example(ArithmeticSpec(reverse=False), 47, "+", 85)["target"] == "1 3 2"
    worked = example(ArithmeticSpec(scratchpad=True), 47, "+", 85)["target"]
    assert worked == "7 + 5 + 0 = 1 2 ; 4 + 8 + 1 = 1 3 ; 0 + 0 + 1 = 1 #### 2 3 1"
    rng = np.random.default_rng(0)
    for i in sample_problems(spec, 300, rng):
        a, op, b = spec.problem(i)
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        target = example(spec, a, op, b)["target"]
        sign = -1 if target.startswith("-") else 1
        assert sign * int(target.lstrip("- ").replace(" ", "")[::-1]) == value


def test_the_problem_space_and_its_splits():
    assert ArithmeticSpec().size == 100 * 100
    assert ArithmeticSpec(min_digits=2, max_digits=2).size == 90 * 90
    picks = sample_problems(ArithmeticSpec(min_digits=1, max_digits=1), 100,
                            np.random.default_rng(0))
    assert sorted(picks) == list(range(100))  # every one of the 100 once
    with pytest.raises(ValueError, match="only 100 distinct"):
        sample_problems(ArithmeticSpec(min_digits=1, max_digits=1), 101,
                        np.random.default_rng(0))
    cfg = load_config(overrides=["data.source=arithmetic", "task.name=arithmetic",
                                 "metrics.names=[accuracy]", "data.train_size=300",
                                 "data.valid_size=50", "data.test_size=100"])
    from ouroboros.experiment.plan import make_source
    records = make_source(cfg).records(0)
    seen = [r["source"] for split in records.values() for r in split]
    assert len(seen) == len(set(seen)) == 450  # no problem in two splits
    assert records["test"] == make_source(cfg).records(1)["test"]  # the same for every seed


@pytest.mark.parametrize(("prediction", "expected"), [
    ("2 3 1", (True, True)), ("  2   3 1 ", (True, True)), ("2 3 1 0", (True, False)),
    ("2 3", (True, False)), ("231", (False, False)), ("", (False, False)),
    ("7 + 5 #### 2 3 1", (True, True)), ("#### 2 3 1 #### 9", (True, False)),
    ("two", (False, False)), ("- 2 3 1", (True, False)),
])
def test_the_checker_on_planted_answers(prediction, expected):
    assert check(prediction, "2 3 1") == expected


def test_a_leading_zero_of_a_reversed_answer_counts():
    assert answer_of("0 2") == "0 2" and check("2", "0 2") == (True, False)  # 20, not 2


def test_accuracy_on_planted_predictions():
    # the answers: 46 -> "6 4", 18 -> "8 1", 100 -> "0 0 1", 7 -> "7"
    ctx = arithmetic_context(["6 4", "8 1 1", "0 0 1", "no idea"],
                             train_predictions=["3", "0 0 1", "3 3"],
                             sample_rows=[{"prompted_by": "train-0", "target": "3"},
                                          {"prompted_by": "train-1", "target": "0 0 2"},
                                          {"prompted_by": "train-2", "target": "#### 3 3"},
                                          {"prompted_by": None, "target": "x"}])
    values = {v.metric: v for v in accuracy(ctx)}
    assert values["accuracy"].value == 2 / 4 and values["accuracy_unparsed"].value == 1 / 4
    assert values["accuracy"].n == 4
    assert values["accuracy@se"].value == pytest.approx(math.sqrt(0.5 * 0.5 / 4))
    assert "se" not in parse_signature(values["accuracy"].signature)["params"]  # per value
    assert values["train_accuracy"].value == 3 / 3
    assert values["sample_accuracy"].value == 2 / 3 and values["sample_accuracy"].n == 3
    assert values["accuracy"].higher_is_better and not values["accuracy_unparsed"].higher_is_better


def test_accuracy_needs_a_task_with_exact_answers():
    with pytest.raises(Exception, match="accuracy needs a task with exact answers"):
        load_config(overrides=["metrics.names=[accuracy]"])
    with pytest.raises(Exception, match="data.source arithmetic makes arithmetic problems"):
        load_config(overrides=["data.source=arithmetic", "metrics.names=[perplexity]"])
    with pytest.raises(Exception, match="but these operators and digits make only 100"):
        load_config(overrides=["data.source=arithmetic", "task.name=arithmetic",
                               "metrics.names=[accuracy]", "data.arithmetic.max_digits=1"])
    assert ArithmeticConfig(operators=["+", "*"]).spec().operators == ("+", "*")


@pytest.mark.parametrize(("text", "answer"), [
    ("so 5*6=30 #### 30", "30"), ("#### 1,000", "1000"), ("#### $1,000.00", "1000"),
    ("#### 72.0", "72"), ("#### 0.50", "0.5"), ("#### -7", "-7"), ("#### -0", "0"),
    ("#### 3 #### 4", "4"), ("#### 40%", "40"), ("no mark 30", None),
    ("#### thirty", None), ("####", None), ("#### NaN", None), ("#### inf", None),
    ("#### 1e1000000", None), ("#### 3 4", None), ("#### 1e-1000100", None),
])
def test_gsm8k_answers_are_extracted_and_compared_by_value(text, answer):
    from decimal import Decimal

    from ouroboros.tasks.conditional import GSM8K
    task = GSM8K(TaskConfig(name="gsm8k"))
    assert task.answer(text) == (None if answer is None else Decimal(answer))
    if answer is not None:
        assert task.check(text, f"rationale #### {answer}") == (True, True)
    else:
        assert task.check(text, "#### 30") == (False, False)


def test_classification_labels_compare_exactly_and_patterns_are_configurable():
    from ouroboros.tasks.conditional import GSM8K, Classification
    task = Classification(TaskConfig(name="classification"))
    assert task.check(" positive\n", "positive") == (True, True)
    assert task.check("Positive", "positive") == (True, False)
    assert task.check("", "positive") == (False, False)
    assert task.check("positive\n ", "positive") == (True, True)  # a last empty match skipped
    anything = Classification(TaskConfig(name="classification", answer_pattern="(.*)"))
    assert anything.check("positive", "positive") == (True, True)
    boxed = GSM8K(TaskConfig(name="gsm8k", answer_pattern=r"\\boxed\{([^}]*)\}"))
    assert boxed.check("so \\boxed{12}", "\\boxed{12.0}") == (True, True)
    for bad, message in (("(a)(b)", "exactly one group"), ("(", "not a regular expression")):
        with pytest.raises(Exception, match=message):
            TaskConfig(name="gsm8k", answer_pattern=bad)
    cfg = load_config(overrides=["task.name=gsm8k", "data.source=files", "data.files.train=a",
                                 "data.files.test=b", "model.tokenizer=bpe",
                                 "metrics.names=[accuracy]"])
    assert cfg.task.name == "gsm8k"


@pytest.mark.parametrize(("extra", "message"), [
    (["data.arithmetic.operators=[-]", "data.arithmetic.scratchpad=true"], "for \\+ only"),
    (["data.arithmetic.max_digits=6", "data.arithmetic.scratchpad=true"],
     "generation.max_new_tokens: 48 tokens cut the longest answer"),
    (["data.arithmetic.max_digits=6", "data.arithmetic.scratchpad=true",
      "generation.max_new_tokens=80"], "model.context_length: 64 tokens cut"),
    (["task.answer_pattern=(x)"], "task.answer_pattern: task arithmetic checks digits"),
])
def test_arithmetic_settings_that_cannot_score_are_refused(extra, message):
    with pytest.raises(Exception, match=message):
        load_config(overrides=["data.source=arithmetic", "task.name=arithmetic",
                               "metrics.names=[accuracy]", *extra])


def test_fresh_problems_are_never_used_before_and_their_supply_is_checked():
    from ouroboros.config import ConfigError
    from ouroboros.experiment.loop import preflight
    from ouroboros.experiment.plan import make_source
    base = ["data.source=arithmetic", "task.name=arithmetic", "metrics.names=[accuracy]",
            "data.train_size=300", "data.valid_size=50", "data.test_size=100", "seeds=[0]"]
    source = make_source(load_config(overrides=base))
    used = {r["source"] for split in source.records(0).values() for r in split}
    first, second = ({r["source"] for r in source.fresh(200, 0, g)} for g in (1, 2))
    assert len(first) == len(second) == 200 and not (first & used) and not (first & second)
    small = [*base[:3], "data.arithmetic.max_digits=1", "data.train_size=50",
             "data.valid_size=20", "data.test_size=30", "generations=3",
             "policies=[{name: fresh, real_fraction: 0.5}]"]
    with pytest.raises(ConfigError, match="needs 50 never-used problems over 2 generations, "
                                          "but only 0 remain"):
        preflight(load_config(overrides=small))


def test_a_reference_without_an_answer_is_refused_before_work(tmp_path):
    from ouroboros.config import ConfigError
    from ouroboros.experiment.loop import preflight
    rows = "".join(f'{{"question": "q{i}", "answer": "r #### {i}"}}\n' for i in range(40))
    (tmp_path / "train.jsonl").write_text(rows + '{"question": "q", "answer": "no mark"}\n')
    (tmp_path / "test.jsonl").write_text(rows)
    cfg = load_config(overrides=[
        "task.name=gsm8k", "data.source=files", f"data.files.root={tmp_path}",
        "data.files.train=train.jsonl", "data.files.test=test.jsonl",
        "data.files.fields={source: question, target: answer}", "data.train_size=null",
        "data.valid_size=5", "data.test_size=null", "model.tokenizer=bpe",
        "metrics.names=[accuracy]", "seeds=[0]"])
    with pytest.raises(ConfigError, match="1 of 36 real train targets state no answer"):
        preflight(cfg)


def test_candidates_of_one_problem_are_one_cluster_in_the_standard_error():
    from ouroboros.metrics.accuracy import _cluster_se
    flags = [True, True, False, False]
    assert _cluster_se(flags, [0, 1, 2, 3]) == pytest.approx(math.sqrt(0.25 / 4))
    # two problems, each answered twice the same way: really 2 observations, not 4
    assert _cluster_se(flags, [0, 0, 1, 1]) == pytest.approx(math.sqrt(0.25 / 2))


def test_the_verifier_on_exact_answers_keeps_exactly_the_right_ones():
    """Verified self-training: the exact verifier keeps a sample iff its answer is the real
    answer of the problem that prompted it; its error rates flip decisions as configured."""
    from ouroboros.curation.steps import CurationContext, verifier
    ctx = arithmetic_context(["x"] * 4)
    rows = [{"id": "a", "prompted_by": "train-0", "target": "3"},        # 1 + 2: right
            {"id": "b", "prompted_by": "train-1", "target": "0 0 2"},    # 45 + 55 = 100: wrong
            {"id": "c", "prompted_by": "train-2", "target": "3 3"},      # 30 + 3: right
            {"id": "d", "prompted_by": "train-2", "target": "nothing"},  # unparsed: wrong
            {"id": "e", "prompted_by": None, "target": "3"}]             # no real problem
    cur = CurationContext(real=ctx.real_train, rng=np.random.default_rng(0), task=ctx.task)
    kept = verifier([dict(r) for r in rows], cur)
    assert [r["id"] for r in kept] == ["a", "c"]
    assert cur.info["verifier"]["valid"] == 2
    everything = verifier([dict(r) for r in rows], CurationContext(
        real=ctx.real_train, rng=np.random.default_rng(0), task=ctx.task), false_accept=1.0)
    assert len(everything) == 5
    none = verifier([dict(r) for r in rows], CurationContext(
        real=ctx.real_train, rng=np.random.default_rng(0), task=ctx.task), false_reject=0.999)
    assert [r["id"] for r in none] == []
