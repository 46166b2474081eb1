"""Tidy metrics from ``metrics.csv``: reading, aggregation over seeds, console summary."""

from __future__ import annotations

import csv
import io
import math
import textwrap
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ouroboros.report.stats import (
    ALPHA,
    MAX_SEEDS,
    SIMULATED_UP_TO,
    Interval,
    interval_for,
    min_p_value,
    paired_differences,
    seeds_needed,
)

# Shown first in summaries, in this order, when present.
KEY_METRICS = ["accuracy", "train_accuracy", "sample_accuracy", "perplexity", "kl_true_model",
               "error_rate", "tail_coverage", "rouge1", "rougeL",
               "bleu", "chrf", "mattr", "distinct_2_window", "unigram_entropy", "length_ratio"]


def headline(metrics: list[str]) -> list[str]:
    """Metrics worth a plot or a summary column: interval bounds (``x@low``) are not."""
    return [m for m in metrics if "@" not in m]


@dataclass(frozen=True)
class Summary:
    """A metric of one policy at one generation, over seeds."""

    mean: float
    low: float          # smallest seed value
    high: float         # largest seed value
    n_seeds: int
    median: float
    interval: Interval  # 95% interval of the mean over seeds suited to the metric's range


def read_metrics(run_dir: Path) -> list[dict]:
    """Rows of ``metrics.csv`` with typed seed, generation and value."""
    path = Path(run_dir) / "metrics.csv"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory (a run directory is expected)")
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}: has the study run?")
    csv.field_size_limit(1 << 24)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise MetricsFileError(f"{path}:{line}: not valid UTF-8 (cut short or edited? run "
                               f"`ouroboros resume {run_dir}` to write it again)") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("cell", "policy", "seed", "generation", "metric", "value")
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise MetricsFileError(f"{path}:1: no column {', '.join(missing)} (a metrics.csv "
                                   f"written by ouroboros has them; run `ouroboros resume "
                                   f"{run_dir}` to write it again)")
        rows = []
        for line, r in _numbered(reader, path, run_dir):
            shown = [r.get(k) or "" for k in ("cell", "policy", "metric", "signature")]
            bad = next((c for text in shown for c in text if _control(c)), None)
            if bad is not None:  # escape sequences would drive the terminal report prints to
                raise MetricsFileError(f"{path}:{line}: a control character (U+{ord(bad):04X})"
                                       f" in a name; ouroboros writes none")
            try:
                r["seed"], r["generation"] = _whole(r["seed"]), _whole(r["generation"])
                # An empty value is NaN as pandas writes it back (``to_csv``).
                r["value"] = math.nan if r["value"] in ("", None) else float(r["value"])
            except (TypeError, ValueError) as e:
                raise MetricsFileError(f"{path}:{line}: {e} (hand-edited or cut short? run "
                                       f"`ouroboros resume {run_dir}` to write it again)") from None
            rows.append(r)
    return rows


class MetricsFileError(ValueError):
    """A metrics.csv that cannot be read as ouroboros writes it."""


def _numbered(reader, path: Path, run_dir: Path):
    """(line, row) of a CSV reader; a malformed row (a cell over the limit, a stray quote) is
    a MetricsFileError with its line."""
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:
            raise MetricsFileError(f"{path}:{reader.line_num}: {e} (run `ouroboros resume "
                                   f"{run_dir}` to write it again)") from None
        yield reader.line_num, row


def _control(c: str) -> bool:
    """A control character, or one that reorders text on screen (bidirectional overrides)."""
    return unicodedata.category(c) == "Cc" or "\u202a" <= c <= "\u202e" or \
        "\u2066" <= c <= "\u2069"


def _whole(text: str | None) -> int:
    """A whole number, also as pandas may write one back (``3.0``)."""
    value = float(text)  # ValueError for text, TypeError for a missing cell
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def ordered(items: list[str], first: list[str]) -> list[str]:
    """``items`` with the ones named in ``first`` leading, in that order."""
    return [m for m in first if m in items] + sorted(m for m in items if m not in first)


def summarise(rows: list[dict]) -> dict[tuple[str, str, int], Summary]:
    """(policy, metric, generation) -> mean, range and interval over seeds by the method
    suited to the metric (``stats.interval_for``; NaN values left out)."""
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for r in rows:
        if not math.isnan(r["value"]):
            groups[(r["policy"], r["metric"], r["generation"])].append(r["value"])
    return {k: Summary(sum(v) / len(v), min(v), max(v), len(v), float(np.median(v)),
                       interval_for(k[1], v)) for k, v in groups.items()}


def directions(rows: list[dict]) -> dict[str, str]:
    """metric -> "higher", "lower" or "" (no better direction)."""
    out = {}
    for r in rows:
        hib = r.get("higher_is_better", "")
        out[r["metric"]] = {"True": "higher", "False": "lower"}.get(hib, "")
    return out


