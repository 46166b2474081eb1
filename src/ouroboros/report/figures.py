"""Interactive figures for report.html: Plotly figure specs (plain JSON, drawn by the Plotly
JavaScript embedded in the page). One per metric: per policy the mean over seeds by
generation, every seed's value as a point, and as a band the 95% interval of the mean by the
method suited to the metric (stats.interval_for) or, with 3 seeds or fewer, the seeds' range.
The tail of the samples' perplexity under generation 0 (complementary CDF per policy, one line
per generation) and the training-loss curves (per policy, one line per generation).

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


FEW_SEEDS = 3  # at most this many seeds: the seeds' range is the band, not an interval


def band(s: Summary) -> tuple[float, float] | None:
    """What a cell's band spans: the seeds' range with 2..FEW_SEEDS seeds, else the interval
    (None where there is none: one seed, or seeds that agree on an unbounded metric)."""
    if s.n_seeds < 2:
        return None
    if s.n_seeds <= FEW_SEEDS:
        return s.low, s.high
    return (s.interval.low, s.interval.high) if s.interval.shown else None


def band_trace(points: list[tuple[int, Summary]], fill: str, name: str) -> list[dict]:
    """The band (``band``) through the generations that have one, as a filled polygon in the
    legend group ``name``; empty where no generation has one."""
    banded = [(g, b) for g, s in points if (b := band(s)) is not None]
    if not banded:
        return []
    xs = [g for g, _ in banded]
    return [{"type": "scatter", "mode": "lines", "x": xs + xs[::-1],
             "y": [b[1] for _, b in banded] + [b[0] for _, b in banded][::-1],
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
        "title": {"text": title, "font": {"size": 14}, "x": 0.02, "y": 0.98,
                  "yanchor": "top"},
        "height": height + 30, "margin": {"l": 55, "r": 10, "t": 62, "b": 50},
        "xaxis": {"title": {"text": "generation", "standoff": 4}, "zeroline": False,
                  # a tick per generation where they are few; else Plotly picks (a hostile
                  # metrics.csv with generation 999999999 stalled the page on 1e9 ticks)
                  **({"dtick": 1} if gens and gens[-1] - gens[0] <= 40 else {})},
        "yaxis": {"title": {"text": text(unit)}, "zeroline": False},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.2}, "hovermode": "closest",
        "template": None, "plot_bgcolor": "#fbfbfb"}
    if values and min(values) > 0 and max(values) / min(values) > 5:
        # above the plot on the left, under the title: the toolbar is on the right
        layout["updatemenus"] = [{"type": "buttons", "direction": "right", "x": 0, "y": 1.01,
                                  "xanchor": "left", "yanchor": "bottom", "showactive": True,
                                  "pad": {"t": 0, "b": 0}, "font": {"size": 10}, "buttons": [
                                      {"label": "linear", "method": "relayout",
                                       "args": [{"yaxis.type": "linear"}]},
                                      {"label": "log", "method": "relayout",
                                       "args": [{"yaxis.type": "log"}]}]}]
    return {"data": data, "layout": layout}


def _hover(s: Summary) -> str:
    iv = s.interval
    if iv.shown:
        interval = f"95% {iv.method} {iv.low:.4g} .. {iv.high:.4g}"
    else:
        interval = "one seed: no interval" if iv.n < 2 else iv.label
    if iv.equal:
        interval += " (every seed the same)"
    return f"{s.n_seeds} seed(s), range {s.low:.4g} .. {s.high:.4g}<br>{interval}"


def ccdf_figure(rows: list[dict], policy: str, colour: str, grid: int = 60) -> dict:
    """The tail of one policy's samples: the share of samples (seeds pooled) whose perplexity
    under generation 0's model exceeds x, one line per generation, both axes logarithmic, so
    the 1% of samples past 100 is as visible as the median (Shumailov et al. 2024, Fig. 1b).
    Evaluated on a shared grid of ``grid`` points, so the page stays small."""
    mine = [r for r in rows if r["policy"] == policy and r["value"] > 0
            and math.isfinite(r["value"])]
    values = np.array([r["value"] for r in rows if r["value"] > 0 and math.isfinite(r["value"])])
    layout = {"title": {"text": text(policy), "font": {"size": 13}, "x": 0.02},
              "height": 300, "margin": {"l": 55, "r": 10, "t": 36, "b": 50},
              "xaxis": {"title": {"text": "perplexity under generation 0 (log)"}, "type": "log"},
              "yaxis": {"title": {"text": "share of samples above (log)"}, "type": "log",
                        "exponentformat": "power"},
              "legend": {"orientation": "h", "yanchor": "top", "y": -0.25},
              "template": None, "plot_bgcolor": "#fbfbfb"}
    if not len(values) or not mine:
        return {"data": [], "layout": layout}
    xs = np.geomspace(values.min(), values.max(), grid)
    by_gen: dict[int, list[float]] = defaultdict(list)
    for r in mine:
        by_gen[r["generation"]].append(r["value"])
    gens = sorted(by_gen)
    data = []
    for g in gens:
        v = np.sort(np.array(by_gen[g]))
        above = 1 - np.searchsorted(v, xs, side="right") / len(v)
        fade = 0.3 + 0.7 * (gens.index(g) / max(len(gens) - 1, 1))
        data.append({"type": "scatter", "mode": "lines", "name": f"g{g}",
                     "x": xs.tolist(), "y": [float(a) if a > 0 else None for a in above],
                     "line": {"color": colour, "width": 1 + 1.5 * fade,
                              "dash": ["dot", "dash", "solid"][min(2, round(2 * fade))]},
                     "opacity": fade,
                     "hovertemplate": f"g{g}: %{{y:.2%}} of {len(v)} samples above "
                                      f"%{{x:.3g}}<extra></extra>"})
    return {"data": data, "layout": layout}


def loss_figure(rows: list[dict], policy: str, colour: str) -> dict:
    """One policy's training curves: per generation and epoch, the mean training loss over
    seeds (the validation loss dotted where it was measured), at the seeds' mean step (seeds
    end their epochs at different steps: their data differ in size)."""
    by: dict[tuple[int, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["policy"] != policy:
            continue
        cell = by[(r["generation"], r["epoch"])]
        cell["step"].append(r["step"])
        for k in ("train_loss", "valid_loss"):
            if r.get(k) is not None and math.isfinite(r[k]):
                cell[k].append(r[k])
    gens = sorted({g for g, _ in by})
    data = []
    for g in gens:
        epochs = sorted(e for gg, e in by if gg == g)
        steps = [float(np.mean(by[(g, e)]["step"])) for e in epochs]
        fade = 0.3 + 0.7 * (gens.index(g) / max(len(gens) - 1, 1))
        for k, dash in (("train_loss", "solid"), ("valid_loss", "dot")):
            ys = [float(np.mean(by[(g, e)][k])) if by[(g, e)][k] else None for e in epochs]
            if all(y is None for y in ys):
                continue
            data.append({"type": "scatter", "mode": "lines", "x": steps, "y": ys,
                         "name": f"g{g}" + (" valid" if k == "valid_loss" else ""),
                         "opacity": fade, "line": {"color": colour, "dash": dash},
                         "customdata": epochs,
                         "hovertemplate": f"g{g} {k.replace('_', ' ')}, epoch %{{customdata}} "
                                          f"(mean step %{{x:.0f}}): %{{y:.4g}}<extra></extra>"})
    return {"data": data, "layout": {
        "title": {"text": text(policy), "font": {"size": 13}, "x": 0.02}, "height": 280,
        "margin": {"l": 55, "r": 10, "t": 36, "b": 50},
        "xaxis": {"title": {"text": "optimiser step (mean over seeds at each epoch's end)"}},
        "yaxis": {"title": {"text": "loss (nats per token)"}},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.25},
        "template": None, "plot_bgcolor": "#fbfbfb"}}
