"""Reports are made from the run directory alone."""

import csv
import html
import subprocess
import sys

import pytest

from ouroboros.experiment.rundir import METRIC_COLUMNS
from ouroboros.metrics.signature import MetricValue
from ouroboros.report.html import render_report
from ouroboros.report.tables import read_metrics, summary_table


def _write(run_dir, rows):
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def _rows():
    rows = []
    for policy, slope in (("replace", 2.0), ("accumulate", 0.5)):
        for seed in (0, 1):
            for g in range(3):
                rows.append({"cell": f"{policy}-s{seed}", "policy": policy, "seed": seed,
                             "generation": g, "metric": "perplexity",
                             "value": 10 + slope * g + seed, "higher_is_better": False,
                             "signature": f"perplexity|v1|n=5|seed={seed}"})
    return rows


def test_summary_and_html(tmp_path):
    _write(tmp_path, _rows())
    table = summary_table(read_metrics(tmp_path))
    assert "replace" in table and "10.5 -> 14.5" in table and "2 seed(s)" in table
    path = render_report(tmp_path)
    page = path.read_text()
    assert "perplexity|v1|n=5" in page and "minus replace, g2" in page
    assert not list((tmp_path / "report").glob("*.png"))  # static figures only when asked
    figures = _figures(page)
    (key,) = [f for f in figures.values() if "perplexity" in f["layout"]["title"]["text"]]
    # With 3 seeds or fewer the band is the seeds' range (seeds 14 and 15 at generation 2),
    # not an interval (a t-interval with 2 seeds would be 14.5 +- 6.353).
    band = next(t for t in key["data"] if t.get("fill") == "toself" and t["name"] == "replace")
    assert band["x"] == [0, 1, 2, 2, 1, 0]
    assert band["y"][2] == 15 and band["y"][3] == 14
    assert "band: their range" in page and "no exact test can reach p &lt; 0.05" in page
    seeds = next(t for t in key["data"] if t["mode"] == "markers" and t["name"] == "replace")
    assert sorted(seeds["y"]) == sorted(r["value"] for r in _rows() if r["policy"] == "replace")
    render_report(tmp_path, formats=("png", "svg", "pdf"))
    for suffix in ("png", "svg", "pdf"):
        assert (tmp_path / "report" / f"perplexity.{suffix}").stat().st_size > 1000
    with pytest.raises(ValueError, match="'gif' is not one of png, svg, pdf"):
        render_report(tmp_path, formats=("gif",))


def _figures(page: str) -> dict:
    import json
    start = page.index('id="ouroboros-figures">') + len('id="ouroboros-figures">')
    return json.loads(page[start:page.index("</script>", start)])


def test_metrics_with_no_value_are_named_not_drawn(tmp_path):
    rows = _rows() + [{**r, "metric": "true_logprob", "value": float("nan")} for r in _rows()]
    _write(tmp_path, rows)
    page = render_report(tmp_path).read_text()
    assert "No value in any cell" in page and "true_logprob" in page
    assert all("true_logprob" not in f["layout"]["title"]["text"]
               for f in _figures(page).values())


def test_html_shows_each_signature_whole_and_escaped(tmp_path):
    sig = MetricValue("perplexity", 1.0, 1, 5, 0, {"label": "<b>&", "sacrebleu": "a|b"}).signature
    _write(tmp_path, [{**r, "signature": sig} for r in _rows()])
    text = render_report(tmp_path).read_text()
    assert html.escape(sig) in text and "<b>&" not in text


def test_missing_metrics_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        render_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        render_report(tmp_path / "typo")