def policies_in_order(rows: list[dict]) -> list[str]:
    """Policies in the order they first appear (the config's order)."""
    return list(dict.fromkeys(r["policy"] for r in rows))


def summary_table(rows: list[dict], metrics: list[str] | None = None) -> str:
    """A console table: per policy, each key metric at generation 0 and at the last one, with
    the 95% t-interval of the mean over seeds at the last generation in brackets."""
    stats = summarise(rows)
    last = max(r["generation"] for r in rows)
    names = metrics or ordered(headline(sorted({r["metric"] for r in rows})), KEY_METRICS)[:6]
    better = directions(rows)
    ns = sorted({s.n_seeds for (_, m, g), s in stats.items() if g == last and m in names})
    methods: dict[str, list[str]] = defaultdict(list)
    for m in names:
        ivs = [s.interval for (_, m2, g), s in stats.items() if g == last and m2 == m]
        for method in sorted({iv.method for iv in ivs if iv.n >= 2}):
            methods[method].append(m)
    header = ["policy"] + [f"{m} ({better.get(m) or '-'})" for m in names]
    lines = [header]
    for policy in policies_in_order(rows):
        cells = [policy]
        for m in names:
            a, b = stats.get((policy, m, 0)), stats.get((policy, m, last))
            cells.append(f"{_fmt(a)} -> {_fmt(b)}{_bracket(b.interval, len(ns) > 1)}"
                         if a and b else "n/a")
        lines.append(cells)
    legend = (f"generation 0 -> generation {last}, {_bracket_legend(ns, last, methods)}; "
              f"(higher)/(lower) is better")
    return "\n".join(textwrap.wrap(legend, WIDTH)) + f"\n{fit_columns(lines)}"


WIDTH = 80  # console tables fit a terminal this wide


def fit_columns(lines: list[list[str]], width: int = WIDTH, keys: int = 1) -> str:
    """A table whose first ``keys`` columns are repeated in blocks of the other columns, each
    block as wide as fits ``width`` (a column wider than that gets a block of its own):
    wrapped, never cut."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    key_width = sum(widths[:keys]) + 2 * (keys - 1)
    blocks, current, used = [], [], key_width
    for i in range(keys, len(widths)):
        if current and used + 2 + widths[i] > width:
            blocks.append(current)
            current, used = [], key_width
        current.append(i)
        used += 2 + widths[i]
    blocks.append(current)
    return "\n\n".join(
        "\n".join("  ".join(row[i].ljust(widths[i]) for i in [*range(keys), *block]).rstrip()
                  for row in lines) for block in blocks)


def pack(parts: list[str], width: int = WIDTH, indent: str = "  ",
         more: str = "      ") -> list[str]:
    """Parts joined by two spaces into lines at most ``width`` wide (continued lines start
    with ``more``); a part is never split."""
    lines, line = [], indent
    for part in parts:
        if line.strip() and len(line) + 2 + len(part) > width:
            lines.append(line.rstrip())
            line = more
        line += ("  " if line.strip() else "") + part
    return [*lines, line.rstrip()]


def _bracket(iv: Interval, with_n: bool) -> str:
    """`` [low, high]`` (with ``n=..`` when seed counts differ between cells); nothing, or
    ``[no interval, n=1]``, for a single seed, and ``[all n seeds equal]`` for seeds that
    agree where the method's interval would have zero width: never ``[x, x]``."""
    if iv.n < 2 and not with_n:
        return ""
    return f" [{_interval_text(iv)}]" + (f" n={iv.n}" if with_n and iv.n >= 2 else "")


def _bracket_legend(ns: list[int], generation: int,
                    methods: dict[str, list[str]] | None = None) -> str:
    """What a summary's numbers and brackets are, for the seed counts ``ns`` of its cells and
    the interval ``methods`` used (method -> metrics)."""
    methods = methods or {}
    if len(methods) > 1:
        how = "; ".join(f"{method}: {', '.join(ms)}" for method, ms in methods.items())
        n = f"n={ns[0]}" if len(ns) == 1 else "with its n; none at n=1"
        count = f"{ns[0]} " if len(ns) == 1 else ""
        return (f"mean over {count}seed(s) [95% interval of "
                f"the mean, {n}, at generation {generation} ({how})]")
    method = next(iter(methods), "t-interval")
    if len(ns) == 1:
        return (f"mean over {ns[0]} seed(s) "
                f"[{Interval(0.0, 0.0, ns[0], method=method).label} at generation "
                f"{generation}]")
    return (f"mean over seeds [95% {method} of the mean with its n at generation "
            f"{generation}; none at n=1]")


