"""Interactive figures for report.html: Plotly figure specs (plain JSON, drawn by the Plotly
JavaScript embedded in the page), one per metric: per policy the mean over seeds by
generation, its 95% Student-t interval as a band, and every seed's value as a point.

Every string that reaches a figure is escaped here: Plotly renders a subset of HTML in names
and titles, and a run directory's CSVs are not trusted.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict

import numpy as np

from ouroboros.report.tables import Summary, directions, policies_in_order, summarise

# Colour-blind-safe (Okabe-Ito), then more; policies keep their colour across figures.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#999999", "#882255", "#44AA99", "#117733"]


def text(value: object) -> str:
    """A string Plotly shows as text, never as markup (Plotly does not decode ``&quot;``, and
    a quote outside a tag is only text). Names reach hover labels as ``%{fullData.name}``,
    never inside a template, where ``%{...}`` in a name would be filled in."""
    return html.escape(str(value), quote=False)


def colours(policies: list[str]) -> dict[str, str]:
    """One colour per policy, in the config's order."""
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(policies)}


def rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def band_trace(points: list[tuple[int, Summary]], fill: str, name: str) -> list[dict]:
    """The 95% t-interval band through the generations that have one (n >= 2 seeds), as a
    filled polygon in the legend group ``name``; empty where no generation has one."""
    banded = [(g, s) for g, s in points if s.interval.n >= 2]
    if not banded:
        return []
    xs = [g for g, _ in banded]
    return [{"type": "scatter", "mode": "lines", "x": xs + xs[::-1],
             "y": [s.interval.high for _, s in banded]
             + [s.interval.low for _, s in banded][::-1],
             "fill": "toself", "fillcolor": fill, "line": {"width": 0},
             "hoverinfo": "skip", "legendgroup": name, "showlegend": False, "name": name}]


def metric_figure(rows: list[dict], metric: str, unit: str, height: int = 300) -> dict:
    """The figure of one metric across generations, every policy in it."""
    mine = [r for r in rows if r["metric"] == metric and not math.isnan(r["value"])]
    policies = policies_in_order(rows)
    colour = colours(policies)
    stats = summarise(mine)
    better = directions(mine).get(metric, "")
    data = []
    gens = sorted({r["generation"] for r in mine})
    for k, policy in enumerate(policies):
        points = [(g, stats.get((policy, metric, g))) for g in gens]
        points = [(g, s) for g, s in points if s is not None]
        if not points:
            continue
        name, c = text(policy), colour[policy]
        data.extend(band_trace(points, rgba(c, 0.15), name))
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "legendgroup": name,
            "x": [g for g, _ in points], "y": [s.mean for _, s in points],
            "line": {"color": c, "width": 2, "dash": ["solid", "dash", "dot", "dashdot"][k % 4]},
            "customdata": [_hover(s) for _, s in points],
            "hovertemplate": "<b>%{fullData.name}</b> %{x}<br>mean %{y:.4g}"
                             "<br>%{customdata}<extra></extra>"})
        seeds = [r for r in mine if r["policy"] == policy]
        offset = (k - (len(policies) - 1) / 2) * 0.04  # side by side, not on top
        data.append({
            "type": "scatter", "mode": "markers", "name": name, "legendgroup": name,
            "showlegend": False, "x": [r["generation"] + offset for r in seeds],
            "y": [r["value"] for r in seeds], "customdata": [r["seed"] for r in seeds],
            "marker": {"color": c, "size": 6, "opacity": 0.45},
            "hovertemplate": "%{fullData.name} seed %{customdata}: %{y:.4g}<extra></extra>"})
    title = text(metric) + (f" <span style='font-size:11px'>({better} is better)</span>"
                            if better else "")
    values = [r["value"] for r in mine]
    layout = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.02},
        "height": height, "margin": {"l": 55, "r": 10, "t": 40, "b": 40},
        # generations as g0, g1, ... (no axis title: the legend below would cover it)
        "xaxis": {"tickprefix": "g", "zeroline": False,
                  # a tick per generation where they are few; else Plotly picks (a hostile
                  # metrics.csv with generation 999999999 stalled the page on 1e9 ticks)
                  **({"dtick": 1} if gens and gens[-1] - gens[0] <= 40 else {})},
        "yaxis": {"title": {"text": text(unit)}, "zeroline": False},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.12}, "hovermode": "closest",
        "template": None, "plot_bgcolor": "#fbfbfb"}
    if values and min(values) > 0 and max(values) / min(values) > 5:
        layout["updatemenus"] = [{"type": "buttons", "direction": "right", "x": 1, "y": 1.18,
                                  "xanchor": "right", "showactive": True, "buttons": [
                                      {"label": "linear", "method": "relayout",
                                       "args": [{"yaxis.type": "linear"}]},
                                      {"label": "log", "method": "relayout",
                                       "args": [{"yaxis.type": "log"}]}]}]
    return {"data": data, "layout": layout}


def _hover(s: Summary) -> str:
    iv = s.interval
    interval = (f"95% t-interval {iv.low:.4g} .. {iv.high:.4g}" if iv.n >= 2
                else "one seed: no interval")
    return f"{s.n_seeds} seed(s), range {s.low:.4g} .. {s.high:.4g}<br>{interval}"


def histogram_figure(rows: list[dict], title: str, unit: str, bins: int = 40) -> dict:
    """Per-sample values (sample_perplexity.csv), binned here on a log scale so the page
    stays small: one line per policy and generation."""
    values = np.array([r["value"] for r in rows if r["value"] > 0 and math.isfinite(r["value"])])
    if not len(values):
        return {"data": [], "layout": {"title": {"text": text(title)}}}
    edges = np.geomspace(values.min(), values.max() * 1.0001, bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        groups[(r["policy"], r["generation"])].append(r["value"])
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    colour = colours(policies)
    gens = sorted({g for _, g in groups})
    data = []
    for (policy, g), vals in sorted(groups.items(), key=lambda kv: (policies.index(kv[0][0]),
                                                                     kv[0][1])):
        counts, _ = np.histogram(vals, edges)
        share = counts / max(len(vals), 1)
        fade = 0.35 + 0.65 * (gens.index(g) / max(len(gens) - 1, 1))
        data.append({"type": "scatter", "mode": "lines", "x": centres.tolist(),
                     "y": share.tolist(), "name": f"{text(policy)} g{g}",
                     "legendgroup": text(policy), "opacity": fade,
                     "line": {"color": colour[policy], "shape": "hvh"},
                     "hovertemplate": "%{fullData.name}<br>%{x:.3g}: "
                                      f"%{{y:.1%}} of {len(vals)} samples<extra></extra>"})
    layout = {"title": {"text": text(title), "font": {"size": 14}, "x": 0.02}, "height": 320,
              "margin": {"l": 55, "r": 10, "t": 40, "b": 40},
              "xaxis": {"title": {"text": text(unit)}, "type": "log"},
              "yaxis": {"title": {"text": "share of samples"}, "tickformat": ".0%"},
              "template": None, "plot_bgcolor": "#fbfbfb"}
    return {"data": data, "layout": layout}