def test_report_never_imports_the_experiment_package():
    code = ("import sys, ouroboros.report.html, ouroboros.report.plots; "
            "assert not [m for m in sys.modules if m.startswith('ouroboros.experiment')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_policy_gets_its_own_line_style():
    from ouroboros.report.plots import policy_styles
    for n in (3, 10, 13, 25):
        styles = policy_styles([f"p{i}" for i in range(n)])
        assert len({(s["color"], s["linestyle"]) for s in styles.values()}) == n


def test_console_tables_fit_80_columns_without_losing_a_value(tmp_path):
    from ouroboros.report.tables import paired_table
    rows = []
    names = [f"metric_number_{k}" for k in range(7)]
    for policy in ("replace", "accumulate-subsample+human-first-transformer-ordering"):
        for seed in (0, 1, 2):
            for g in (0, 1):
                for k, m in enumerate(names):
                    rows.append({"cell": f"{policy}-s{seed}", "policy": policy, "seed": seed,
                                 "generation": g, "metric": m,
                                 "value": 1000.123 + k + g + seed / 7,
                                 "higher_is_better": "True", "signature": f"{m}|v1"})
    _write(tmp_path, rows)
    rows = read_metrics(tmp_path)
    for text in (summary_table(rows, names), paired_table(rows, names)):
        assert max(len(line) for line in text.splitlines()) <= 80, text
    summary = summary_table(rows, names)
    assert all(m in summary for m in names)
    assert summary.count("accumulate-subsample+human-first-transformer-ordering") >= 2
    paired = paired_table(rows, names)
    assert paired.count("not significant (n=3 cannot reach p<0.05)") == len(names)


def test_n_examples_is_per_cell_and_a_range_where_seeds_differ(tmp_path):
    rows = _rows()
    for r in rows:  # replace's seeds score different numbers of examples
        if r["policy"] == "replace":
            r["signature"] = r["signature"].replace("n=5", f"n={5 + 2 * r['seed']}")
    rows.append({**rows[0], "seed": 2, "value": 11.0, "generation": 0,  # one seed only
                 "cell": "replace-s2", "signature": "perplexity|v1|n=5|seed=2"})
    _write(tmp_path, rows)
    page = render_report(tmp_path).read_text()
    summary = page.split("Summary: generation 0 and generation 2", 1)[1].split("</table>")[0]
    cells = {}
    for line in summary.split("<tr>")[2:]:
        tds = [c.split(">", 1)[1].split("<", 1)[0] for c in line.split("<td")[1:]]
        cells[tds[4]] = tds[-1]
    assert cells == {"replace": "5\u20137", "accumulate": "5"}
    assert "each value over 5\u20137 examples" in page


def test_sort_keys_are_what_javascript_parsefloat_reads():
    import math

    from ouroboros.report.html import _table
    table = _table(["interval"], [[("none (n=1)", math.inf)], [("x", -math.inf)],
                                  [("y", math.nan)], [("z", 0.5)]])
    keys = [c.split("'")[0] for c in table.split("data-v='")[1:]]
    assert keys == ["Infinity", "-Infinity", "", "0.5"]


def test_names_reach_plotly_as_text_never_inside_a_hover_template(tmp_path):
    rows = _rows()
    for r in rows:
        r["policy"] = r["policy"].replace("replace", 'say "hi" %{y} <b>')
    _write(tmp_path, rows)
    figures = _figures(render_report(tmp_path).read_text())
    traces = [t for f in figures.values() for t in f["data"]]
    assert {t["name"] for t in traces} >= {'say "hi" %{y} &lt;b&gt;', "accumulate"}
    templates = [t["hovertemplate"] for t in traces if "hovertemplate" in t]
    assert templates and all("%{fullData.name}" in t and "hi" not in t for t in templates)


def test_metrics_written_back_by_pandas_are_read(tmp_path):
    """pandas writes NaN as an empty field and may write whole numbers as 3.0."""
    rows = _rows()
    rows[0]["value"] = ""
    rows[1]["seed"] = "0.0"
    _write(tmp_path, rows)
    read = read_metrics(tmp_path)
    assert read[0]["value"] != read[0]["value"] and read[1]["seed"] == 0
    render_report(tmp_path)


@pytest.mark.parametrize(("edit", "where"), [
    (lambda t: t.replace("perplexity|v1|n=5|seed=0", "x", 1).replace(",0,", ",zero,", 1),
     "metrics.csv:2:"),
    (lambda t: t.replace("cell,", "", 1), "metrics.csv:1: no column cell"),
    (lambda t: t.rsplit("\n", 3)[0] + "\nreplace-s1,replace,1", "metrics.csv:12:")])
def test_a_hand_edited_or_cut_metrics_file_is_one_error_with_its_line(tmp_path, edit, where):
    from ouroboros.report.tables import MetricsFileError
    _write(tmp_path, _rows())
    path = tmp_path / "metrics.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(MetricsFileError, match=where):
        read_metrics(tmp_path)


def test_terminal_escapes_in_a_metrics_file_are_refused(tmp_path):
    from ouroboros.report.tables import MetricsFileError
    rows = _rows()
    rows[3]["policy"] = "replace\x1b[2J\x1b[31m"
    _write(tmp_path, rows)
    with pytest.raises(MetricsFileError, match=r"metrics.csv:5: a control character \(U\+001B\)"):
        read_metrics(tmp_path)


def test_a_huge_generation_number_gets_no_tick_per_generation(tmp_path):
    from ouroboros.report.figures import metric_figure
    rows = _rows()
    for r in rows:
        r["generation"] = r["generation"] * 499_999_999
    _write(tmp_path, rows)
    figure = metric_figure(read_metrics(tmp_path), "perplexity", "")
    assert "dtick" not in figure["layout"]["xaxis"]
    _write(tmp_path, _rows())
    assert metric_figure(read_metrics(tmp_path), "perplexity", "")["layout"]["xaxis"]["dtick"] == 1


def test_the_samples_table_keeps_lines_with_unicode_line_separators(tmp_path):
    import json

    from ouroboros.report.html import _preview_rows
    row = {"policy": "replace", "text": "a\u2028b\x85c", "generation": 0, "seed": 0, "slot": 0,
           "reference_perplexity": 1.0, "valid": True}
    path = tmp_path / "samples_preview.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    rows, bad = _preview_rows(path)
    assert bad == 0 and rows[0]["text"] == "a\u2028b\x85c"


def test_a_metrics_file_cut_mid_character_or_with_a_huge_cell_is_one_error(tmp_path):
    from ouroboros.report.tables import MetricsFileError
    _write(tmp_path, _rows())
    path = tmp_path / "metrics.csv"
    path.write_bytes(path.read_bytes() + "replace-s0,r\u00e9".encode()[:-1])
    with pytest.raises(MetricsFileError, match=r"metrics.csv:14: not valid UTF-8"):
        read_metrics(tmp_path)
    _write(tmp_path, _rows())
    path.write_text(path.read_text().replace("perplexity|v1|n=5|seed=0", "x" * 200_000, 1))
    assert len(read_metrics(tmp_path)) == 12  # a long cell is read, not a traceback


def test_the_headline_says_how_models_start_from_the_config(tmp_path):
    _write(tmp_path, _rows())
    config = tmp_path / "config.yaml"
    base = "name: x\ntask: {name: lm}\ndata: {source: grammar}\nmodel: {name: tiny-gpt2}\n"
    config.write_text(base)
    assert "trained from scratch every generation" in render_report(tmp_path).read_text()
    config.write_text(base + "training: {init: previous}\n")
    page = render_report(tmp_path).read_text()
    assert ("generation 0 trained from scratch, each later one from the previous generation"
            in page)


def _policies_rows(values: dict[str, list[float]], metric="kl_true_model", hib=False):
    rows = []
    for policy, vs in values.items():
        for seed, v in enumerate(vs):
            for g in (0, 1):
                rows.append({"cell": f"{policy}-s{seed}", "policy": policy, "seed": seed,
                             "generation": g, "metric": metric,
                             "value": 1.0 if g == 0 else v, "higher_is_better": hib,
                             "signature": f"{metric}|v1|n=5|seed={seed}"})
    return rows


def test_verdicts_come_from_the_run_and_only_where_the_test_carries_them(tmp_path):
    from ouroboros.report.tables import verdicts
    six = [3.0, 3.2, 2.9, 3.5, 3.1, 3.3]
    rows = (_policies_rows({"replace": six, "accumulate": [v - 1.5 for v in six],
                            "mix": [v + (0.1 if i % 2 else -0.1) for i, v in enumerate(six)]})
            + _policies_rows({"replace": six, "accumulate": six, "mix": six},
                             metric="perplexity"))
    _write(tmp_path, rows)
    rows = read_metrics(tmp_path)
    said = verdicts(rows)
    assert said[0].startswith("At generation 1, against replace (6 seeds")
    assert "each of the 4 comparisons of 2 key metrics" in said[0]
    assert "at most about 0.2 would pass by chance" in said[0]
    found = [line for line in said if line.startswith("- ") and "other" not in line]
    assert len(found) == 1, said
    assert found[0].startswith("- accumulate: lower kl_true_model (better): -1.5 on average")
    assert found[0].endswith("better on 6/6 seeds, p = 0.031.")
    assert "not shown to differ: 3 other comparison(s)" in said[-1]
    # the reference named on the command line, and a policy the run lacks
    assert verdicts(rows, baseline="accumulate")[1].startswith("- replace: higher")
    with pytest.raises(ValueError, match="no policy 'nobody'"):
        verdicts(rows, baseline="nobody")
    # 3 seeds: never a verdict, and why
    three = [r for r in rows if r["seed"] < 3]
    (line,) = verdicts(three)
    assert line.startswith("No verdict: with 3 seed(s) no exact test can reach p < 0.05")
    # the page carries them under the headline, and the console after the summary
    page = render_report(tmp_path).read_text()
    assert "accumulate: lower kl_true_model (better)" in page
    import contextlib
    import io

    from ouroboros.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(tmp_path)]) == 0
    assert "- accumulate: lower kl_true_model (better)" in out.getvalue()


