"""``ouroboros compare RUN RUN [...]``: one report across runs (the same study before and after
a change, or two studies), aligned by policy and generation, with the differences and the
config settings that differ between the runs.

Runs are aligned on the (policy, generation) pairs and metrics they all have; runs with none
in common are refused with what each has. A difference is the later run minus the first, per
policy at each common generation; where the runs share seeds it is paired by seed, with the
95% t-interval of the mean difference (n = shared seeds), else only the difference of means.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from ouroboros.atomic import write_atomic
from ouroboros.config import BUILD_CONDITIONS
from ouroboros.report.figures import PALETTE, band_trace, rgba, text
from ouroboros.report.stats import t_interval
from ouroboros.report.tables import (
    KEY_METRICS,
    WIDTH,
    directions,
    fit_columns,
    headline,
    ordered,
    policies_in_order,
    read_metrics,
    summarise,
)

DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]


class CompareError(ValueError):
    """Runs that cannot be put side by side."""


def _labels(run_dirs: list[Path]) -> list[str]:
    """Each run's name in the comparison: its folder name, made unique."""
    names = [Path(r).name or str(r) for r in run_dirs]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def _item_name(item) -> str | None:
    """How a list item is keyed: a policy or generator by its label, else (a policy, a
    curation step) by its name; None for a plain value."""
    if not isinstance(item, dict):
        return None
    if item.get("label"):
        return str(item["label"])
    return str(item["name"]) if item.get("name") else None


def _flat(value, prefix: str = "") -> dict[str, object]:
    """A config as dotted keys; a list of plain values is one setting (``seeds: [0, 1, 2]``),
    a list of sections is keyed by each item's label or name (``policies[mix].real_fraction``:
    mix-0.1 against mix-0.2 is one line; a repeated name's later items ``[mix#2]``); null
    settings are left out, so a setting an older run's config lacks equals its null
    default."""
    if isinstance(value, list) and not any(isinstance(v, dict | list) for v in value):
        return {prefix.rstrip("."): value} if value else {}
    if isinstance(value, dict | list):
        out: dict[str, object] = {}
        if isinstance(value, dict):
            items = [(f"{prefix}{k}.", v) for k, v in value.items()]
        else:
            base, seen, items = prefix.rstrip("."), Counter(), []
            for i, v in enumerate(value):
                name = _item_name(v)
                if name is None:
                    items.append((f"{prefix}{i}.", v))
                    continue
                seen[name] += 1  # a repeated name: its second item is name#2
                key = name if seen[name] == 1 else f"{name}#{seen[name]}"
                items.append((f"{base}[{key}].", v))
        for key, v in items:
            out.update(_flat(v, key))
        return out
    return {} if value is None else {prefix.rstrip("."): value}


# Runtime settings that change results (build conditions): never "speed only".
RESULT_RUNTIME = {f"runtime.{k}" for k in BUILD_CONDITIONS}


def config_differences(run_dirs: list[Path]) -> list[tuple[str, list[str]]]:
    """(dotted key, its value in each run) for every setting that differs between the runs;
    ``runtime`` settings last, those that change results (build conditions) marked so."""
    flats = []
    for run in run_dirs:
        try:
            flats.append(_flat(yaml.safe_load((Path(run) / "config.yaml").read_text()) or {}))
        except (OSError, yaml.YAMLError):
            flats.append({})
    keys = sorted(set().union(*flats), key=lambda k: (k.startswith("runtime."), k))
    missing = "(unset)"
    return [(k + (" (changes results)" if k in RESULT_RUNTIME else ""),
             [str(f.get(k, missing)) for f in flats]) for k in keys
            if len({str(f.get(k, missing)) for f in flats}) > 1]


def signature_differences(runs: dict[str, list[dict]], metrics: list[str]
                          ) -> list[tuple[str, list[str]]]:
    """(metric, its signatures in each run) for every compared metric that the runs compute
    differently: another metric version, split, unit or method. The seed and the examples
    (``n=``, which varies with the samples, and ``texts=``, the same count) are left out; a
    different test size shows among the settings."""
    def definition(signature: str) -> str:
        return re.sub(r"\|(seed|n|texts)=[^|]*", "", signature)
    out = []
    for m in metrics:
        each = [sorted({definition(r["signature"]) for r in rows if r["metric"] == m})
                for rows in runs.values()]
        if len({tuple(e) for e in each}) > 1:
            out.append((m, [" or ".join(e) for e in each]))
    return out


