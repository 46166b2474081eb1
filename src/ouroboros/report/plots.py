"""PNG plots: one per metric, value vs generation, one line per policy, a band across seeds."""

from __future__ import annotations

import hashlib
import io
import math
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ouroboros.atomic import write_atomic  # noqa: E402
from ouroboros.report.tables import directions, policies_in_order, summarise  # noqa: E402


def policy_styles(policies: list[str]) -> dict[str, dict]:
    """A distinct colour and line style per policy: up to 10 from tab10, then tab20 colours
    with dashed, dotted and dash-dot lines, so no two policies look alike in a legend."""
    colors = plt.get_cmap("tab10" if len(policies) <= 10 else "tab20").colors
    styles = ["-", "--", ":", "-."]
    return {p: {"color": colors[i % len(colors)],
                "linestyle": "-" if len(policies) <= 10
                else styles[(i + i // len(colors)) % len(styles)]}
            for i, p in enumerate(policies)}


def plot_metric(rows: list[dict], metric: str, path: Path, unit: str = "") -> Path:
    """One metric's curves (mean over seeds) with a band: the 95% interval of the mean by the
    method suited to the metric, or with 3 seeds or fewer the seeds' range (none at a
    generation with a single seed); each policy labelled with its seed count; the y axis
    with the metric's unit."""
    from ouroboros.report.figures import FEW_SEEDS, band
    stats = summarise(rows)
    better = directions(rows).get(metric)
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    styles = policy_styles(policies_in_order(rows))
    for policy in policies_in_order(rows):
        gens = sorted(g for (p, m, g) in stats if (p, m) == (policy, metric))
        if not gens:
            continue
        cells = [stats[(policy, metric, g)] for g in gens]
        line, = ax.plot(gens, [s.mean for s in cells], marker="o", ms=3,
                        label=f"{policy} ({seed_counts(cells)})", **styles[policy])
        spans = [band(s) or (math.nan, math.nan) for s in cells]
        ax.fill_between(gens, [b[0] for b in spans], [b[1] for b in spans],
                        color=line.get_color(), alpha=0.18, lw=0)
    title = metric + (f" ({better} is better)" if better else "")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("generation")
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric, fontsize=8)
    most = max((s.n_seeds for (_, m, _), s in stats.items() if m == metric), default=0)
    methods = sorted({s.interval.method for (_, m, _), s in stats.items()
                      if m == metric and s.interval.shown})
    legend = ("mean over n seeds; band: the seeds' range" if most <= FEW_SEEDS else
              f"mean over n seeds; band: 95% {' / '.join(methods) or 'interval'} of the mean")
    ax.set_xticks(sorted({r["generation"] for r in rows}))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, title=legend, title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return save(fig, path)


def seed_counts(cells: list) -> str:
    """``n=3``, or ``n=2-3`` when generations have different seed counts (no band at n=1)."""
    lo, hi = min(s.n_seeds for s in cells), max(s.n_seeds for s in cells)
    text = f"n={lo}" if lo == hi else f"n={lo}-{hi}"
    return text + (", no band" if hi < 2 else "")


def safe_filename(name: str) -> str:
    """A file name for a metric read from metrics.csv (which anyone may have edited): letters,
    digits, '.', '_' and '-' only, never starting with '.', plus a short hash of the name when
    anything had to change, so no name can reach outside its folder or collide."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:80]
    if safe != name or not safe:
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def save(fig, path: Path) -> Path:
    """Write a figure atomically (a full disk leaves no half-written image), in the format
    its suffix names (png, svg, pdf)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def plot_all(rows: list[dict], out_dir: Path, metrics: list[str],
             fmt: str = "png", units: dict[str, str] | None = None) -> list[Path]:
    """A figure per metric in ``out_dir`` (png, svg or pdf)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [plot_metric(rows, m, out_dir / f"{safe_filename(m)}.{fmt}",
                        (units or {}).get(m, "")) for m in metrics]


def _closed_form_label(row) -> str:
    """'closed form (exact)', or 'approximate closed form' and what it neglects, wrapped."""
    if row.theory_kind == "exact":
        return "closed form (exact)"
    return "\n".join(textwrap.wrap(f"approximate closed form, neglects {row.theory_neglects}",
                                    40))


def plot_toy(rows, title: str, path: Path) -> Path:
    """Empirical means (with 2-standard-error bars) against the closed forms, per quantity."""
    quantities = list(dict.fromkeys(r.quantity for r in rows))
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.2 * len(quantities), 3.3), dpi=110,
                             squeeze=False)
    for ax, q in zip(axes[0], quantities, strict=True):
        sel = [r for r in rows if r.quantity == q]
        gens = [r.generation for r in sel]
        ax.errorbar(gens, [r.mean for r in sel], yerr=[2 * r.stderr for r in sel], marker="o",
                    ms=3, capsize=2, label="empirical mean ± 2 SE")
        ax.plot(gens, [r.median for r in sel], ls=":", label="empirical median")
        for kind, style in (("exact", "k--"), ("approximate", "k-.")):
            known = [r for r in sel if r.theory_kind == kind]
            if known:
                ax.plot([r.generation for r in known], [r.theory for r in known], style,
                        label=_closed_form_label(known[0]))
        ax.set_title(q, fontsize=10)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_sample_perplexity(csv_path: Path, path: Path) -> Path:
    """The tail of the samples' perplexity under generation 0's model: per policy, the share
    of samples (seeds pooled) above each perplexity, one curve per generation, log-log (the
    figure of Shumailov et al. 2024, Fig. 1b, as a complementary CDF)."""
    import csv
    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    gens = sorted({int(r["generation"]) for r in rows})
    fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies), 3.2), dpi=110,
                             squeeze=False, sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(gens)))
    for ax, policy in zip(axes[0], policies, strict=True):
        for g, color in zip(gens, colors, strict=True):
            v = np.sort([float(r["value"]) for r in rows
                         if r["policy"] == policy and int(r["generation"]) == g])
            v = v[np.isfinite(v) & (v > 0)]
            if len(v):  # from v_i to v_(i+1), n - i of n samples lie strictly above
                ax.step(v, 1 - np.arange(1, len(v) + 1) / len(v), where="post",
                        color=color, label=f"g{g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(policy, fontsize=10)
        ax.set_xlabel("perplexity under generation 0")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of samples above")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
