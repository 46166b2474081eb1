"""The bad-config matrix: every mistake is exit code 2, one message naming it with its dotted
path (or file:line), and nothing written."""

import pytest

from ouroboros.cli import main

# (YAML text of the config, or None for the demo; overrides; what the error must say)
CASES = [
    ("policies: [{name: replce}]", [], "policies.0.name: unknown data policy 'replce'"),
    ("training: {lrr: 0.1}", [], "training.lrr: unknown key (did you mean 'lr'?)"),
    ("trainng: {lr: 0.1}", [], "trainng: unknown key (did you mean 'training'?)"),
    ("training: {lr: .inf}", [], "training.lr: Input should be a finite number"),
    ("training: {lr: .nan}", [], "training.lr: Input should be a finite number"),
    ("training: {lr: -1}", [], "training.lr: Input should be greater than 0"),
    ("generations: true", [], "generations: Input should be a valid integer"),
    ("generations: '3'", [], "generations: Input should be a valid integer"),
    ("generations: 0", [], "generations: Input should be greater than or equal to 1"),
    ("seeds: [0, 0]", [], "seeds: [0] repeat"),
    ("seeds: []", [], "seeds: List should have at least 1 item"),
    ("data: {train_size: -5}", [], "data.train_size: Input should be greater than 0"),
    ("data: {source: nowhere}", [], "data.source: unknown data source 'nowhere'"),
    ("data: [1, 2]", [], "data: Input should be a valid dictionary"),
    ("model: {n_embd: 64, n_head: 3}", [], "n_head (3) must divide n_embd (64)"),
    ("model: {trust_remote_code: true}", [], "trust_remote_code are for hf-causal"),
    ("model: {name: hf-causal}", [], "needs pretrained"),
    ("policies: [{name: mix, real_fraction: 1.5}]", [],
     "policies.0.real_fraction: Input should be less than or equal to 1"),
    ("policies: [{name: mix}]", [], "policies.0: policy mix needs real_fraction"),
    ("policies: [{name: replace, real_fraction: 0.2}]", [], "takes no real_fraction"),
    ("policies: [{name: replace, label: ../escape}]", [], "policies.0.label: '../escape'"),
    ("policies: [{name: replace, label: a/b}]", [], "policies.0.label: 'a/b'"),
    ("policies: [{name: replace}, {name: replace}]", [],
     "policies.1.label: policies have the same label 'replace' as policies.0"),
    ("name: ../outside", [], "name: '../outside' becomes part of a file name"),
    ("name: /abs", [], "name: '/abs' becomes part of a file name"),
    ("name: ''", [], "name: '' becomes part of a file name"),
    ("metrics: {traits: [{trait: 'x onload=1', scorer: vader}], names: [traits]}", [],
     "metrics.traits.0.trait: 'x onload=1' becomes part of a file name"),
    ("metrics: {names: [rouge]}", [], "rouge scores test predictions"),
    ("curation: [{name: dedup, max_rate: 0.1}]", [], "step dedup takes no max_rate"),
    ("task: {template: 'no placeholder'}", [], "template needs {source} exactly once"),
    ("generation: {top_p: 0}", [], "generation.top_p: Input should be greater than 0"),
    ("runtime: {device: gpu}", [], "runtime.device: String should match pattern"),
    ("training: {lr: 0.1}\ntraining: {lr: 0.2}\n", [], ":2: not valid YAML"),
    ("training: {lr: 0.1, lr: 0.2}", [], "key 'lr' given twice"),
    ("training: [unclosed", [], ":1: not valid YAML"),
    ("# only a comment\n", [], "empty config (for the built-in demo give no CONFIG)"),
    ("- a list", [], "the top level must be a mapping"),
    (None, ["seeds=[0,"], "seeds: the value '[0,' is not valid YAML"),
    (None, ["generations"], "generations: no such file"),  # an argument without = is CONFIG
    (None, ["=3"], "=3: an override must look like dotted.key=value"),
    (None, ["policies.7.name=mix"], "policies.7: no list item 7"),
    ("? [a, b]\n: 1\n", [], "a key must be a name, not a list"),
    ("? {a: 1}\n: 1\n", [], "a key must be a name, not a dict"),
    ("a: " + "[" * 50_000 + "]" * 50_000 + "\n", [], "nested too deeply to be a config"),
    (None, ["policies=" + "[" * 5_000 + "]" * 5_000], "a value nested too deeply"),
    (None, ["seeds=[-1]"], "seeds.0: Input should be greater than or equal to 0"),
    (None, ["policies=[{name: replace, generators: [{label: a, share: 0.5}, {label: b, "
            "share: 0.5, server: {base_url: 'http://[::1/v1', model: m}}]}]"],
     "policies.0.generators.1.server.base_url: not a valid URL"),
]


@pytest.mark.parametrize(("text", "overrides", "message"), CASES,
                         ids=[f"{i}" for i in range(len(CASES))])
def test_bad_config_is_refused_before_anything_is_written(tmp_path, capsys, text, overrides,
                                                         message):
    args = ["run"]
    if text is not None:
        path = tmp_path / "study.yaml"
        path.write_text(text)
        args.append(str(path))
    out = tmp_path / "run"
    before = sorted(tmp_path.iterdir())
    assert main([*args, "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before and not out.exists()


def test_matrix_is_large():
    assert len(CASES) >= 30


def test_trust_remote_code_is_named_shown_and_recorded(tmp_path, capsys):
    """A model folder that ships code: without the setting the error names it (not the
    network); with it, validate and run say so before anything runs."""
    from ouroboros.config import load_config, notices
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"model_type": "my-custom-lm", "auto_map": {"AutoConfig": "conf.CustomConfig"}}')
    (folder / "conf.py").write_text("raise SystemExit('remote code ran')\n")
    args = ["model.name=hf-causal", f"model.pretrained={folder}"]
    assert main(["validate", *args]) == 2
    err = capsys.readouterr().err
    assert "ships its own code, which runs only with model.trust_remote_code: true" in err
    cfg = load_config(overrides=[*args, "model.trust_remote_code=true"])
    assert notices(cfg) == [f"model.trust_remote_code is on: code shipped with '{folder}' will "
                            "run on this machine"]
    assert notices(load_config()) == []


def test_template_placeholders():
    from ouroboros.config import ConfigError, load_config
    assert load_config(overrides=["task.template='{source} {{literal}} Summary:'"])
    with pytest.raises(ConfigError, match=r"task.template: template: \{document\} is not a "
                                          r"placeholder"):
        load_config(overrides=["task.template='{source} {document}'"])
