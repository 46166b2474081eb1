"""The self-contained, interactive ``report.html`` of a run, and static figures for papers.

The page works with no network: Plotly's JavaScript (a partial bundle, assets/README.md) is
embedded, the figures are JSON in the page, and the only other script sorts tables and draws figures
when their section is opened. Layout: the study in one sentence; the key metrics as small
multiples, each with the paired comparison to the reference policy beside it; the other
metrics grouped (quality, ground truth, diversity, tails, traits, data checks) and
collapsible; then sortable tables (every cell with its unit and n), and the provenance.

Nothing from the run directory becomes markup: text is escaped, the JSON block cannot close
its script element, and Plotly gets escaped strings (figures.py).
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import yaml

from ouroboros.atomic import refuse_links, write_atomic
from ouroboros.report.figures import (
    FEW_SEEDS,
    ccdf_figure,
    colours,
    loss_figure,
    metric_figure,
)
from ouroboros.report.plots import plot_all, plot_sample_perplexity
from ouroboros.report.stats import MAX_SEEDS, min_p_value, paired_differences, seeds_needed
from ouroboros.report.tables import (
    KEY_METRICS,
    MetricsFileError,
    directions,
    headline,
    ordered,
    policies_in_order,
    read_metrics,
    read_slices,
    slice_summary,
    summarise,
    verdicts,
)

FORMATS = ("png", "svg", "pdf")

GROUPS: list[tuple[str, list[str]]] = [
    ("Exact answers", ["accuracy", "train_accuracy", "sample_accuracy", "accuracy_unparsed",
                       "train_accuracy_unparsed", "sample_accuracy_unparsed"]),
    ("Quality against real held-out data",
     ["perplexity", "cross_entropy", "continuation_perplexity", "rouge1", "rouge2", "rougeL",
      "rougeLsum", "bleu", "chrf", "length_ratio", "prediction_words", "unique_predictions"]),
    ("Samples under generation 0's model", ["reference_perplexity",
                                             "reference_perplexity_median",
                                             "reference_perplexity_p90",
                                             "reference_perplexity_p99"]),
    ("Ground truth (the built-in language)",
     ["kl_true_model", "error_rate", "true_entropy", "true_logprob"]),
    ("Diversity of the samples",
     ["mattr", "distinct_1_window", "distinct_2_window", "distinct_3_window", "distinct_1",
      "distinct_2", "distinct_3", "entropy_2", "entropy_3", "unigram_entropy", "self_bleu",
      "vocab_size", "zipf_exponent", "repetition_rate", "sample_words", "empty_rate"]),
    ("Tails", ["tail_coverage", "missing_mass", "unigram_kl", "rare_recall_"]),
    ("Traits", ["trait_"]),
    ("Data checks", ["test_oov_rate", "test_targets_cut", "unfinished_rate",
                     "empty_prediction_rate"]),
]

# Units of metrics whose signature does not name one.
UNITS = {"perplexity": "per token", "error_rate": "share of samples",
         "tail_coverage": "share of rare mass", "bleu": "BLEU (0-100)", "chrf": "chrF (0-100)",
         "self_bleu": "BLEU (0-100)", "vocab_size": "word types",
         "empty_rate": "share of samples", "empty_prediction_rate": "share of predictions",
         "mattr": "ratio", "zipf_exponent": "exponent", "length_ratio": "ratio",
         "prediction_words": "words", "sample_words": "words", "unique_predictions": "share",
         "missing_mass": "share of real tokens", "repetition_rate": "share of 4-grams",
         "unfinished_rate": "share of samples", "test_oov_rate": "share of test words",
         "test_targets_cut": "share of test targets", "true_logprob": "nats per sentence"}
UNITS.update({f"{p}{s}": unit for p, unit in (("", "share of test problems"),
                                              ("train_", "share of training problems"),
                                              ("sample_", "share of samples"))
              for s in ("accuracy", "accuracy_unparsed")})
UNIT_PREFIXES = {"distinct_": "share of n-grams", "rouge": "F1 x 100",
                 "rare_recall_": "share of rare n-grams", "trait_": "score"}

SCRIPT = r"""
(function () {
  const specs = JSON.parse(document.getElementById('ouroboros-figures').textContent);
  let drawn = 0;
  function draw(div) {
    if (div.dataset.drawn) return;
    const spec = specs[div.dataset.figure];
    Plotly.newPlot(div, spec.data, spec.layout,
                   {displaylogo: false, responsive: true,
                    modeBarButtonsToRemove: ['lasso2d', 'select2d', 'sendDataToCloud',
                                             'toggleSpikelines', 'hoverCompareCartesian',
                                             'hoverClosestCartesian', 'autoScale2d']});
    div.dataset.drawn = '1';
    drawn += 1;
    document.body.dataset.figuresDrawn = String(drawn);
  }
  function shown(div) {  // not inside a closed <details>
    for (let d = div.closest('details'); d; d = d.parentElement.closest('details')) {
      if (!d.open) return false;
    }
    return true;
  }
  function drawVisible(root) {
    root.querySelectorAll('.figure').forEach(function (div) { if (shown(div)) draw(div); });
  }
  document.querySelectorAll('details').forEach(function (d) {
    d.addEventListener('toggle', function () { if (d.open) drawVisible(d); });
  });
  drawVisible(document);
  document.body.dataset.figuresTotal = String(Object.keys(specs).length);
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, i) {
      th.addEventListener('click', function () {
        const body = table.tBodies[0];
        const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
        table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = dir;
        const key = function (row) {
          const cell = row.cells[i];
          const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
          const n = parseFloat(raw);
          return isNaN(n) ? raw : n;
        };
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = key(a), y = key(b);
          const c = (typeof x === 'number' && typeof y === 'number') ? x - y
            : String(x).localeCompare(String(y));
          return dir === 'asc' ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1.5em;max-width:1400px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}
.headline{font-size:1.05em;background:#f3f6fa;border-left:4px solid #0072B2;padding:.6em 1em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(440px,100%),1fr));
gap:14px}.cards.small{grid-template-columns:repeat(auto-fill,minmax(min(300px,100%),1fr))}
.verdicts{font-size:.95em;margin:.6em 0}.verdicts p{margin:.3em 0}.verdicts ul{margin:.2em 0}
.warn{background:#fff6e5;border-left:4px solid #E69F00;padding:.4em 1em;font-size:.95em}
.card{min-width:0}
@media (max-width:600px){body{padding:.6em}h1{font-size:1.2em;overflow-wrap:anywhere}
.headline{padding:.5em}}
code{overflow-wrap:anywhere}
.card{border:1px solid #ddd;border-radius:6px;padding:6px;background:#fff}
.note{font-size:11px;color:#555;margin:2px 6px}
.figure{min-height:300px}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600;padding:.3em 0}
table{border-collapse:collapse;font-size:12px;margin:.4em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
td.t,th.t{text-align:left}th{background:#f3f3f3}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#aaa}
table.sortable th[data-dir=asc]:after{content:" \\2191";color:#000}
table.sortable th[data-dir=desc]:after{content:" \\2193";color:#000}
.scroll{overflow-x:auto}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
table.paired{width:100%;font-size:11px}table.paired td,table.paired th{padding:2px 3px;
white-space:normal}
table.samples td.sample{white-space:normal;vertical-align:top;min-width:16em;max-width:28em;
font-family:Georgia,serif;font-size:13px}table.samples td.prompt{color:#555}
.badges{font-family:system-ui,sans-serif;font-size:10px;color:#666;margin-top:3px}
.ok{color:#1a7f37}.bad{color:#b42318}
.better{color:#1a7f37}.worse{color:#b42318}small{color:#666}
"""


def unit_of(metric: str, signature: str) -> str:
    """The unit a metric is in: its signature's ``unit=``, else what the metric is."""
    found = re.search(r"\|unit=([^|]*)", signature or "")
    if found and found.group(1).strip():
        unit = found.group(1).strip()
        return {"token": "per token"}.get(unit, unit)
    if metric in UNITS:
        return UNITS[metric]
    return next((u for p, u in UNIT_PREFIXES.items() if metric.startswith(p)), "")


def group_of(metric: str) -> str:
    """The section a metric is shown in."""
    for name, members in GROUPS:
        if any(metric == m or (m.endswith("_") and metric.startswith(m)) for m in members):
            return name
    return "Other"


def examples_behind(signatures: list[str]) -> str:
    """The examples each of these values is computed over (their signatures' ``n=``): one
    number, or the range where it differs between seeds or cells."""
    ns = sorted({int(f.group(1)) for s in signatures
                 if (f := re.search(r"\|n=(\d+)", s or ""))})
    if not ns:
        return ""
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}\u2013{ns[-1]}"


def _examples(rows: list[dict]) -> dict:
    """``examples_behind`` per metric and per (metric, policy, generation)."""
    found: dict = defaultdict(list)
    for r in rows:
        found[r["metric"]].append(r["signature"])
        found[(r["metric"], r["policy"], r["generation"])].append(r["signature"])
    return {k: examples_behind(v) for k, v in found.items()}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


def _table(header: list[str], rows: list[list], text_columns: int = 1,
           caption: str = "") -> str:
    """A sortable table; a cell is a value or (shown text, sort value)."""
    head = "".join(f"<th class='{'t' if i < text_columns else ''}'>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            shown, key = cell if isinstance(cell, tuple) else (cell, None)
            if isinstance(key, float) and not math.isfinite(key):  # what parseFloat reads
                key = "" if math.isnan(key) else ("Infinity" if key > 0 else "-Infinity")
            attr = f" data-v='{_e(key)}'" if key is not None else ""
            cls = " class='t'" if i < text_columns else ""
            cells.append(f"<td{cls}{attr}>{_e(shown)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (f"<div class='scroll'><table class='sortable'>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _study_sentence(run_dir: Path, rows: list[dict], config: dict) -> str:
    policies = policies_in_order(rows)
    seeds = sorted({r["seed"] for r in rows})
    gens = sorted({r["generation"] for r in rows})
    task = (config.get("task") or {}).get("name")
    data = (config.get("data") or {}).get("source")
    model = config.get("model") or {}
    what = ""
    if task and data and model.get("name"):  # from config.yaml, when the run has one
        start = (f"from {model['pretrained']}" if model.get("pretrained")
                 else "from scratch")
        if (config.get("training") or {}).get("init") == "previous":
            how = f"generation 0 trained {start}, each later one from the previous generation"
        else:
            how = f"trained {start} every generation"
        what = f"task {_e(task)} on {_e(data)} data, {_e(model['name'])} {_e(how)}; "
    cells = len({(r["policy"], r["seed"]) for r in rows})
    return (f"Study {_e(config.get('name', run_dir.name))}: {what}"
            f"{len(policies)} polic{'y' if len(policies) == 1 else 'ies'} "
            f"({_e(', '.join(policies))}) &times; {len(seeds)} seed(s) &times; generations "
            f"{gens[0]}&ndash;{gens[-1]} ({cells} cells). Values are means over seeds with a "
            f"95% interval of the mean that stays within what the metric can be (Student-t; "
            f"cut at 0 for positive scales; Wilson for shares; none with one seed); policies "
            f"are compared "
            f"with {_e(policies[0])} on shared seeds. Metrics of the model (perplexity, KL, BLEU, "
            f"ROUGE) are measured on real held-out data, metrics of the samples (error rate, "
            f"diversity, tails) on each generation's own samples, tails against the real "
            f"corpus.")


def _paired_html(rows: list[dict], metric: str, last: int, reference: str,
                 better: str) -> str:
    """The paired differences to the reference policy at the last generation, compact."""
    hib = {"higher": True, "lower": False}.get(better)
    pairs = paired_differences(rows, metric, last, reference, hib)
    if not pairs:
        return ""
    lines = []
    for p in pairs:
        verdict = p.verdict()
        cls = "better" if verdict.startswith("better") else (
            "worse" if verdict.startswith("worse") else "")
        interval = (f"[{_num(p.interval.low)}, {_num(p.interval.high)}]" if p.interval.shown
                    else f"[{_e(p.interval.label)}]" if p.interval.equal else "[no interval]")
        wins = f"{p.wins}/{p.n_seeds}" if hib is not None else f"-/{p.n_seeds}"
        need = seeds_needed(list(p.diffs))
        power = (str(need) if need is not None else
                 "-" if p.n_seeds < 2 or p.mean == 0 or not all(map(math.isfinite, p.diffs))
                 else f"&gt;{MAX_SEEDS}")
        lines.append(f"<tr><td class='t'>{_e(p.policy)}</td><td>{_num(p.mean)} "
                     f"<small>{interval}</small></td><td>{p.n_seeds}</td><td>{wins}</td>"
                     f"<td>{p.p_flip:.3g}</td><td class='t v {cls}' title='{_e(verdict)}'>"
                     f"{_e(verdict.split(' (')[0])}</td><td>{power}</td></tr>")
    floor = min_p_value(min(p.n_seeds for p in pairs))
    return (f"<table class='paired'><tr><th class='t'>minus {_e(reference)}, g{last}</th>"
            f"<th>mean [95% t-interval]</th><th>n</th><th>wins</th><th>p</th>"
            f"<th class='t'>verdict</th><th>seeds for 80%</th></tr>{''.join(lines)}</table>"
            f"<div class='note'>Paired on shared seeds: n seeds, wins = seeds where the policy "
            f"is better, p = exact two-sided sign-flip test; the smallest p n seeds can give "
            f"is {floor:g}. Seeds for 80%: how many seeds that test needs to reach p &lt; 0.05 "
            f"with probability 0.8 if the seeds' differences were Normal with the observed "
            f"mean and sd (a planning figure: the observed effect is an estimate).</div>")


def _band_note(stats: dict, metric: str) -> str:
    """What a metric figure's points and band are, from the seed counts and interval methods
    of its cells (``stats``: ``summarise`` of the run's rows)."""
    stats = [s for (_, m, _), s in stats.items() if m == metric]
    most = max((s.n_seeds for s in stats), default=0)
    if most < 2:
        return "one seed: no band"
    if most <= FEW_SEEDS:
        return f"points: seeds; band: their range ({most} seeds or fewer: no interval shown)"
    methods = sorted({s.interval.method for s in stats if s.interval.shown})
    equal = any(s.interval.equal for s in stats)
    few = any(2 <= s.n_seeds <= FEW_SEEDS for s in stats)
    return (f"points: seeds; band: 95% {' / '.join(methods) or 'interval'} of the mean"
            + (f", the seeds' range where a cell has {FEW_SEEDS} or fewer" if few else "")
            + ("; none where every seed gave the same value" if equal else ""))


def _interval_cell(iv) -> tuple:
    """An interval as a table cell (shown text, sort key: its width)."""
    if iv.shown:
        return (f"{_num(iv.low)} .. {_num(iv.high)}" + (" (seeds equal)" if iv.equal else ""),
                iv.high - iv.low)
    return (iv.label, math.inf)


def _tail_html(run_dir: Path, rows: list[dict], specs: dict, units: dict,
               stats: dict) -> str:
    """The tail of the samples: per policy the complementary CDF of the samples' perplexity
    under generation 0's model (a line per generation), and the percentiles, the empty share
    and the length of the samples over generations."""
    parts = []
    path = run_dir / "sample_perplexity.csv"
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            sample_rows = []
            for r in csv.DictReader(f):
                try:
                    sample_rows.append({**r, "generation": int(r["generation"]),
                                        "value": float(r["value"])})
                except (KeyError, TypeError, ValueError):
                    continue
        divs = _policy_cards(rows, sample_rows, specs, "tail", ccdf_figure)
        parts.append(f"<div class='cards'>{''.join(divs)}</div><div class='note'>Each line: "
                     f"the share of a generation's samples (seeds pooled) whose perplexity "
                     f"under generation 0's model of their seed is above x; both axes "
                     f"logarithmic, so the worst 1% is as visible as the median. Collapse "
                     f"moves the lines up and to the right (Shumailov et al. 2024, Fig. "
                     f"1b).</div>")
    present = {r["metric"] for r in rows if math.isfinite(r["value"])}
    shape = [m for m in ("reference_perplexity_median", "reference_perplexity_p90",
                         "reference_perplexity_p99", "empty_rate", "sample_words")
             if m in present]
    if shape:
        divs = []
        for m in shape:
            k = f"shape{len(specs)}"
            specs[k] = metric_figure(rows, m, units.get(m, ""), height=240)
            divs.append(f"<div class='card'>{_figure_div(k)}<div class='note'>"
                        f"{_e(units.get(m) or 'no unit')}; {_band_note(stats, m)}</div></div>")
        parts.append(f"<div class='cards small'>{''.join(divs)}</div>")
    if not parts:
        return ""
    return ("<h2>The tail of the samples</h2><p><small>Means hide collapse: the median sample "
            "can get more typical while the worst get far worse, and a model that emits EOS "
            "at once writes empty samples whose perplexity is in the tens of thousands "
            "(counted apart as <code>empty_rate</code>). Lengths beside diversity: pooled "
            "distinct-n rises when samples only get shorter, so the key figures use "
            "<code>mattr</code> and <code>distinct_n_window</code>.</small></p>"
            + "".join(parts))


def _policy_cards(rows: list[dict], found: list[dict], specs: dict, prefix: str,
                  figure) -> list[str]:
    """A card per policy of ``found`` (rows with a ``policy``), its figure ``figure(found,
    policy, colour)`` added to ``specs``; colours as in the metric figures."""
    policies = list(dict.fromkeys(r["policy"] for r in found))
    order = policies_in_order(rows)
    colour = colours(order + [p for p in policies if p not in order])
    cards = []
    for p in policies:
        key = f"{prefix}{len(specs)}"
        specs[key] = figure(found, p, colour[p])
        cards.append(f"<div class='card'>{_figure_div(key)}</div>")
    return cards


def _training_html(run_dir: Path, rows: list[dict], specs: dict) -> str:
    """Per policy, the training-loss curves of every generation (training.csv)."""
    path = run_dir / "training.csv"
    if not path.is_file():
        return ""
    curves = []
    with open(path, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            try:
                curves.append({"policy": r["policy"], "generation": int(r["generation"]),
                               "step": int(r["step"]), "epoch": int(r["epoch"]),
                               "train_loss": float(r["train_loss"] or "nan"),
                               "valid_loss": float(r.get("valid_loss") or "nan")})
            except (KeyError, TypeError, ValueError):
                continue
    if not curves:
        return ""
    divs = _policy_cards(rows, curves, specs, "loss", loss_figure)
    return (f"<details><summary>Training curves ({len(divs)} policies)</summary>"
            f"<div class='note'>Mean training loss over seeds per epoch (nats per token, "
            f"the loss-masked positions), a line per generation; dotted: validation loss "
            f"where measured (training.csv).</div><div class='cards'>{''.join(divs)}</div>"
            f"</details>")


def _summary_rows(rows: list[dict], metrics: list[str], units: dict[str, str],
                  examples: dict) -> list[list]:
    stats = summarise(rows)
    better = directions(rows)
    last = max(r["generation"] for r in rows)
    out = []
    for m in metrics:
        for p in policies_in_order(rows):
            a, b = stats.get((p, m, 0)), stats.get((p, m, last))
            if b is None:
                continue
            iv = b.interval
            out.append([group_of(m), m, units[m], better.get(m) or "-", p,
                        (_num(a.mean), a.mean) if a else "", (_num(b.mean), b.mean),
                        _interval_cell(iv), iv.method if iv.shown else "",
                        b.n_seeds, examples.get((m, p, last), "")])
    return out


def _all_values_rows(rows: list[dict], metrics: list[str], units: dict[str, str],
                     examples: dict) -> list[list]:
    stats = summarise(rows)
    out = []
    for (p, m, g), s in sorted(stats.items(), key=lambda kv: (metrics.index(kv[0][1])
                                                             if kv[0][1] in metrics else 1e9,
                                                             kv[0][0], kv[0][2])):
        iv = s.interval
        out.append([m, units.get(m, ""), p, g, (_num(s.mean), s.mean), (_num(s.median), s.median),
                    f"{_num(s.low)} .. {_num(s.high)}", _interval_cell(iv),
                    iv.method if iv.shown else "", s.n_seeds, examples.get((m, p, g), "")])
    return out


def _composition_table(run_dir: Path) -> str:
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
    body = []
    for p in policies:
        for g in gens:
            cells = [counts.get((p, g, o)) for o in origins]
            n = max((len(c) for c in cells if c), default=0)
            body.append([p, g, *[(f"{sum(c) / len(c):.0f}", sum(c) / len(c)) if c else ""
                                 for c in cells], n])
    return _table(["policy", "generation", *[f"{o} (examples)" for o in origins], "n seeds"],
                  body, caption="Training-set composition: examples by origin, mean over seeds")


def _slices_table(run_dir: Path) -> str:
    rows = read_slices(run_dir)
    if not rows:
        return "<p>(no slices.csv: metrics.slices is empty)</p>"
    header, lines = slice_summary(rows)
    seeds = len({r["seed"] for r in rows})
    return _table(header, [[line[0], *line[1:4], *[(c, c) if c else "" for c in line[4:]]]
                           for line in lines], text_columns=4,
                  caption=f"Metrics by origin, mean over {seeds} seed(s)")


def _mean_table(path: Path, keys: list[str], values: list[str], caption: str) -> str:
    """Means over seeds of the numeric ``values`` of a per-cell CSV, by ``keys``; "" when the
    file is absent or has no rows."""
    if not path.is_file():
        return ""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k, "") for k in keys)].append(r)
    body = []
    for key, members in groups.items():
        line: list = list(key)
        for v in values:
            numbers = []
            for r in members:
                try:
                    numbers.append(float(r.get(v) or "nan"))
                except ValueError:
                    numbers.append(math.nan)
            numbers = [x for x in numbers if math.isfinite(x)]
            mean = sum(numbers) / len(numbers) if numbers else math.nan
            line.append((_num(mean), mean))
        body.append([*line, len(members)])
    return _table([*keys, *values, "n seeds"], body, text_columns=len(keys),
                  caption=caption) if body else ""


def _self_improvement_html(run_dir: Path) -> str:
    """Seed problems fixed and broken between generations (transitions.csv), what a teacher
    was asked, accepted and cost (teacher.csv), and back-translated pairs made and kept
    (backtranslation.csv); "" for studies with none of them."""
    moves = _mean_table(
        run_dir / "transitions.csv", ["policy", "generation", "problems"],
        ["n", "fixed", "broken", "still_wrong", "still_right"],
        "Real training problems between model g-1 and model g, mean over seeds: fixed (wrong, "
        "then right), broken (right, then wrong); where a teacher writes the data, apart for "
        "the problems it was shown in generation g-1")
    taught = _mean_table(
        run_dir / "teacher.csv", ["policy", "generation", "target"],
        ["wrong", "quota", "short", "prompted", "replies", "accepted", "unparsed",
         "unfinished", "no_answer", "held_out_problem", "duplicate", "over_quota",
         "teacher_right", "requests", "prompt_tokens", "completion_tokens",
         "paid_completion_tokens", "cached", "seconds"],
        "The teacher per generation, mean over seeds: seed examples the student got wrong "
        "(the random control: the count it matches, and by how many it fell short), shown, "
        "replies, accepted and refused by reason, the share of accepted answers that are "
        "right (arithmetic: checked exactly), and its cost")
    made = _mean_table(
        run_dir / "backtranslation.csv", ["policy", "generation", "direction"],
        ["pairs", "kept", "new_tokens", "seconds", "backward_train_seconds"],
        "Back-translated (or forward) pairs per generation, mean over seeds: made, kept by "
        "self-curation, and their cost")
    if not (moves or taught or made):
        return ""
    parts = [f"<details open><summary>Seed problems fixed and broken</summary>{moves}</details>"
             if moves else "",
             f"<details open><summary>Teacher (LLM2LLM)</summary>{taught}</details>"
             if taught else "",
             f"<details open><summary>Back-translation</summary>{made}</details>"
             if made else ""]
    return ("<h2>Self-improvement</h2><p><small>Accuracy per generation is in the figures "
            "above; here is what moved underneath it. Teacher examples beside the seed "
            "example shown are under Samples.</small></p>" + "".join(parts))


def _samples_html(run_dir: Path) -> str:
    """Per policy, a handful of samples of each generation side by side (the same prompt in
    a row where samples have prompts), with what is known of each (samples_preview.jsonl)."""
    path = run_dir / "samples_preview.jsonl"
    if not path.is_file():
        return "<p>(no samples_preview.jsonl in this run)</p>"
    rows, bad = _preview_rows(path)
    if not rows:
        return f"<p>(no readable samples in samples_preview.jsonl; {bad} malformed line(s))</p>"
    note = (f"<p>{bad} malformed line(s) of samples_preview.jsonl skipped.</p>" if bad
            else "")
    out = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy]
        gens = sorted({r["generation"] for r in mine})
        slots = sorted({r["slot"] for r in mine})
        cell = {(r["slot"], r["generation"]): r for r in mine}
        prompted = any(r.get("prompt") is not None for r in mine)
        head = ("<th class='t'>prompt</th>" if prompted else "") + "".join(
            f"<th class='t'>generation {_e(g)}</th>" for g in gens)
        body = []
        for slot in slots:
            first = next(cell[(slot, g)] for g in gens if (slot, g) in cell)
            tds = [f"<td class='t sample prompt'>{_e(first.get('prompt') or '')}</td>"
                   if prompted else ""]
            for g in gens:
                r = cell.get((slot, g))
                tds.append("<td></td>" if r is None else
                           f"<td class='t sample'>{_e(r['text']) or '<small>(empty)</small>'}"
                           f"<div class='badges'>{_badges(r)}</div></td>")
            body.append("<tr>" + "".join(tds) + "</tr>")
        seed = mine[0]["seed"]
        out.append(f"<details{' open' if not out else ''}><summary>{_e(policy)} (seed {_e(seed)})"
                   f"</summary><div class='scroll'><table class='samples'><tr>{head}</tr>"
                   f"{''.join(body)}</table></div></details>")
    return note + "".join(out)


def _extremes_html(run_dir: Path, rows: list[dict]) -> str:
    """Per policy (its first seed) and generation, the samples worth reading (the highest and
    lowest perplexity under generation 0's model, empty and ungrammatical ones) with their
    length, beside real training examples of that seed."""
    from ouroboros.experiment import samples as browse
    parts = []
    for policy in policies_in_order(rows):
        seed = min(r["seed"] for r in rows if r["policy"] == policy)
        try:  # a run directory is not trusted: a malformed sample file skips this policy
            mine = list(browse.read_samples(run_dir, policy, seed))
            lines = [("real", r) for r in browse.real_examples(run_dir, seed, 3)]
            for g in sorted({r["generation"] for r in mine}):
                lines += [(f"g{g}: {why}", r) for why, r in
                          browse.extremes([r for r in mine if r["generation"] == g])]
        except (browse.SamplesError, OSError, ValueError, KeyError, TypeError, AttributeError,
                RecursionError):
            continue
        if not mine:
            continue
        body = "".join(
            f"<tr><td class='t'>{_e(why)}</td><td class='t sample'>"
            f"{_e(r['text']) if r['text'] else '<small>(empty)</small>'}</td>"
            f"<td>{_e(r['words'])}</td><td>{_num(r['reference_perplexity'])}</td>"
            f"<td class='t'>{'' if r['valid'] is None else ('yes' if r['valid'] else 'no')}"
            f"</td></tr>" for why, r in lines)
        parts.append(f"<details{' open' if not parts else ''}><summary>{_e(policy)} (seed "
                     f"{_e(seed)}): extremes per generation</summary><div class='scroll'>"
                     f"<table class='samples'><tr><th class='t'>which</th><th class='t'>"
                     f"sample</th><th>words</th><th>perplexity under g0</th><th class='t'>"
                     f"grammatical</th></tr>{body}</table></div></details>")
    if not parts:
        return ""
    return ("<p><small>The tail in words: per generation the samples generation 0's model "
            "finds least and most likely, the empty and the ungrammatical ones, beside real "
            "examples. Every sample: <code>ouroboros samples RUN --policy P --sort "
            "perplexity --reverse</code>.</small></p>" + "".join(parts))


def _preview_rows(path: Path) -> tuple[list[dict], int]:
    """The rows of samples_preview.jsonl that have the fields the table reads, with their
    types (a run directory is not trusted: a number could be markup); and how many did not."""
    rows, bad = [], 0
    # split("\n"), not splitlines(): a sample's text may hold U+2028 or U+0085, which JSON
    # leaves unescaped and splitlines() would cut a valid line at
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            ok = (isinstance(r, dict) and isinstance(r.get("policy"), str)
                  and isinstance(r.get("text"), str)
                  and all(type(r.get(k)) is int for k in ("generation", "seed", "slot"))
                  and type(r.get("reference_perplexity")) in (int, float, type(None))
                  and type(r.get("valid")) in (bool, type(None)))
        except (ValueError, RecursionError):  # not JSON, a number too long, nested too deep
            ok = False
        if ok:
            rows.append(r)
        else:
            bad += 1
    return rows, bad


def _badges(r: dict) -> str:
    badges = []
    if r.get("valid") is not None:
        badges.append("<span class='ok'>grammatical</span>" if r["valid"]
                      else "<span class='bad'>not grammatical</span>")
    if r.get("reference_perplexity") is not None:
        badges.append(f"perplexity under g0 {_num(r['reference_perplexity'])}")
    if r.get("curation"):
        cls = "ok" if r["curation"] == "kept" else "bad"
        badges.append(f"<span class='{cls}'>{_e(r['curation'])}</span>")
    if r.get("finished") is False:
        badges.append("cut at max_new_tokens")
    if r.get("generator"):
        badges.append(f"from {_e(r['generator'])}")
    return " &middot; ".join(badges)


def _figure_div(key: str) -> str:
    return f"<div class='figure' data-figure='{_e(key)}'></div>"


def _json_for_script(value: object) -> str:
    """JSON that cannot end its <script> element or open a comment."""
    return (json.dumps(value, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


ASSETS = Path(__file__).parent / "assets"


def _plotly_js() -> str:
    """Plotly.js for the page: the vendored partial bundle (scatter only is drawn; about
    1.2 MB), else the plotly package's full bundle (4.8 MB)."""
    partial = ASSETS / "plotly-basic.min.js"
    if partial.is_file():
        return partial.read_text(encoding="utf-8")
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as e:  # a core dependency: only a broken install gets here
        raise RuntimeError("the report needs the plotly package (pip install plotly)") from e
    return get_plotlyjs()


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _finite_specs(specs: dict) -> dict:
    """NaN and infinities become null (JSON has neither)."""
    def walk(v):
        if isinstance(v, float):
            return _clean(v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v
    return walk(specs)


def render_report(run_dir: Path, formats: tuple[str, ...] = (),
                  key_metrics: list[str] | None = None) -> Path:
    """Write ``report/report.html`` (and a figure per metric in each of ``formats``) from the
    run directory alone."""
    run_dir = Path(run_dir)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise MetricsFileError(f"--format: {bad[0]!r} is not one of {', '.join(FORMATS)}")
    refuse_links(run_dir)  # report/ is written: a planted link would take it outside
    rows = read_metrics(run_dir)
    if not rows:
        raise MetricsFileError(f"{run_dir}/metrics.csv has no rows")
    named = ordered(headline(sorted({r["metric"] for r in rows})), KEY_METRICS)
    finite = {r["metric"] for r in rows if math.isfinite(r["value"])}
    metrics = [m for m in named if m in finite]
    empty = [m for m in named if m not in finite]  # n/a everywhere: nothing to draw
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        sig = {r["metric"]: r["signature"] for r in rows}
        plot_all(rows, out, metrics, fmt, {m: unit_of(m, sig[m]) for m in metrics})
        if (run_dir / "sample_perplexity.csv").is_file():
            plot_sample_perplexity(run_dir / "sample_perplexity.csv",
                                   out / f"sample_perplexity_tail.{fmt}")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    config = config if isinstance(config, dict) else {}
    manifest_path = run_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except json.JSONDecodeError:
        manifest = {}
    if not metrics:
        raise ValueError(f"{run_dir}/metrics.csv has no finite value")
    signature = {r["metric"]: r["signature"] for r in rows}
    units = {m: unit_of(m, signature[m]) for m in metrics}
    examples = _examples(rows)
    better = directions(rows)
    last = max(r["generation"] for r in rows)
    reference = policies_in_order(rows)[0]
    constant = [m for m in metrics if len({r["value"] for r in rows if r["metric"] == m
                                           and math.isfinite(r["value"])}) == 1]
    drawn = [m for m in metrics if m not in constant]  # a flat line says nothing
    key = [m for m in (key_metrics or []) if m in metrics] or drawn[:6]
    stats = summarise(rows)
    seeds_at_most = max(s.n_seeds for s in stats.values())
    specs: dict[str, dict] = {}
    cards = []
    for i, m in enumerate(key):
        specs[f"key{i}"] = metric_figure(rows, m, units[m])
        cards.append(f"<div class='card'>{_figure_div(f'key{i}')}"
                     f"<div class='note'>{_e(units[m] or 'no unit')}; each value over "
                     f"{_e(examples[m] or '?')} examples; {_band_note(stats, m)}</div>"
                     f"{_paired_html(rows, m, last, reference, better.get(m, ''))}</div>")
    tail = _tail_html(run_dir, rows, specs, units, stats)
    groups: dict[str, list[str]] = defaultdict(list)
    for m in drawn:
        if m not in key:
            groups[group_of(m)].append(m)
    sections = []
    for name in [g for g, _ in GROUPS] + ["Other"]:
        if not groups.get(name):
            continue
        divs = []
        for m in groups[name]:
            k = f"m{len(specs)}"
            specs[k] = metric_figure(rows, m, units[m], height=280)
            divs.append(f"<div class='card'>{_figure_div(k)}<div class='note'>"
                        f"{_e(units[m] or 'no unit')}; n={_e(examples[m] or '?')} examples per "
                        f"value; {_band_note(stats, m)}</div></div>")
        sections.append(f"<details><summary>{_e(name)} ({len(groups[name])} metrics)</summary>"
                        f"<div class='cards'>{''.join(divs)}</div></details>")
    if constant:
        sections.append(f"<p><small>The same value in every cell, so not drawn (see the "
                        f"tables): {_e(', '.join(constant))}.</small></p>")
    if empty:
        sections.append(f"<p><small>No value in any cell (n/a, e.g. no valid sample to "
                        f"score): {_e(', '.join(empty))}.</small></p>")
    training = _training_html(run_dir, rows, specs)
    few = (f"<p class='warn'>With {seeds_at_most} seed(s) no exact test can reach p &lt; "
           f"0.05 (the smallest p is {min_p_value(seeds_at_most):g}); the figures show each "
           f"seed and, up to {FEW_SEEDS} seeds, their range.</p>"
           if min_p_value(seeds_at_most) >= 0.05 else "")
    said = verdicts(rows, key)
    items = "".join(f"<li>{_e(line[2:])}</li>" for line in said if line.startswith("- "))
    concluded = "".join(f"<p>{_e(line)}</p>" for line in said if not line.startswith("- ")) + (
        f"<ul>{items}</ul>" if items else "")
    summary = _table(["group", "metric", "unit", "better", "policy", "generation 0",
                      f"generation {last}", f"95% interval (g{last})", "method", "n seeds",
                      "n examples"], _summary_rows(rows, metrics, units, examples),
                     text_columns=5)
    all_values = _table(["metric", "unit", "policy", "generation", "mean", "median", "range",
                         "95% interval", "method", "n seeds", "n examples"],
                        _all_values_rows(rows, metrics, units, examples), text_columns=3)
    signatures = sorted({r["signature"] for r in rows})
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() \
        else ""
    figures = _json_for_script(_finite_specs(specs))
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ouroboros report: {_e(run_dir.name)}</title><style>{STYLE}</style></head><body>
<h1>ouroboros report: {_e(run_dir.name)}</h1>
<p class="headline">{_study_sentence(run_dir, rows, config)}</p>
<div class="verdicts">{concluded}</div>
{few}
<h2>Key metrics</h2>
<div class="cards">{''.join(cards)}</div>
<p><small>Hover a point for its value, its seeds and its interval; click a policy in a legend
to hide or show it; double-click to show it alone; "log" switches the y axis where values span
a wide range. Figures for papers: <code>ouroboros report RUN --format pdf</code>.</small></p>
{tail}
<h2>All metrics</h2>
{''.join(sections)}
{training}
{_self_improvement_html(run_dir)}
<h2>Samples</h2>
<p><small>What the models wrote: for each policy (its first seed), the same slots in every
generation: the same real prompt where samples have prompts, else the first samples. Each
with what is known of it: grammatical or not under the built-in language, its perplexity
under generation 0's model, its curation outcome.</small></p>
{_samples_html(run_dir)}
{_extremes_html(run_dir, rows)}
<h2>Tables</h2>
<p><small>Click a column header to sort. n seeds: the seeds behind each mean; n examples: the
examples each single value is computed over.</small></p>
<details open><summary>Summary: generation 0 and generation {last}</summary>{summary}</details>
<details><summary>Training-set composition</summary>{_composition_table(run_dir)}</details>
<details><summary>Metrics by origin, generator and curation outcome</summary>
{_slices_table(run_dir)}</details>
<details><summary>Every value (policy x metric x generation)</summary>{all_values}</details>
<h2>Provenance</h2>
<details><summary>{len(signatures)} metric signatures, each whole</summary>
<pre>{_e(chr(10).join(signatures))}</pre></details>
<details><summary>Config</summary><pre>{_e(config_text)}</pre></details>
<details><summary>Manifest</summary><pre>{_e(json.dumps(manifest, indent=2))}</pre></details>
<script type="application/json" id="ouroboros-figures">{figures}</script>
<script>{_plotly_js()}</script>
<script>{SCRIPT}</script>
</body></html>"""
    path = out / "report.html"
    write_atomic(path, doc)
    return path
