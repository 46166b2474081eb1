"""report.html in a real browser (Debian's Chromium, headless, driven by Playwright, no
network): no console errors, every figure renders, sorting works, nothing is fetched, and
hostile text from a crafted run directory stays text. Screenshots are kept as test artifacts
(``OUROBOROS_TEST_ARTIFACTS``, default ``test-artifacts/``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ouroboros.experiment.rundir import METRIC_COLUMNS
from ouroboros.report.html import render_report

from ..conftest import TINY

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("OUROBOROS_TEST_ARTIFACTS",
                                Path(__file__).parents[2] / "test-artifacts"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = ["x' onload='alert(3)", "<script>alert(1)</script>", "<img src=x onerror=alert(2)>",
           "</script><script>alert(4)</script>",
           "<b>bold</b><a href='javascript:alert(5)'>link</a>"]  # markup Plotly would render


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("OUROBOROS_REQUIRE_BROWSER"):
            pytest.fail("no chromium on this machine (.ci/run installs Debian's package)")
        pytest.skip("no chromium on this machine")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def _open(browser, page_path: Path, problems: list, fetched: list):
    """A page with every console error, page error, dialog and non-file request recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda r: r.url.startswith("file:") or fetched.append(r.url))
    page.goto(page_path.as_uri())
    return page


def _open_everything(page) -> None:
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_function("document.body.dataset.figuresDrawn === "
                           "document.body.dataset.figuresTotal", timeout=30_000)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("study") / "run"
    done = subprocess.run([sys.executable, "-m", "ouroboros", "run", "--out", str(run), *TINY,
                           "seeds=[0, 1]", "policies=[{name: replace}, {name: accumulate}]",
                           "metrics.names=[perplexity, ground-truth, diversity, "
                           "reference-perplexity]", "metrics.bootstrap=0"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_a_study_report_renders_every_figure_offline(browser, study):
    run = study
    page_path = run / "report" / "report.html"
    assert page_path.stat().st_size < 2 * 2**20  # the partial Plotly bundle, not 4.8 MB
    # Samples to read: 6 per policy and generation, each judged by the language itself.
    from ouroboros.data.grammar import GroundTruthLanguage
    truth = GroundTruthLanguage()
    preview = [json.loads(line) for line in
               (run / "samples_preview.jsonl").read_text().splitlines()]
    assert len(preview) == 2 * 2 * 6  # policies x generations x samples
    assert all(r["valid"] == truth.is_valid(r["text"]) for r in preview)
    assert all(r["reference_perplexity"] > 1 for r in preview)
    problems, fetched = [], []
    page = _open(browser, page_path, problems, fetched)
    page.wait_for_function("Number(document.body.dataset.figuresDrawn) >= 4")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-top.png"))
    _open_everything(page)
    total = int(page.evaluate("document.body.dataset.figuresTotal"))
    assert total >= 10
    # Every figure drew its axes and its lines (not an empty frame).
    assert page.evaluate("document.querySelectorAll('.figure .main-svg').length") >= total
    assert page.evaluate("Array.from(document.querySelectorAll('.figure'))"
                         ".every(d => d.querySelectorAll('.scatterlayer .trace').length > 0)")
    # Sorting: clicking "n seeds" twice puts the largest first.
    table = page.locator("table.sortable").first
    header = table.locator("th", has_text="generation 0")
    header.click()
    header.click()
    column = page.evaluate("""() => { const t = document.querySelector('table.sortable');
        const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith(
            'generation 0'));
        return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i].dataset.v)); }""")
    values = [v for v in column if v == v]  # NaN-free
    assert values == sorted(values, reverse=True) and len(values) > 5
    page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
    # The tail: a complementary CDF per policy, a line per generation, log-log axes.
    tails = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.figure[data-figure^=tail]')).map(d => [d.querySelectorAll('.scatterlayer .trace')
        .length, d.querySelector('.xtitle') && d.querySelector('.xtitle').textContent])""")
    assert len(tails) == 2 and all(n == 2 for n, _ in tails), tails  # 2 generations each
    assert all("log" in title for _, title in tails)
    # Every metric figure says what its x axis is.
    titles = page.evaluate("Array.from(document.querySelectorAll('.figure[data-figure^=key] "
                           ".xtitle')).map(e => e.textContent)")
    assert titles and set(titles) == {"generation"}
    assert not any(_toolbar_overlaps(page))
    assert problems == [] and fetched == []


def _toolbar_overlaps(page) -> list[bool]:
    """Per figure with linear/log buttons: whether Plotly's toolbar lies over one of them."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.figure'))
        .filter(d => d.querySelector('.updatemenu-button')).map(d => {
          const a = d.querySelector('.modebar').getBoundingClientRect();
          return Array.from(d.querySelectorAll('.updatemenu-button')).some(b => {
            const r = b.getBoundingClientRect();
            return !(r.right <= a.left || a.right <= r.left || r.bottom <= a.top
                     || a.bottom <= r.top); }); })""")


@pytest.mark.parametrize("width", [1400, 390])
def test_the_toolbar_leaves_the_scale_buttons_free(browser, tmp_path, width):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for policy in ("replace", "accumulate"):
            for seed in range(4):
                for g in range(3):
                    writer.writerow({"cell": f"{policy}-s{seed}", "policy": policy,
                                     "seed": seed, "generation": g, "metric": "perplexity",
                                     "value": 2.0 * 5 ** g + seed, "higher_is_better": "False",
                                     "signature": "perplexity|v1|n=3"})
    problems = []
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(render_report(run).as_uri())
    _open_everything(page)
    page.hover(".figure[data-figure=key0]")  # the toolbar shows on hover
    overlaps = _toolbar_overlaps(page)
    assert overlaps and not any(overlaps)
    # ... and the buttons work: log switches the axis
    page.locator(".figure[data-figure=key0] .updatemenu-button", has_text="log").click()
    page.wait_for_timeout(300)
    assert page.evaluate("document.querySelector('.figure[data-figure=key0]')"
                         ".layout.yaxis.type") == "log"
    assert problems == []


def test_the_page_fits_a_phone(browser, study):
    """At 390 px nothing is wider than the screen: cards, titles and figures fit, and wide
    tables scroll inside their own box."""
    problems = []
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((study / "report" / "report.html").as_uri())
    _open_everything(page)
    page.wait_for_timeout(500)  # responsive figures resize after drawing
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter(e => !e.closest('.scroll, pre') && e.getBoundingClientRect().right > 391)
        .map(e => e.tagName + '.' + e.className).slice(0, 5)""")
    assert width <= 390 and wide == [], (width, wide)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-phone.png"))
    assert problems == []