def paired_table(rows: list[dict], metrics: list[str] | None = None,
                 baseline: str | None = None) -> str:
    """Per policy, the paired difference to ``baseline`` (default: the first policy) at the
    last generation, with its t-interval, wins, exact paired tests and a verdict only where
    the tests carry one."""
    last = max(r["generation"] for r in rows)
    policies = policies_in_order(rows)
    if baseline is not None:
        if baseline not in policies:
            raise ValueError(f"--against: no policy {baseline!r} in this run (policies: "
                             f"{', '.join(policies)})")
        policies = [baseline] + [p for p in policies if p != baseline]
    names = metrics or ordered(headline(sorted({r["metric"] for r in rows})), KEY_METRICS)[:6]
    better = directions(rows)
    lines, ns = [], set()
    for m in names:
        hib = {"higher": True, "lower": False}.get(better.get(m, ""))
        for p in paired_differences(rows, m, last, policies[0], hib):
            ns.add(p.n_seeds)
            wins = f"{p.wins}/{p.n_seeds}" if hib is not None else f"-/{p.n_seeds}"
            lines += pack([f"{m:<22}", f"{p.policy:<22}",
                           f"{_num(p.mean):>10} [{_interval_text(p.interval)}]",
                           f"n={p.n_seeds}", f"wins {wins}",
                           f"p_flip={p.p_flip:.3g}  p_sign={p.p_sign:.3g}", p.verdict()])
    floors = ", ".join(f"n={n}: {min_p_value(n):g}" for n in sorted(ns))
    head = (f"paired difference to {policies[0]} at generation {last} on shared seeds: mean of "
            f"(policy - {policies[0]}) [95% t-interval of the mean difference], n shared seeds, "
            f"wins = seeds on which the policy is better, exact two-sided sign-flip "
            f"(permutation) and sign test p-values, and a verdict only at p_flip < 0.05. "
            f"Smallest p-value either test can give: 2^(1-n) ({floors or 'no shared seeds'}).")
    return "\n".join([*textwrap.wrap(head, WIDTH), *lines])


def verdicts(rows: list[dict], metrics: list[str] | None = None,
              baseline: str | None = None) -> list[str]:
    """What the run lets one conclude, as sentences built from its paired tests (never written
    into the code): each key metric's comparison of every policy with ``baseline`` (default:
    the first policy) at the last generation that the exact sign-flip test finds at
    p < 0.05, with how many comparisons were made (each at 0.05, uncorrected), or why none
    can be concluded."""
    last = max(r["generation"] for r in rows)
    policies = policies_in_order(rows)
    base = baseline or policies[0]
    if base not in policies:
        raise ValueError(f"--against: no policy {base!r} in this run (policies: "
                         f"{', '.join(policies)})")
    names = metrics or ordered(headline(sorted({r["metric"] for r in rows})), KEY_METRICS)[:6]
    better = directions(rows)
    pairs = [p for m in names
             for p in paired_differences(rows, m, last, base,
                                         {"higher": True, "lower": False}.get(better.get(m, "")))]
    if not pairs:
        return [f"No verdict: no other policy shares seeds with {base} at generation {last} "
                f"on the key metrics."]
    ns = sorted({p.n_seeds for p in pairs})
    if min_p_value(max(ns)) >= ALPHA:
        return [f"No verdict: with {max(ns)} seed(s) no exact test can reach p < {ALPHA:g} "
                f"(the smallest p is 2^(1-n) = {min_p_value(max(ns)):g}); "
                f"run at least 6 seeds (`ouroboros report RUN --power` says how many "
                f"each comparison needs)."]
    found = [p for p in pairs if p.p_flip < ALPHA]
    seeds = f"{ns[0]} seeds" if len(ns) == 1 else f"{ns[0]}-{ns[-1]} seeds"
    head = (f"At generation {last}, against {base} ({seeds}, paired; exact sign-flip test, "
            f"each of the {len(pairs)} comparisons of {len(names)} key metrics at p < "
            f"{ALPHA:g}, uncorrected: if no policy differed, at most about "
            f"{ALPHA * len(pairs):.1f} would pass by chance):")
    lines = [head]
    for p in found:
        word = p.verdict().split(" (")[0]
        direction = "higher" if p.mean > 0 else "lower"
        alike = sum((d > 0) == (p.mean > 0) and d != 0 for d in p.diffs)
        wins = (f"better on {p.wins}/{p.n_seeds} seeds" if p.higher_is_better is not None
                else f"{direction} on {alike}/{p.n_seeds} seeds")
        lines.append(f"- {p.policy}: {direction} {p.metric} ({word}): {_num(p.mean)} on "
                     f"average [{_interval_text(p.interval)}], {wins}, p = {p.p_flip:.2g}.")
    if not found:
        lines.append("- none reaches p < 0.05.")
    rest = [p for p in pairs if p.p_flip >= ALPHA]
    if rest and found:
        lines.append(f"- not shown to differ: {len(rest)} other comparison(s) "
                     f"(`ouroboros report RUN` lists them with their p).")
    return lines


