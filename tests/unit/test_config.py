"""Config schema, overrides and error reporting."""

from pathlib import Path

import pytest
import yaml

from ouroboros.config import ConfigError, StudyConfig, dump_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_demo_config_is_the_builtin_default():
    shipped = load_config(ROOT / "configs" / "demo.yaml")
    assert shipped == StudyConfig()


def test_every_shipped_config_validates():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


def test_every_problem_listed_with_dotted_path():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["policies.0.name=replce", "training.epochs=-1",
                               "data.foo=1", "generation.top_p=2", "policies.1.real_fraction=0.3",
                               "model.n_head=5"])
    problems = e.value.problems
    assert any(p.startswith("policies.0.name: unknown data policy 'replce'")
               and "did you mean 'replace'" in p for p in problems)
    assert any(p.startswith("training.epochs:") for p in problems)
    assert "data.foo: unknown key" in problems
    assert any(p.startswith("generation.top_p:") for p in problems)
    assert any(p.startswith("policies.1:") and "real_fraction" in p for p in problems)
    assert any(p.startswith("model:") and "n_head" in p for p in problems)
    assert len(problems) == 6


def test_overrides_reach_into_default_lists_and_parse_yaml():
    cfg = load_config(overrides=["policies.2.real_fraction=0.25", "seeds=[3, 4, 5]",
                                 "training.tokens=5000"])
    assert cfg.policies[2].real_fraction == 0.25 and cfg.policies[2].display == "mix-0.25"
    assert cfg.seeds == [3, 4, 5]
    assert cfg.training.tokens == 5000 and cfg.training.epochs is None


def test_selection_rules():
    with pytest.raises(ConfigError, match="selection_split"):
        load_config(overrides=["training.selection=best"])
    cfg = load_config(overrides=["training.selection=best", "training.selection_split=real"])
    assert cfg.training.selection_split == "real"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_runtime_is_not_part_of_results():
    a = load_config(overrides=["runtime.threads=1", "runtime.eval_batch_size=7"])
    assert a.results_part() == StudyConfig().results_part()
    assert "runtime" not in a.results_part()


def test_dump_round_trips(tmp_path):
    cfg = load_config(overrides=["policies=[{name: fresh, real_fraction: 0.5}]"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text())["policies"][0]["name"] == "fresh"


def test_generator_shares_and_sizes():
    with pytest.raises(ConfigError, match="shares sum to 0.9"):
        load_config(overrides=["policies=[{name: replace, generators: [{label: a, share: 0.5},"
                               " {label: b, share: 0.4}]}]"])
    with pytest.raises(ConfigError, match="distinct labels"):
        load_config(overrides=["policies=[{name: replace, generators: [{label: a, share: 0.5},"
                               " {label: a, share: 0.5}]}]"])
    with pytest.raises(ConfigError, match=r"n_head \(2\) must divide n_embd \(11\)"):
        load_config(overrides=["policies=[{name: replace, generators: [{label: a, share: 1, "
                               "n_embd: 11}]}]"])


@pytest.mark.parametrize(("override", "match"), [
    ("curation=[{name: length, min_words: 9, max_words: 3}]", "min_words 9 > max_words 3"),
    ("curation=[{name: verifier, false_reject: 1.0}]", "false_reject 1"),
    ("training.selection=best", None),
    ('name="tiny\\n"', "becomes part of a file name"),  # YAML's \n: a real newline
])
def test_impossible_settings_are_refused_by_validate(override, match):
    if match is None:  # selection on a synthetic split that holds out everything
        with pytest.raises(ConfigError, match="synthetic_valid_fraction: 1"):
            load_config(overrides=["training.selection=best", "training.selection_split=synthetic",
                                   "training.synthetic_valid_fraction=1.0"])
        return
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=[override])


@pytest.mark.parametrize(("override", "where"), [
    ("generation.num_samples=1000000000000", "generation.num_samples"),
    ("generation.candidates=1000000", "generation.candidates"),
    ("generations=1000000", "generations"), ("data.train_size=100000000", "data.train_size"),
    ("seeds=[" + ",".join(map(str, range(100_000))) + "]", "seeds"),
])
def test_sizes_without_bounds_are_refused_at_once(override, where):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert any(p.startswith(f"{where}:") for p in e.value.problems)


def test_samples_a_generation_holds_in_memory_are_bounded():
    with pytest.raises(ConfigError, match="policies.0: 1000000 requests x 64 candidates"):
        load_config(overrides=["generation.num_samples=1000000", "generation.candidates=64"])