def _listed(values: list, most: int = 12) -> str:
    """``a, b, c`` with at most ``most`` names, then ``and N more`` (never cut mid-name)."""
    shown = ", ".join(map(str, values[:most]))
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def align(runs: dict[str, list[dict]]) -> tuple[list[str], list[int], list[str]]:
    """(policies, generations, metrics) every run has; CompareError if the runs share none."""
    def have(rows, key):
        return {r[key] for r in rows}
    policies = set.intersection(*(have(rows, "policy") for rows in runs.values()))
    gens = set.intersection(*(have(rows, "generation") for rows in runs.values()))
    metrics = set.intersection(*({r["metric"] for r in rows if math.isfinite(r["value"])}
                                 for rows in runs.values()))
    problems = []
    for what, common, key in (("policies", policies, "policy"),
                              ("generations", gens, "generation"),
                              ("metrics", metrics, "metric")):
        if not common:
            each = "; ".join(f"{label}: {_listed(sorted(have(rows, key)))}"
                             for label, rows in runs.items())
            problems.append(f"the runs have no {what} in common ({each})")
    if problems:
        raise CompareError("cannot align the runs: " + " and ".join(problems))
    first = next(iter(runs.values()))
    order = [p for p in policies_in_order(first) if p in policies]
    return order, sorted(gens), ordered(headline(sorted(metrics)), KEY_METRICS)


def differences(runs: dict[str, list[dict]], policies: list[str], gens: list[int],
                metrics: list[str]) -> list[dict]:
    """Per later run, metric, policy and common generation: the mean in the first run and in
    this one, their difference, and (shared seeds) the paired t-interval of it."""
    labels = list(runs)
    base = labels[0]
    values = {label: {(r["metric"], r["policy"], r["generation"], r["seed"]): r["value"]
                      for r in rows if math.isfinite(r["value"])}
              for label, rows in runs.items()}
    out = []
    for label in labels[1:]:
        for m in metrics:
            for p in policies:
                for g in gens:
                    a = {k[3]: v for k, v in values[base].items() if k[:3] == (m, p, g)}
                    b = {k[3]: v for k, v in values[label].items() if k[:3] == (m, p, g)}
                    if not a or not b:
                        continue
                    shared = sorted(set(a) & set(b))
                    # On shared seeds, the means and the difference are over those seeds only
                    # (paired); without any, over each run's own seeds, with no interval.
                    if shared:
                        a, b = {s: a[s] for s in shared}, {s: b[s] for s in shared}
                    row = {"run": label, "metric": m, "policy": p, "generation": g,
                           "first": float(np.mean(list(a.values()))),
                           "this": float(np.mean(list(b.values()))), "n_a": len(a),
                           "n_b": len(b), "shared": len(shared), "interval": None}
                    row["difference"] = row["this"] - row["first"]
                    if len(shared) >= 2:
                        iv = t_interval([b[s] - a[s] for s in shared])
                        row["interval"] = (iv.low, iv.high) if iv.shown else None
                        row["equal"] = iv.equal
                    out.append(row)
    return out