def power_table(rows: list[dict], metrics: list[str] | None = None,
                baseline: str | None = None) -> str:
    """Per key comparison (each policy against ``baseline``, default the first policy, at the
    last generation): the seeds the exact sign-flip test needs to reach p < 0.05 with 80%
    probability at the observed effect and spread."""
    last = max(r["generation"] for r in rows)
    policies = policies_in_order(rows)
    reference = baseline or policies[0]
    names = metrics or ordered(headline(sorted({r["metric"] for r in rows})), KEY_METRICS)[:6]
    better = directions(rows)
    lines = []
    for m in names:
        hib = {"higher": True, "lower": False}.get(better.get(m, ""))
        for p in paired_differences(rows, m, last, reference, hib):
            need = seeds_needed(list(p.diffs))
            sd = float(np.std(p.diffs, ddof=1)) if p.n_seeds >= 2 else float("nan")
            text = (f"{need} seeds" if need is not None else
                    "n/a (fewer than 2 seeds)" if p.n_seeds < 2 else
                    "n/a (not finite)" if not np.all(np.isfinite(p.diffs)) else
                    "n/a (no difference)" if p.mean == 0 else f"more than {MAX_SEEDS}")
            lines += pack([f"{m:<22}", f"{p.policy:<22}", f"mean {_num(p.mean)}",
                           f"sd {_num(sd)}", f"now n={p.n_seeds}", f"needs {text}"])
    head = (f"seeds needed for 80% power: per policy against {reference} at generation "
            f"{last}, the fewest seeds with which the exact sign-flip test reaches p < 0.05 "
            f"with probability 0.8, if seeds' paired differences were Normal with the observed "
            f"mean and sd (simulated up to {SIMULATED_UP_TO} seeds, noncentral t beyond). The "
            f"observed effect is itself an estimate from the seeds run: a planning figure.")
    return "\n".join([*textwrap.wrap(head, WIDTH), *lines])


def _interval_text(iv: Interval) -> str:
    if not iv.shown:
        return iv.label
    return f"{_num(iv.low)}, {_num(iv.high)}" + ("; seeds equal" if iv.equal else "")


def _num(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"


def _fmt(s: Summary | None) -> str:
    return "n/a" if s is None else _num(s.mean)


# -- metrics by origin (slices.csv) ------------------------------------------------------------

SLICE_METRICS = ["count", "error_rate", "true_logprob", "reference_perplexity", "words"]


def read_slices(run_dir: Path) -> list[dict]:
    """Rows of ``slices.csv`` (metrics by origin, generator, curation outcome); [] if none."""
    path = Path(run_dir) / "slices.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"], r["generation"] = int(r["seed"]), int(r["generation"])
        r["value"], r["n"] = float(r["value"]), int(r["n"])
    return rows


def slice_summary(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, lines): per generation, policy, set and group, the mean over seeds of the
    sliced metrics (score_* columns included), each with its seed count in the header."""
    metrics = ordered(sorted({r["metric"] for r in rows}), SLICE_METRICS)
    values: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if not math.isnan(r["value"]):
            values[(r["generation"], r["policy"], r["set"], r["group"], r["metric"])].append(
                r["value"])
    keys = list(dict.fromkeys((r["generation"], r["policy"], r["set"], r["group"])
                              for r in rows))
    keys.sort(key=lambda k: (k[0], policies_in_order(rows).index(k[1]),
                             ["trainset", "samples", "candidates"].index(k[2]), k[3] != "all"))
    lines = []
    for key in keys:
        cells = [str(key[0]), key[1], key[2], key[3]]
        for m in metrics:
            v = values.get((*key, m))
            cells.append(_num(sum(v) / len(v)) if v else "")
        lines.append(cells)
    return ["generation", "policy", "set", "group", *metrics], lines


def slices_text(rows: list[dict], generation: int | None = None,
                metrics: list[str] | None = None) -> str:
    """The console table of metrics by origin at one generation (default: the last)."""
    if not rows:
        return "no slices.csv in this run (metrics.slices: [])"
    g = max(r["generation"] for r in rows) if generation is None else generation
    chosen = [r for r in rows if r["generation"] == g
              and (metrics is None or r["metric"] in metrics or r["metric"] == "count")]
    header, lines = slice_summary(chosen)
    header, lines = header[1:], [line[1:] for line in lines]
    n_seeds = len({r["seed"] for r in chosen})
    legend = (f"metrics by origin at generation {g}, mean over {n_seeds} seed(s): trainset = "
              f"what model {g} trained on, samples = what it generated, candidates = what "
              f"curation saw")
    return "\n".join(textwrap.wrap(legend, WIDTH)) + "\n" + fit_columns([header] + lines,
                                                                          keys=3)
