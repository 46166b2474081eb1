"""`ouroboros compare`: runs aligned by policy and generation, planted differences recovered
with their paired intervals, differing settings listed, runs that cannot align refused."""

import csv

import pytest

from ouroboros.cli import main
from ouroboros.experiment.rundir import METRIC_COLUMNS
from ouroboros.report.compare import (
    CompareError,
    align,
    compare_text,
    config_differences,
    differences,
    render_compare,
    signature_differences,
)
from ouroboros.report.tables import read_metrics


def _run(path, policies=("replace", "mix-0.1"), seeds=(0, 1, 2), shift=0.0, epochs=1,
         metric="perplexity"):
    path.mkdir(parents=True)
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        for p in policies:
            for s in seeds:
                for g in (0, 1, 2):
                    w.writerow({"cell": f"{p}-s{s}", "policy": p, "seed": s, "generation": g,
                                "metric": metric, "value": 10 + g * s + shift + s * s,
                                "higher_is_better": "False",
                                "signature": f"{metric}|v2|n=9|unit=token"})
    (path / "config.yaml").write_text(f"name: x\ntraining:\n  epochs: {epochs}\n  lr: 0.01\n"
                                      f"runtime:\n  threads: 2\n  vllm:\n    python: null\n")
    return path


def test_a_planted_shift_is_recovered_paired_by_seed(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", shift=1.5, epochs=2)
    runs = {"a": read_metrics(a), "b": read_metrics(b)}
    policies, gens, metrics = align(runs)
    assert (policies, gens, metrics) == (["replace", "mix-0.1"], [0, 1, 2], ["perplexity"])
    rows = differences(runs, policies, gens, metrics)
    assert len(rows) == 2 * 3
    for r in rows:  # every seed moved by exactly 1.5: said so, not a zero-width interval
        assert r["difference"] == pytest.approx(1.5)
        assert r["interval"] is None and r["equal"] and r["shared"] == 3


def test_means_are_over_shared_seeds_and_one_shared_seed_has_no_interval(tmp_path):
    a, b = _run(tmp_path / "a", seeds=(0, 1)), _run(tmp_path / "b", seeds=(1, 2), shift=2.0)
    runs = {"a": read_metrics(a), "b": read_metrics(b)}
    row = next(r for r in differences(runs, ["replace"], [2], ["perplexity"]))
    assert row["shared"] == 1 and row["interval"] is None
    assert row["first"] == pytest.approx(10 + 2 + 1) and row["difference"] == pytest.approx(2)


def test_settings_that_differ_runtime_last_and_null_equals_unset(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", epochs=3)
    (b / "config.yaml").write_text((b / "config.yaml").read_text().replace(
        "threads: 2", "threads: 4").replace("    python: null\n", ""))
    assert config_differences([a, b]) == [("training.epochs", ["1", "3"]),
                                          ("runtime.threads (changes results)", ["2", "4"])]


def test_runs_that_cannot_align_are_refused_with_what_each_has(tmp_path, capsys):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", policies=("accumulate",), metric="bleu")
    with pytest.raises(CompareError, match="no policies in common .*a: mix-0.1, replace; "
                                           "b: accumulate.* and the runs have no metrics"):
        align({"a": read_metrics(a), "b": read_metrics(b)})
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.html")]) == 2
    assert "cannot align the runs" in capsys.readouterr().err
    assert not (tmp_path / "c.html").exists()


def test_cli_writes_one_page_and_a_console_that_fits(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", shift=1.0, epochs=2)
    out = tmp_path / "cmp" / "compare.html"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # every line but the one naming the page (a path is never wrapped)
    assert max(len(line) for line in text.splitlines()
               if not line.startswith("comparison: ")) <= 80
    assert "training.epochs" in text and "1 [all 3 shared seeds equal]" in text
    page = out.read_text()
    assert "ouroboros-figures" in page and "training.epochs" in page
    assert compare_text([a, b]).startswith("comparing 2 runs: a, b")
    assert render_compare([a, a], tmp_path / "same.html").is_file()  # a run with itself: 0


def test_a_cell_with_no_value_in_one_run_is_na_not_a_crash(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", shift=1.0)
    with open(b / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # b: replace at generation 2 is n/a on every seed
        if r["policy"] == "replace" and r["generation"] == "2":
            r["value"] = "nan"
    with open(b / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "c.html"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "replace  n/a (no finite value in one of the runs)" in text
    assert "mix-0.1  13.67 -> 14.67: 1 [all 3 shared seeds equal]" in text
    assert out.is_file()


def test_a_metric_computed_differently_is_named(tmp_path, capsys):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    (b / "metrics.csv").write_text((b / "metrics.csv").read_text().replace(
        "perplexity|v2|n=9", "perplexity|v3|n=7"))
    runs = {"a": read_metrics(a), "b": read_metrics(b)}
    assert signature_differences(runs, ["perplexity"]) == [
        ("perplexity", ["perplexity|v2|unit=token", "perplexity|v3|unit=token"])]
    c = _run(tmp_path / "c")  # only n differs (it varies with the samples): not named
    (c / "metrics.csv").write_text((c / "metrics.csv").read_text().replace(
        "n=9", "n=8|texts=8"))
    assert signature_differences({"a": runs["a"], "c": read_metrics(c)}, ["perplexity"]) == []
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.html")]) == 0
    assert "metric perplexity is computed differently" in capsys.readouterr().out
    assert "metric perplexity (signature)" in (tmp_path / "c.html").read_text()


def test_what_is_not_in_every_run_is_named_not_dropped(tmp_path, capsys):
    a = _run(tmp_path / "a", policies=("replace", "mix-0.1"))
    b = _run(tmp_path / "b", policies=("replace", "mix-0.2"))
    text = compare_text([a, b])
    assert "policy mix-0.1 (only in a)" in text and "policy mix-0.2 (only in b)" in text
    page = render_compare([a, b], tmp_path / "c.html").read_text()
    assert "policy mix-0.1 (only in a)" in page and "policy mix-0.2 (only in b)" in page
    same = compare_text([a, _run(tmp_path / "c")])
    assert "not in every run, so not compared:\n  (none)" in same


def test_a_long_list_in_a_refusal_is_never_cut_mid_name():
    from ouroboros.report.compare import _listed
    names = [f"metric_number_{i}" for i in range(30)]
    text = _listed(names)
    assert text.endswith("metric_number_11 and 18 more")
    assert all(part.startswith("metric_number_") for part in text.split(" and ")[0].split(", "))


def test_settings_are_listed_by_name_not_list_index(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    (a / "config.yaml").write_text("seeds: [0, 1, 2]\npolicies:\n- {name: replace}\n"
                                   "- {name: mix, real_fraction: 0.1, curation: "
                                   "[{name: dedup, threshold: 0.8}]}\n")
    (b / "config.yaml").write_text("seeds: [0, 1, 2, 3]\npolicies:\n- {name: replace}\n"
                                   "- {name: mix, real_fraction: 0.1, curation: "
                                   "[{name: dedup, threshold: 0.9}]}\n")
    assert dict(config_differences([a, b])) == {
        "policies[mix].curation[dedup].threshold": ["0.8", "0.9"],
        "seeds": ["[0, 1, 2]", "[0, 1, 2, 3]"]}
    # the most common comparison, another real fraction, is one line
    (b / "config.yaml").write_text("seeds: [0, 1, 2]\npolicies:\n- {name: replace}\n"
                                   "- {name: mix, real_fraction: 0.2, curation: "
                                   "[{name: dedup, threshold: 0.8}]}\n")
    assert config_differences([a, b]) == [("policies[mix].real_fraction", ["0.1", "0.2"])]


def test_samples_that_differ_at_generation_0_are_not_a_different_start(tmp_path):
    a = _run(tmp_path / "a", metric="distinct_2")
    b = _run(tmp_path / "b", metric="distinct_2", shift=0.5)
    for run in (a, b):  # a metric of the samples: decoding settings move it, not the model
        text = (run / "metrics.csv").read_text().replace("unit=token", "set=generated")
        (run / "metrics.csv").write_text(text)
    assert "generation 0 differs" not in compare_text([a, b])


def test_a_different_generation_0_is_flagged(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", shift=1.5)
    text = compare_text([a, b])
    assert "generation 0 differs" in text and "perplexity: replace 1.5 in b" in text
    assert "generation 0 differs" in render_compare([a, b], tmp_path / "c.html").read_text().lower()
    assert "generation 0 differs" not in compare_text([a, _run(tmp_path / "c", epochs=2)])


def test_policies_can_be_mapped_across_runs(tmp_path, capsys):
    a = _run(tmp_path / "a", policies=("replace", "mix-0.1"))
    b = _run(tmp_path / "b", policies=("replace", "mix-0.2"), shift=1.0)
    text = compare_text([a, b], {"mix-0.1": "mix", "mix-0.2": "mix"})
    assert "only in" not in text and "mix " in text
    assert main(["compare", str(a), str(b), "--map", "mix-0.1=mix-0.2",
                 "--out", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "mix-0.2" in out and "policy mix-0.1 (only in a)" not in out
    with pytest.raises(CompareError, match="no run has a policy 'nope'"):
        compare_text([a, b], {"nope": "x"})
    with pytest.raises(CompareError, match="policies mix-0.1, replace of run a would become"):
        compare_text([a, b], {"mix-0.1": "replace"})
    # disjoint seeds do not make a merge harmless
    c = _run(tmp_path / "c", policies=("replace",), seeds=(0,))
    with open(c / "metrics.csv", "a", newline="") as f:
        f.write("other-s5,other,5,0,perplexity,9,False,perplexity|v2|n=9|unit=token\n")
    with pytest.raises(CompareError, match="would become one name"):
        compare_text([c, a], {"other": "replace"})
    with pytest.raises(SystemExit) as e:
        main(["compare", str(a), str(b), "--map", "oops"])
    assert e.value.code == 2 and "give OLD=NEW" in capsys.readouterr().err
