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
