"""The code identity of stage kinds is computed from the source: an edit to any module a stage
kind can run re-runs its finished stages, with nothing bumped by hand (issue: after editing
``repetition_rate``, which curation runs, 0 of 41 stages were rebuilt)."""

import json
from pathlib import Path

import pytest

from ouroboros.config import load_config
from ouroboros.experiment import versions
from ouroboros.experiment.loop import plan_study
from ouroboros.experiment.stages import Stage

RECORDED = Path(__file__).with_name("metric_code.json")
DIVERSITY = "ouroboros.metrics.diversity"


@pytest.fixture
def edited(monkeypatch):
    """Replace one module's source text for the code identity (caches cleared around it)."""
    def clear():
        versions.forget()
        versions._STATE[0] = None

    def edit(module: str, change):
        real = versions._parsed
        path = versions.module_path(module)

        def parsed(p):
            source, tree = real(p)
            return (change(source), tree) if p == path else (source, tree)
        monkeypatch.setattr(versions, "_parsed", parsed)
        clear()
    yield edit
    monkeypatch.undo()
    clear()


def test_a_stage_kind_covers_what_it_imports_inside_functions_and_runs_as_scripts():
    curate = versions.closure(("ouroboros.experiment.builders.curate",))
    assert {DIVERSITY, "ouroboros.metrics.selfbleu", "ouroboros.curation.steps"} <= set(curate)
    evaluate = versions.closure(("ouroboros.experiment.builders.evaluate",))
    assert {"ouroboros.metrics.traits", "ouroboros.metrics.groundtruth"} <= set(evaluate)
    generate = versions.closure(("ouroboros.experiment.builders.generate",))
    assert "ouroboros.generation.vllm_worker" in generate  # started as a script
    train = versions.closure(("ouroboros.experiment.builders.train",))
    assert "ouroboros.training.trainer" in train and DIVERSITY not in train
    assert "ouroboros.report.html" not in set(curate) | set(evaluate) | set(train)


def test_an_edit_rebuilds_exactly_the_kinds_that_run_the_code(edited):
    before = {k: versions.version(k) for k in versions.BUILDER_MODULES}
    edited(DIVERSITY, lambda s: s.replace("return repeated / total if total else 0.0",
                                          "return repeated / max(total, 1)"))
    after = {k: versions.version(k) for k in versions.BUILDER_MODULES}
    changed = {k for k in before if before[k] != after[k]}
    assert {"curate", "evaluate"} <= changed
    assert not changed & {"train", "data", "tokenizer", "trainset"}


def test_comments_docstrings_and_layout_change_nothing(edited):
    before = versions.version("curate")
    edited(DIVERSITY, lambda s: s.replace(
        '"""Share of n-grams that repeat', '"""The share of n-grams that repeat').replace(
        "    repeated = total = 0", "    # counted over every text\n    repeated = total = 0"))
    assert versions.version("curate") == before


def test_normalized_keeps_strings_and_f_strings_whole():
    a = versions.normalized('x = f"{a}-{b}"  # note\ny = (1,\n     2)\n')
    b = versions.normalized('x = f"{a}-{b}"\ny = (1, 2)\n')
    assert a == b and 'f"{a}-{b}"' in a
    assert versions.normalized('x = "a"\n') != versions.normalized('x = "b"\n')


def test_the_code_identity_enters_the_fingerprint(edited):
    cfg = load_config(overrides=["policies=[{name: fresh, real_fraction: 0.5}, "
                                 "{name: replace, curation: [{name: dedup}]}]",
                                 "generations=2", "seeds=[0]"])
    kinds = {s.kind for s in plan_study(cfg).stages}
    assert kinds - set(versions.BUILDER_MODULES) == set()
    before = Stage("curate", "x", {"a": 1}).fp
    edited(DIVERSITY, lambda s: s + "\nEXTRA = 1\n")
    assert Stage("curate", "x", {"a": 1}).fp != before


def test_a_metric_whose_code_changed_has_a_new_version():
    """Signatures carry each metric's VERSION: a change to a metric's code must come with a new
    version, so that a signature never names two definitions."""
    recorded, now = json.loads(RECORDED.read_text()), versions.metric_code()
    stale = [m for m in now if recorded.get(m, {}).get("code") != now[m]["code"]
             and recorded.get(m, {}).get("version") == now[m]["version"]]
    assert not stale, (
        f"the code of metrics {stale} changed but their VERSION did not: bump VERSION in "
        f"their module if values can change, then record the code with "
        f"`python -m ouroboros.experiment.versions > tests/unit/metric_code.json`")
    assert recorded == now, ("re-record the metric code: `python -m "
                             "ouroboros.experiment.versions > tests/unit/metric_code.json`")


def test_every_builder_has_a_code_identity():
    from ouroboros.experiment.builders import BUILDERS
    assert set(versions.BUILDER_MODULES) == set(BUILDERS)
    for kind, entry in BUILDERS.items():
        assert versions.BUILDER_MODULES[kind].endswith("." + entry.partition(":")[0])