def _num(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


def model_metrics(runs: dict[str, list[dict]], metrics: list[str]) -> list[str]:
    """The metrics of the model itself (not of its samples: their signatures name a ``set=``),
    which differ at generation 0 only when the generation-0 models do."""
    signature = {r["metric"]: r["signature"] for rows in runs.values() for r in rows}
    return [m for m in metrics if "|set=" not in signature.get(m, "")]


def start_differences(rows: list[dict]) -> list[str]:
    """The model metrics whose generation-0 mean differs between runs (rows of
    ``differences`` for ``model_metrics``): then the runs start from different models, and
    later differences mix the change under study with that start."""
    moved = {}
    for d in rows:
        if d["generation"] == 0 and abs(d["difference"]) > 1e-9 * max(1.0, abs(d["first"])):
            moved.setdefault(d["metric"], []).append(f"{d['policy']} {_num(d['difference'])}"
                                                     f" in {d['run']}")
    return [f"{m}: {', '.join(v)}" for m, v in moved.items()]


def not_compared(runs: dict[str, list[dict]], policies: list[str], gens: list[int],
                 metrics: list[str]) -> list[str]:
    """What some run has but not every run, so no comparison shows it: ``policy mix-0.1 (only
    in a)``, ``generation 3 (only in b)``, ``metric bleu (only in a, b)``."""
    out = []
    for what, key, common in (("policy", "policy", set(policies)),
                              ("generation", "generation", set(gens)),
                              ("metric", "metric", set(metrics))):
        where: dict = {}
        for label, rows in runs.items():
            for r in rows:
                if what != "metric" or math.isfinite(r["value"]):
                    where.setdefault(r[key], set()).add(label)
        if what == "metric":  # the headline names (signature columns such as @se aside)
            where = {m: where[m] for m in headline(sorted(where)) if m in where}
        for value in sorted(set(where) - common, key=lambda v: (str(type(v)), v)):
            runs_with = [label for label in runs if label in where[value]]
            out.append(f"{what} {value} (only in {', '.join(runs_with)})")
    return out


def read_runs(run_dirs: list[Path], labels: list[str],
              mapping: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """Each run's metric rows, its policies renamed by ``mapping`` (``--map mix-0.1=mix``:
    a policy called otherwise in one run is compared as the same policy)."""
    runs = {label: read_metrics(d) for label, d in zip(labels, run_dirs, strict=True)}
    for old, new in (mapping or {}).items():
        if not any(r["policy"] == old for rows in runs.values() for r in rows):
            raise CompareError(f"--map {old}={new}: no run has a policy {old!r}")
    if mapping:
        for label, rows in runs.items():  # two policies of one run must stay two
            onto: dict[str, set] = {}
            for r in rows:
                onto.setdefault(mapping.get(r["policy"], r["policy"]), set()).add(r["policy"])
            merged = [sorted(v) for v in onto.values() if len(v) > 1]
            if merged:
                raise CompareError(f"--map: policies {', '.join(merged[0])} of run {label} "
                                   f"would become one name")
        runs = {label: [{**r, "policy": mapping.get(r["policy"], r["policy"])} for r in rows]
                for label, rows in runs.items()}
    return runs


def compare_text(run_dirs: list[Path], mapping: dict[str, str] | None = None) -> str:
    """The console version: settings that differ, and each key metric's difference at the
    last common generation."""
    labels = _labels(run_dirs)
    runs = read_runs(run_dirs, labels, mapping)
    policies, gens, metrics = align(runs)
    lines = [f"comparing {len(runs)} runs: {', '.join(labels)} (differences: later run minus "
             f"{labels[0]})", "", "settings that differ:"]
    diffs = config_differences(run_dirs)
    for key, values in diffs:  # one line per run: values can be long
        lines.append(f"  {key}")
        for label, value in zip(labels, values, strict=True):
            lines += textwrap.wrap(f"{label}: {value}", WIDTH, initial_indent="      ",
                                   subsequent_indent="        ")
    if not diffs:
        lines.append("  (none)")
    for metric, values in signature_differences(runs, metrics):
        lines.append(f"  metric {metric} is computed differently (compared anyway):")
        for label, value in zip(labels, values, strict=True):
            lines += textwrap.wrap(f"{label}: {value}", WIDTH, initial_indent="      ",
                                   subsequent_indent="        ")
    missing = not_compared(runs, policies, gens, metrics)
    lines += ["", "not in every run, so not compared:"]
    lines += [f"  {m}" for m in missing] or ["  (none)"]
    start = start_differences(differences(runs, policies, gens[:1],
                                          model_metrics(runs, metrics)))
    if start:
        lines += ["", *textwrap.wrap(
            "generation 0 differs (the runs start from different models; later differences "
            "include that start):", WIDTH)]
        for line in start:
            lines += textwrap.wrap(line, WIDTH, initial_indent="  ", subsequent_indent="    ")
    last = gens[-1]
    lines += ["", *textwrap.wrap(
        f"at generation {last}: mean in {labels[0]} -> mean in the other run, difference "
        f"[95% t-interval of the difference, paired by seed, n shared seeds; means over the "
        f"shared seeds where there are any]", WIDTH)]
    rows = [["metric", "policy", *labels[1:]]]
    for m in metrics[:6]:
        for p in policies:
            cells = [m, p]
            found = {d["run"]: d for d in differences(runs, [p], [last], [m])}
            for label in labels[1:]:
                d = found.get(label)
                if d is None:  # all n/a in one of the two runs
                    cells.append("n/a (no finite value in one of the runs)")
                    continue
                iv = d.get("interval")
                bracket = (f" [{_num(iv[0])}, {_num(iv[1])}] n={d['shared']}" if iv
                           else f" [all {d['shared']} shared seeds equal]" if d.get("equal")
                           else f" [no interval, {d['shared']} shared seed(s)]")
                cells.append(f"{_num(d['first'])} -> {_num(d['this'])}: "
                             f"{_num(d['difference'])}{bracket}")
            rows.append(cells)
    lines.append(fit_columns(rows, keys=2))
    return "\n".join(lines)


def comparison_figure(runs: dict[str, list[dict]], policies: list[str], metric: str,
                      unit: str) -> dict:
    """One metric: a line per run and policy (colour: policy, dash: run), with t-interval
    bands, over the generations."""
    data = []
    for j, (label, rows) in enumerate(runs.items()):
        stats = summarise([r for r in rows if r["metric"] == metric])
        for k, policy in enumerate(policies):
            points = sorted((g, s) for (p, m, g), s in stats.items() if p == policy)
            if not points:
                continue
            colour = PALETTE[k % len(PALETTE)]
            name = f"{text(policy)} ({text(label)})"
            data.extend(band_trace(points, rgba(colour, 0.12), name))
            data.append({"type": "scatter", "mode": "lines+markers", "name": name,
                         "legendgroup": name, "x": [g for g, _ in points],
                         "y": [s.mean for _, s in points],
                         "line": {"color": colour, "dash": DASHES[j % len(DASHES)]},
                         "customdata": [s.n_seeds for _, s in points],
                         "hovertemplate": "%{fullData.name} %{x}: %{y:.4g} "
                                          "(%{customdata} seeds)<extra></extra>"})
    better = directions(next(iter(runs.values()))).get(metric, "")
    title = text(metric) + (f" ({better} is better)" if better else "")
    return {"data": data, "layout": {
        "title": {"text": title, "font": {"size": 14}, "x": 0.02}, "height": 360,
        "margin": {"l": 55, "r": 10, "t": 40, "b": 40},
        "xaxis": {"dtick": 1, "tickprefix": "g", "zeroline": False},
        "yaxis": {"title": {"text": text(unit)}, "zeroline": False},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.1},
        "template": None, "plot_bgcolor": "#fbfbfb"}}


def render_compare(run_dirs: list[Path], out: Path,
                   mapping: dict[str, str] | None = None) -> Path:
    """Write the comparison page to ``out`` (one offline file, like report.html)."""
    from ouroboros.report import html as page
    out = Path(out)
    if out.is_dir() or out.is_symlink():
        what = "a link" if out.is_symlink() else "a folder"
        raise CompareError(f"--out {out}: is {what}; give the path of the page to write "
                           f"(e.g. {out / 'compare.html'})")
    labels = _labels(run_dirs)
    runs = read_runs(run_dirs, labels, mapping)
    policies, gens, metrics = align(runs)
    signature = {r["metric"]: r["signature"] for r in next(iter(runs.values()))}
    specs, cards = {}, []
    for i, m in enumerate(metrics):
        specs[f"c{i}"] = comparison_figure(runs, policies, m, page.unit_of(m, signature[m]))
        cards.append(f"<div class='card'>{page._figure_div(f'c{i}')}</div>")
    key, rest = cards[:4], cards[4:]
    diffs = config_differences(run_dirs)
    diffs += [(f"metric {m} (signature)", v) for m, v in signature_differences(runs, metrics)]
    settings = page._table(["setting", *labels], [[k, *v] for k, v in diffs],
                           text_columns=len(labels) + 1) if diffs else "<p>(none)</p>"
    rows = []
    for d in differences(runs, policies, gens, metrics):
        iv = d.get("interval")
        rows.append([d["run"], d["metric"], d["policy"], d["generation"],
                     (_num(d["first"]), d["first"]), (_num(d["this"]), d["this"]),
                     (_num(d["difference"]), d["difference"]),
                     f"{_num(iv[0])} .. {_num(iv[1])}" if iv
                     else "all seeds equal" if d.get("equal") else "none",
                     d["shared"], d["n_a"], d["n_b"]])
    table = page._table(["run", "metric", "policy", "generation", f"mean in {labels[0]}",
                         "mean in run", "difference", "95% t-interval (paired)",
                         "shared seeds", f"n seeds ({labels[0]})", "n seeds (run)"], rows,
                        text_columns=3)
    figures = page._json_for_script(page._finite_specs(specs))
    dropped = not_compared(runs, policies, gens, metrics)
    start = start_differences(differences(runs, policies, gens[:1],
                                          model_metrics(runs, metrics)))
    start_note = (f"<p><strong>Generation 0 differs</strong> (the runs start from different "
                  f"models; later differences include that start): "
                  f"{page._e('; '.join(start))}.</p>" if start else "")
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>ouroboros compare: {page._e(', '.join(labels))}</title><style>{page.STYLE}</style>
</head><body>
<h1>ouroboros compare</h1>
<p class="headline">{len(labels)} runs: {page._e(', '.join(labels))}, aligned on policies
{page._e(', '.join(policies))} and generations {gens[0]}&ndash;{gens[-1]}. Lines are means over
seeds with their 95% t-interval band; colour is the policy, the dash pattern the run.
Differences are each later run minus {page._e(labels[0])}, paired by seed where the runs share
seeds.</p>
<h2>Settings that differ, and metrics computed differently</h2>{settings}
<h2>Key metrics</h2><div class="cards">{''.join(key)}</div>
<details><summary>Every other common metric ({len(rest)})</summary>
<div class="cards">{''.join(rest)}</div></details>
<p><small>Not in every run, so not compared: {page._e(', '.join(dropped) or 'none')}.</small></p>
{start_note}
<h2>Differences</h2>
<details open><summary>Every metric, policy and generation</summary>{table}</details>
<script type="application/json" id="ouroboros-figures">{figures}</script>
<script>{page._plotly_js()}</script>
<script>{page.SCRIPT}</script>
</body></html>"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, doc)
    return out
