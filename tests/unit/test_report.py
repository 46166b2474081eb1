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
    html = path.read_text()
    assert "data:image/png;base64," in html and "perplexity|v1|n=5" in html
    assert "95% t-interval, n=2: " in html  # tooltips name the interval and its n
    assert (tmp_path / "report" / "perplexity.png").stat().st_size > 1000


def test_html_shows_each_signature_whole_and_escaped(tmp_path):
    sig = MetricValue("perplexity", 1.0, 1, 5, 0, {"label": "<b>&", "sacrebleu": "a|b"}).signature
    _write(tmp_path, [{**r, "signature": sig} for r in _rows()])
    text = render_report(tmp_path).read_text()
    assert html.escape(sig) in text and "<b>&" not in text


def test_missing_metrics_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        render_report(tmp_path)


def test_report_never_imports_the_experiment_package():
    code = ("import sys, ouroboros.report.html, ouroboros.report.plots; "
            "assert not [m for m in sys.modules if m.startswith('ouroboros.experiment')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_policy_gets_its_own_line_style():
    from ouroboros.report.plots import policy_styles
    for n in (3, 10, 13, 25):
        styles = policy_styles([f"p{i}" for i in range(n)])
        assert len({(s["color"], s["linestyle"]) for s in styles.values()}) == n
