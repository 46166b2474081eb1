"""Stage code versions: changing the code behind a stage kind must be acknowledged, so that
finished stages are never silently reused after a change that alters their results."""

import json
from pathlib import Path

from ouroboros.config import load_config
from ouroboros.experiment.loop import plan_study
from ouroboros.experiment.stages import Stage
from ouroboros.experiment.versions import CODE, code_hashes

RECORDED = Path(__file__).with_name("stage_code.json")


def test_code_behind_every_stage_kind_is_unchanged_or_its_version_acknowledged():
    recorded, now = json.loads(RECORDED.read_text()), code_hashes()
    changed = [k for k in now if recorded.get(k) != now[k]]
    assert not changed, (
        f"the code behind stage kinds {changed} changed: if their results can change, bump "
        f"their version in ouroboros/experiment/versions.py; then record the code with "
        f"`python -m ouroboros.experiment.versions > {RECORDED.relative_to(Path.cwd())}`")


def test_every_planned_kind_has_a_version_and_it_enters_the_fingerprint():
    cfg = load_config(overrides=["policies=[{name: fresh, real_fraction: 0.5}, "
                                 "{name: replace, curation: [{name: dedup}]}]",
                                 "generations=2", "seeds=[0]"])
    kinds = {s.kind for s in plan_study(cfg).stages}
    assert kinds - set(CODE) == set()
    stage = Stage("train", "x", {"a": 1})
    before = stage.fp
    old = CODE["train"]
    try:
        CODE["train"] = (old[0] + 1, old[1])
        assert Stage("train", "x", {"a": 1}).fp != before
    finally:
        CODE["train"] = old
