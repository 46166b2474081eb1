"""Every file a stage reads enters its fingerprint by content, and Hub names by the commit
they point to at plan time (issue: flipping a trait file's labels reused all 12 stages;
re-saving a local model folder with other weights reused all 19)."""

from pathlib import Path

import pytest

from ouroboros.config import load_config
from ouroboros.experiment import inputs
from ouroboros.experiment.plan import plan_study

SMALL = ["data.train_size=40", "data.valid_size=10", "data.test_size=20", "seeds=[0]",
         "generations=2", "policies=[{name: replace}]"]


def _fps(cfg) -> dict[tuple[str, str], str]:
    return {(s.kind, s.label): s.fp for s in plan_study(cfg).stages}


def _changed(before: dict, after: dict) -> set[str]:
    return {kind for (kind, label), fp in before.items() if after[(kind, label)] != fp}


def test_a_trait_file_enters_the_evaluations_by_content(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\nyou idiot,1\nthank you,0\n")
    cfg = load_config(overrides=[*SMALL, "metrics.names=[perplexity, traits]",
                                 f"metrics.traits=[{{trait: toxicity, scorer: classifier, "
                                 f"file: {labels}, text: text, label: label, positive: ['1']}}]"])
    before = _fps(cfg)
    labels.write_text("text,label\nyou idiot,0\nthank you,1\n")  # every label flipped
    assert _changed(before, _fps(cfg)) == {"evaluate"}


def _folder(path: Path, weights: bytes) -> Path:
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text('{"model_type": "gpt2"}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_a_local_model_folder_enters_training_by_content(tmp_path):
    folder = _folder(tmp_path / "model", b"weights one")
    cfg = load_config(overrides=[*SMALL, "model.name=hf-causal", f"model.pretrained={folder}"])
    before = _fps(cfg)
    _folder(folder, b"weights two")  # re-saved in place with other weights
    changed = _changed(before, _fps(cfg))
    assert {"tokenizer", "train", "generate", "evaluate"} <= changed
    assert "data" not in changed


def test_a_model_verifier_folder_enters_curation_by_content(tmp_path):
    folder = _folder(tmp_path / "clf", b"one")
    (tmp_path / "x.tsv").write_text("a b\tc d\n" * 60)
    (tmp_path / "y.tsv").write_text("e f\tg h\n" * 30)
    cfg = load_config(overrides=[*SMALL, "task.name=translation", "data.source=files",
                                 f"data.files.root={tmp_path}", "data.files.train=x.tsv",
                                 "data.files.test=y.tsv", "model.tokenizer=bpe",
                                 "metrics.names=[perplexity]",
                                 f"curation=[{{name: model-verifier, model: {folder}}}]"])
    before = _fps(cfg)
    _folder(folder, b"two")
    after = _fps(cfg)
    changed = {key for key, fp in before.items() if after[key] != fp}
    assert ("curate", "replace-s0-g0") in changed  # and what is built on its output:
    assert all(kind in ("curate", "slice") or label.endswith("g1") for kind, label in changed)


def test_hub_names_are_pinned_to_a_commit_that_loading_uses(monkeypatch):
    def resolve(commit):
        return lambda name, cache_dir=None, revision=None: f"{name}@{revision or 'main'}-{commit}"
    monkeypatch.setattr(inputs, "hub_revision", resolve("c1"))
    cfg = load_config(overrides=[*SMALL, "model.name=hf-causal", "model.pretrained=org/model"])
    pinned = inputs.pinned(cfg)
    assert pinned.model.revision == "org/model@main-c1"
    train = next(s for s in plan_study(cfg).stages if s.kind == "train")
    assert train.spec["model"]["revision"] == "org/model@main-c1"
    before = train.fp
    monkeypatch.setattr(inputs, "hub_revision", resolve("c2"))  # a push to main
    assert next(s for s in plan_study(cfg).stages if s.kind == "train").fp != before
    sha = "0123456789abcdef0123456789abcdef01234567"
    for given, expect in ((sha, sha), ("v1.0", "org/model@v1.0-c2")):  # a tag: its commit
        cfg = load_config(overrides=[*SMALL, "model.name=hf-causal",
                                     "model.pretrained=org/model", f"model.revision={given}"])
        assert inputs.pinned(cfg).model.revision == expect


def test_a_run_writes_its_pins_into_config_yaml(monkeypatch, tmp_path):
    """resume and status read config.yaml: the commit must be there, not resolved again."""
    from ouroboros.experiment import loop
    monkeypatch.setattr(inputs, "hub_revision", lambda name, cache_dir=None, revision=None: "c1")
    seen = {}

    def stop(cfg, run_dir):
        seen["cfg"] = cfg
        raise RuntimeError("stop before work")
    monkeypatch.setattr(loop, "preflight", stop)
    cfg = load_config(overrides=[*SMALL, "model.name=hf-causal", "model.pretrained=org/model"])
    with pytest.raises(RuntimeError, match="stop before work"):
        loop.run_study(cfg, tmp_path / "run")
    assert seen["cfg"].model.revision == "c1"  # what preflight, plan and config.yaml get


def test_hub_revision_from_the_local_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "models--org--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    assert inputs.hub_revision("org/tiny", str(tmp_path)) == commit
    assert inputs.hub_revision("org/absent", str(tmp_path)) is None


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_local_digest_follows_content_not_place(tmp_path, kind):
    a = _folder(tmp_path / "a", b"x") if kind == "folder" else tmp_path / "a.bin"
    b = _folder(tmp_path / "b", b"x") if kind == "folder" else tmp_path / "b.bin"
    if kind == "file":
        a.write_bytes(b"x")
        b.write_bytes(b"x")
    assert inputs.local_digest(str(a)) == inputs.local_digest(str(b))
    assert inputs.local_digest("org/not-a-path") is None


def test_an_edited_test_file_re_runs_evaluations_and_retrains_nothing(tmp_path):
    (tmp_path / "train.txt").write_text("".join(f"line {i} of text here\n" for i in range(80)))
    (tmp_path / "test.txt").write_text("".join(f"test {i} of text\n" for i in range(20)))
    cfg = load_config(overrides=[*SMALL, "data.source=files", f"data.files.root={tmp_path}",
                                 "data.files.train=train.txt", "data.files.test=test.txt",
                                 "model.tokenizer=bpe", "metrics.names=[perplexity]"])
    before = _fps(cfg)
    (tmp_path / "test.txt").write_text("".join(f"other {i} of text\n" for i in range(20)))
    assert _changed(before, _fps(cfg)) == {"test", "evaluate"}
    (tmp_path / "train.txt").write_text("".join(f"line {i} of prose\n" for i in range(80)))
    assert {"data", "train", "test"} <= _changed(before, _fps(cfg))


def test_a_stage_is_not_built_from_inputs_or_code_that_changed_since_planning(tmp_path,
                                                                              monkeypatch):
    """Identities are taken when the study is planned; a model folder re-saved, or a module
    edited, while the run goes must not be built under the old identity."""
    from ouroboros.config import DataConfig, RuntimeConfig
    from ouroboros.experiment import executors, stages
    from ouroboros.experiment.stages import Stage
    folder = _folder(tmp_path / "model", b"weights one")
    spec = {"model": {"pretrained": str(folder)}}
    stage = Stage("train", "x", {**spec, **inputs.model_files(spec["model"], "model.pretrained")})
    stage.fp  # planned  # noqa: B018
    _folder(folder, b"weights two")
    with pytest.raises(inputs.InputChanged, match="model.pretrained: .* changed since"):
        executors.build_stage(stage, str(tmp_path / "run"), RuntimeConfig(), DataConfig(),
                              {}, configure=False)
    code = Stage("data", "y", {"a": 1})
    code.fp  # noqa: B018
    monkeypatch.setattr(stages, "version", lambda kind: "edited since")
    with pytest.raises(executors.CodeChanged, match="changed since this run was planned"):
        executors.build_stage(code, str(tmp_path / "run"), RuntimeConfig(), DataConfig(), {},
                              configure=False)