def test_hostile_text_from_a_crafted_run_stays_text(browser, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for i, name in enumerate(HOSTILE):
            for seed in (0, 1):
                for g in (0, 1):
                    writer.writerow({"cell": f"{name}-s{seed}", "policy": name, "seed": seed,
                                     "generation": g, "metric": name,
                                     "value": 1.0 + i + g + seed / 10, "higher_is_better": "True",
                                     "signature": f"{name}|v1|n=3|unit={name}"})
    (run / "config.yaml").write_text(f"name: '{HOSTILE[3]}'\n")
    (run / "samples_preview.jsonl").write_text("".join(
        json.dumps({"policy": name, "seed": 0, "generation": 0, "slot": 0, "prompt": name,
                    "text": name, "curation": name, "generator": name}) + "\n"
        for name in HOSTILE))
    problems, fetched = [], []
    page = _open(browser, render_report(run), problems, fetched)
    _open_everything(page)
    text = page.inner_text("body")
    assert all(name in text for name in HOSTILE)
    samples = page.evaluate("Array.from(document.querySelectorAll('td.sample'))"
                            ".map(e => e.textContent)")
    assert all(any(s.startswith(name) for s in samples) for name in HOSTILE)
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 3
    # Figure titles and legends show the names as text too.
    legends = page.evaluate("Array.from(document.querySelectorAll('.legendtext'))"
                            ".map(e => e.textContent)")
    assert HOSTILE[2] in legends and HOSTILE[4] in legends
    assert page.evaluate("document.querySelectorAll('a[href^=javascript]').length") == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-hostile.png"))
    assert problems == [] and fetched == []


def test_compare_of_two_runs_renders_offline(browser, study, tmp_path):
    from ouroboros.report.compare import render_compare
    other = tmp_path / "after"
    shutil.copytree(study, other, ignore=shutil.ignore_patterns("stages", "report"))
    with open(study / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(other / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows({**r, "value": float(r["value"]) * 1.1} for r in rows)
    import yaml
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["training"]["epochs"] = 2
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    problems, fetched = [], []
    page = _open(browser, render_compare([study, other], tmp_path / "compare.html"), problems,
                 fetched)
    _open_everything(page)
    assert int(page.evaluate("document.body.dataset.figuresTotal")) >= 5
    assert page.evaluate("Array.from(document.querySelectorAll('.figure'))"
                         ".every(d => d.querySelectorAll('.scatterlayer .trace').length > 0)")
    assert "training.epochs" in page.inner_text("body")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    assert problems == [] and fetched == []
