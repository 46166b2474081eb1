"""Configs that validate field by field but would fail after generation 0 is trained are
refused before any work, each problem with its dotted path."""

import pytest

from ouroboros.config import ConfigError, load_config
from ouroboros.experiment.loop import preflight

SMALL = ["data.train_size=40", "data.valid_size=10", "data.test_size=20", "seeds=[0]"]


def _problems(*overrides: str) -> str:
    with pytest.raises(ConfigError) as e:
        preflight(load_config(overrides=[*SMALL, *overrides]))
    return "\n".join(e.value.problems)


def test_mix_that_needs_more_samples_than_a_generation_yields():
    text = _problems("policies=[{name: mix, real_fraction: 0.1}]", "generation.num_samples=20")
    assert "policies.0: mix-0.1 takes 36 synthetic examples" in text and "at most 20" in text


def test_fresh_that_runs_out_of_never_used_real_data(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("\n".join(f"line {i} of text" for i in range(50)) + "\n")
    test = tmp_path / "test.txt"
    test.write_text("\n".join(f"test {i} here" for i in range(10)) + "\n")
    text = _problems("data.source=files", f"data.files.train={train}",
                     f"data.files.test={test}", "data.test_size=10", "generations=4",
                     "model.tokenizer=bpe", "metrics.names=[perplexity]",
                     "policies=[{name: fresh, real_fraction: 0.5}]")
    # 50 lines: 10 carved for validation, 40 trained on, none left; 3 x 20 needed
    assert "policies.0: fresh-0.5 needs 60 never-used real examples over 3 generations" in text


def test_context_too_short_for_the_languages_sentences():
    assert "model.context_length" in _problems("model.context_length=8")


def test_grammar_sentences_cut_into_blocks_are_refused():
    with pytest.raises(ConfigError, match="task.block_words"):
        load_config(overrides=["task.block_words=8"])


def test_the_demo_plan_has_no_problem():
    preflight(load_config(overrides=SMALL))


def test_best_of_n_keeps_one_candidate_per_request_in_the_size_check():
    text = _problems("policies=[{name: mix, real_fraction: 0.1, candidates: 4, "
                     "curation: [{name: best-of-n}]}]", "generation.num_samples=20")
    assert "at most 20" in text
    preflight(load_config(overrides=[*SMALL, "generation.num_samples=20",
                                     "policies=[{name: mix, real_fraction: 0.1, candidates: 4}]"]))


def test_a_template_needs_its_source_exactly_once():
    for bad in ("no source here", "{source} and {source}"):
        with pytest.raises(ConfigError, match="exactly once"):
            load_config(overrides=["task.name=translation", f"task.template={bad!r}",
                                   "data.source=files", "data.files.train=x",
                                   "data.files.test=y"])


def test_mix_after_a_filter_that_keeps_too_few_is_refused():
    text = _problems("policies=[{name: mix, real_fraction: 0.1, "
                     "curation: [{name: detector, mode: filter, keep_fraction: 0.5}]}]")
    assert "policies.0: mix-0.1 takes 36 synthetic examples" in text
    assert "at most 20" in text and "detector keeps 0.5" in text


def test_a_template_that_the_context_cannot_hold_is_refused():
    with pytest.raises(ConfigError, match=r"task.max_source_tokens: 192 .* use at most 165"):
        load_config(overrides=["task.name=summarization", "data.source=files",
                               "data.files.train=a", "data.files.test=b", "model.tokenizer=bpe",
                               "metrics.names=[perplexity]", "model.context_length=176",
                               "task.max_source_tokens=192"])
    load_config(overrides=["task.name=summarization", "data.source=files", "data.files.train=a",
                           "data.files.test=b", "model.tokenizer=bpe",
                           "metrics.names=[perplexity]", "model.context_length=176",
                           "task.max_source_tokens=165"])


def test_prefix_as_long_as_the_block_publishes_no_continuation_and_says_so():
    from ouroboros.config import notices
    cfg = load_config(overrides=["data.source=files", "data.files.train=a", "data.files.test=b",
                                 "model.tokenizer=bpe", "metrics.names=[perplexity]",
                                 "task.block_words=8", "generation.prompt=real-prefix",
                                 "generation.prefix_words=8"])
    assert any("continuation_perplexity is not reported" in n for n in notices(cfg))


def test_given_order_with_accumulate_is_refused():
    with pytest.raises(ConfigError, match=r"policies.0.order: given .* accumulate"):
        load_config(overrides=["policies=[{name: accumulate, order: given}]"])


@pytest.mark.parametrize(("text", "expect"), [
    ("tweet,class\nyou idiot,1\nhello,0\n", None),
    ("text,class\nyou idiot,1\nhello,0\n", "has no column ['tweet']"),
    ("tweet,class\nyou idiot,2\nhello,0\n", "no row of"),
    ("tweet,class\nyou idiot,1\nhello,1\n", "every row"),
])
def test_a_trait_file_that_cannot_train_its_classifier_is_refused(tmp_path, text, expect):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    trait = (f"metrics.traits=[{{trait: toxicity, scorer: classifier, file: {labels}, "
             f"text: tweet, label: class, positive: ['1']}}]")
    overrides = [*SMALL, "metrics.names=[perplexity, traits]", trait]
    if expect is None:
        preflight(load_config(overrides=overrides))
    else:
        with pytest.raises(ConfigError) as e:
            preflight(load_config(overrides=overrides))
        assert any(p.startswith("metrics.traits.0: ") and expect in p for p in e.value.problems)


def test_a_given_order_reaches_the_training_set_of_its_cells():
    from ouroboros.experiment.plan import plan_study
    cfg = load_config(overrides=[*SMALL, "generations=2", "policies=[{name: mix, "
                                 "real_fraction: 0.1, order: given}, {name: replace}]"])
    sets = {s.label: s.spec for s in plan_study(cfg).stages if s.kind == "trainset"}
    assert sets["mix-0.1-s0-g1"]["ordered"] is True and sets["replace-s0-g1"]["ordered"] is None


def test_no_continuation_perplexity_is_published_without_a_continuation():
    from types import SimpleNamespace

    from ouroboros.metrics.perplexity import _continuation
    ctx = SimpleNamespace(options={"prefix_words": 3}, task=SimpleNamespace(conditional=False),
                          real_test=[{"target": "a b c"}, {"target": "d e"}])
    assert _continuation(ctx) == []