def test_metrics_the_same_in_every_cell_are_named_not_drawn(tmp_path):
    rows = _rows() + [{**r, "metric": "true_entropy", "value": 7.25,
                       "signature": "true_entropy|v1|n=5"} for r in _rows()]
    _write(tmp_path, rows)
    page = render_report(tmp_path).read_text()
    assert "The same value in every cell, so not drawn (see the tables): true_entropy" in page
    figures = _figures(page)
    assert not any("true_entropy" in f["layout"]["title"]["text"] for f in figures.values()
                   if "title" in f["layout"])


def test_all_equal_seeds_are_said_not_drawn_as_a_zero_width_interval(tmp_path):
    from ouroboros.report.tables import summary_table
    rows = [{**r, "metric": "kl_true_model", "value": 2.0, "signature": "kl_true_model|v1|n=5"}
            for r in _rows()] + _rows()
    assert "2 -> 2 [all 2 seeds equal]" in summary_table(read_metrics(_write_and(tmp_path,
                                                                                 rows)))


def _write_and(path, rows):
    _write(path, rows)
    return path


def test_the_tail_figure_is_the_share_strictly_above_each_perplexity():
    from ouroboros.report.figures import ccdf_figure
    rows = [{"policy": "replace", "generation": g, "value": v}
            for g, values in ((0, [1.0, 2.0, 4.0, 8.0]), (1, [1.0, 1.0, 1.0, 100.0]))
            for v in values]
    fig = ccdf_figure(rows, "replace", "#0072B2", grid=5)
    xs = fig["data"][0]["x"]
    assert xs[0] == pytest.approx(1.0) and xs[-1] == pytest.approx(100.0)
    for trace, values in zip(fig["data"], ([1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 100.0]),
                             strict=True):
        for x, y in zip(xs, trace["y"], strict=True):
            share = sum(v > x * (1 + 1e-12) for v in values) / len(values)
            assert (y is None and share == 0) or y == pytest.approx(share), (x, y, share)
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["yaxis"]["type"] == "log"
