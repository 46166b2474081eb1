"""The self-contained ``report.html`` (plots embedded) and the console summary of a run."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ouroboros.atomic import write_atomic
from ouroboros.report.plots import plot_all, plot_sample_perplexity
from ouroboros.report.tables import (
    KEY_METRICS,
    Summary,
    headline,
    ordered,
    paired_table,
    policies_in_order,
    read_metrics,
    read_slices,
    slice_summary,
    summarise,
    summary_table,
)


def _table_html(rows: list[dict], metrics: list[str]) -> str:
    stats = summarise(rows)
    gens = sorted({r["generation"] for r in rows})
    out = ["<table><tr><th>policy</th><th>metric</th>"
           + "".join(f"<th>g{g}</th>" for g in gens) + "</tr>"]
    for policy in policies_in_order(rows):
        for m in metrics:
            cells = []
            for g in gens:
                s = stats.get((policy, m, g))
                cells.append(f"<td title='{html.escape(_tooltip(s))}'>{s.mean:.4g} "
                             f"<small>(n={s.n_seeds})</small></td>" if s else "<td></td>")
            out.append(f"<tr><td>{html.escape(policy)}</td><td>{html.escape(m)}</td>"
                       + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _tooltip(s: Summary) -> str:
    """Median, range and the t-interval of the mean over seeds, each named for what it is."""
    iv = s.interval
    ci = f"{iv.label}: {iv.low:.4g} .. {iv.high:.4g}" if iv.n >= 2 else iv.label
    return f"{s.n_seeds} seeds; median {s.median:.4g}; range {s.low:.4g} .. {s.high:.4g}; {ci}"


def _composition_html(run_dir: Path) -> str:
    """Mean training-set size by origin per policy and generation (composition.csv)."""
    import csv
    from collections import defaultdict
    path = run_dir / "composition.csv"
    if not path.is_file():
        return "<p>(no composition.csv)</p>"
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    counts: dict[tuple, list[int]] = defaultdict(list)
    for r in rows:
        counts[(r["policy"], int(r["generation"]), r["origin"])].append(int(r["count"]))
    origins = sorted({k[2] for k in counts}, key=lambda o: (o != "real", o))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    gens = sorted({k[1] for k in counts})
    out = ["<table><tr><th>policy</th><th>generation</th>"
           + "".join(f"<th>{html.escape(o)}</th>" for o in origins) + "</tr>"]
    for p in policies:
        for g in gens:
            cells = [counts.get((p, g, o)) for o in origins]
            out.append(f"<tr><td>{html.escape(p)}</td><td>{g}</td>" + "".join(
                f"<td>{sum(c) / len(c):.0f}</td>" if c else "<td></td>" for c in cells)
                + "</tr>")
    return "\n".join(out + ["</table>"])


def _slices_html(run_dir: Path) -> str:
    """Metrics by origin, generator and curation outcome (slices.csv), mean over seeds."""
    rows = read_slices(run_dir)
    if not rows:
        return "<p>(no slices.csv: metrics.slices is empty)</p>"
    header, lines = slice_summary(rows)
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
            for line in lines]
    return "\n".join(out + ["</table>"])


def render_report(run_dir: Path) -> Path:
    """Write ``report/`` (PNG per metric and report.html) from the run directory alone."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise ValueError(f"{run_dir}/metrics.csv has no rows")
    metrics = ordered(sorted({r["metric"] for r in rows}), KEY_METRICS)
    out = run_dir / "report"
    pngs = plot_all(rows, out, headline(metrics))
    if (run_dir / "sample_perplexity.csv").is_file():
        pngs.insert(0, plot_sample_perplexity(run_dir / "sample_perplexity.csv",
                                              out / "sample_perplexity_histogram.png"))
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    seeds = sorted({r["seed"] for r in rows})
    images = "\n".join(
        f"<figure><img alt='{html.escape(p.stem)}' src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'></figure>" for p in pngs)
    signatures = sorted({r["signature"] for r in rows})
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>ouroboros report: {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
figure{{display:inline-block;margin:4px}}img{{width:520px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;
text-align:right}}pre{{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}}</style>
</head><body>
<h1>ouroboros report: {html.escape(run_dir.name)}</h1>
<p>{len(policies_in_order(rows))} policies x {len(seeds)} seeds (seeds {seeds}); every value is
the mean over the seeds shown with it (n); plots shade the 95% Student-t interval of that mean
(none with a single seed), the table's tooltips give the range. Policies are compared on shared
seeds with exact tests, which cannot reach p &lt; 0.05 with fewer than 6 seeds. All metrics are
measured against real held-out data.</p>
<h2>Summary</h2><pre>{html.escape(summary_table(rows))}</pre>
<h2>Policies compared on shared seeds</h2><pre>{html.escape(paired_table(rows))}</pre>
<h2>Plots</h2>{images}
<h2>Training-set composition (examples by origin, mean over seeds)</h2>
{_composition_html(run_dir)}
<h2>Metrics by origin (mean over seeds)</h2>
<p>trainset: what generation g's model trained on, by origin; samples: what it generated, by
generator; candidates: what curation saw, by outcome (kept, or the first step that dropped
it). reference_perplexity is the median per-example perplexity under generation 0's model;
score_* are the mean curation scores.</p>
{_slices_html(run_dir)}
<h2>All values (mean over seeds; hover for the median, range and t-interval)</h2>
{_table_html(rows, metrics)}
<h2>Metric signatures</h2>
<details open><summary>{len(signatures)} distinct signatures in metrics.csv, each whole</summary>
<pre>{html.escape(chr(10).join(signatures))}</pre></details>
<h2>Config</h2><pre>{html.escape(config)}</pre>
<h2>Manifest</h2><pre>{html.escape(json.dumps(manifest, indent=2))}</pre>
</body></html>"""
    path = out / "report.html"
    write_atomic(path, doc)
    return path
