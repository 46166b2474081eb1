"""The Python API: run a study and load a run directory into pandas DataFrames.

    import ouroboros
    run = ouroboros.run_study("configs/demo.yaml", out="runs/demo", overrides=["seeds=[0,1]"])
    run = ouroboros.load_run("runs/demo")
    run.metrics            # one row per value, as metrics.csv, signatures parsed
    run.summary()          # the report's summary: mean, interval (with its method), n seeds
    run.paired("replace")  # paired differences, exact tests and verdicts against a policy
    run.samples(policy="replace", generation=3)   # every sample with its lineage

``run_study`` makes the same checks, takes the same lock, resumes the same way and writes the
same run directory as ``ouroboros run``; everything ``load_run`` returns is read from the run
directory alone, as the report is.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["Run", "load_run", "run_study"]


def run_study(config: str | Path | dict | Any | None = None, out: str | Path | None = None,
              overrides: Iterable[str] | dict[str, Any] | None = None, report: bool = True,
              quiet: bool = False) -> Run:
    """Run (or continue) a study and return its run directory loaded.

    ``config``: a YAML path, a dict in the YAML's shape, a ``StudyConfig``, or None for the
    built-in demo. ``overrides``: ``["seeds=[0,1]", ...]`` or ``{"seeds": [0, 1], ...}``
    (dotted keys). ``out``: the run directory (default ``runs/<name>``). A bad config raises
    ``ouroboros.config.ConfigError`` listing every problem before any work; a run directory
    with finished stages is continued, as ``ouroboros run`` does. ``quiet`` silences the log
    lines of this process (they go to stdout otherwise; notes go to stderr)."""
    from ouroboros.config import load_config
    cfg = load_config(config, _override_list(overrides))
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name

    def finish() -> None:
        from ouroboros.report.html import render_report
        render_report(run_dir)
    _run(cfg, run_dir, finish if report else None, quiet=quiet)
    return load_run(run_dir)


def _run(cfg, run_dir: Path, finish=None, quiet: bool = False, notes: bool = True,
         asked: str = "out") -> None:
    """What ``run_study``, ``ouroboros run`` and ``ouroboros resume`` share: the config's
    notes, the run directory's checks, the study (lock, resume, trackers), ``finish`` (the
    report, the summary) before the run is marked finished, and a full disk or Ctrl-C as one
    error that says what continues the run. ``asked``: what a bad run directory is called
    in the error (the argument, or the command)."""
    from ouroboros.cli import _writing, out_problems
    from ouroboros.config import ConfigError, notices
    from ouroboros.experiment.loop import run_study as study
    problems = out_problems(run_dir)
    if problems:
        raise ConfigError(problems, asked)
    sink = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(sink) if sink else contextlib.nullcontext():
        for line in notices(cfg) if notes else []:
            print(f"note: {line}", file=sys.stderr)
        with _writing(run_dir, f"ouroboros resume {run_dir}"):
            study(cfg, run_dir, finish=finish, **({"log": lambda _: None} if quiet else {}))


def _override_list(overrides: Iterable[str] | dict[str, Any] | None) -> list[str]:
    """Dotted overrides as ``key=value`` text; dict values as YAML flow text."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        import json  # JSON is YAML: every value reads back as itself
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise TypeError("overrides: a list of 'dotted.key=value' strings or a dict, not one "
                        "string")
    return list(overrides)


def load_run(path: str | Path) -> Run:
    """A finished (or partly finished) run directory, read as ``ouroboros report`` reads it."""
    run_dir = Path(path)
    if not (run_dir / "metrics.csv").is_file():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}: not a run directory, or the "
                                f"study has not finished a generation yet")
    return Run(run_dir)


class Run:
    """A run directory as DataFrames (pandas). Every table is read when first asked for."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- what the study was ------------------------------------------------------------
    @property
    def config(self) -> dict:
        """config.yaml as a dict (every setting, defaults included)."""
        import yaml
        return yaml.safe_load((self.path / "config.yaml").read_text()) or {}

    @property
    def policies(self) -> list[str]:
        """Policy labels in the config's order."""
        from ouroboros.report.tables import policies_in_order
        return policies_in_order(self._rows())

    def _rows(self) -> list[dict]:
        from ouroboros.report.tables import read_metrics
        return read_metrics(self.path)

    # -- tables --------------------------------------------------------------------------
    @property
    def metrics(self):
        """metrics.csv, one row per cell, seed, generation and metric, with the signature
        parsed: ``version``, ``n`` (examples behind the value), ``params`` (a dict)."""
        import pandas as pd

        from ouroboros.metrics.signature import parse_signature
        rows = []
        for r in self._rows():
            try:
                sig = parse_signature(r["signature"])
            except ValueError:
                sig = {"version": None, "n": None, "params": {}}
            rows.append({"cell": r["cell"], "policy": r["policy"], "seed": r["seed"],
                         "generation": r["generation"], "metric": r["metric"],
                         "value": r["value"], "higher_is_better": _direction(r),
                         "version": sig["version"], "n": sig["n"], "params": sig["params"],
                         "signature": r["signature"]})
        return pd.DataFrame(rows)

    def summary(self, metrics: list[str] | None = None):
        """Per policy, metric and generation over seeds: mean, median, min, max, the 95%
        interval of the mean with its method (the report's), and n seeds."""
        import pandas as pd

        from ouroboros.report.tables import summarise
        rows = []
        for (policy, metric, g), s in sorted(summarise(self._rows()).items(),
                                             key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
            if metrics and metric not in metrics:
                continue
            iv = s.interval
            rows.append({"policy": policy, "metric": metric, "generation": g, "mean": s.mean,
                         "median": s.median, "min": s.low, "max": s.high,
                         "low": iv.low if iv.shown else math.nan,
                         "high": iv.high if iv.shown else math.nan,
                         "method": iv.method if iv.shown else iv.label,
                         "seeds_equal": iv.equal, "n_seeds": s.n_seeds})
        return pd.DataFrame(rows)

    def paired(self, reference: str | None = None, generation: int | None = None,
               metrics: list[str] | None = None):
        """Every policy minus ``reference`` (default: the first policy) on shared seeds at
        ``generation`` (default: the last), per metric: mean difference, its t-interval,
        wins, exact sign-flip and sign-test p-values, the verdict, seeds needed for 80%."""
        import pandas as pd

        from ouroboros.report.stats import paired_differences, seeds_needed
        from ouroboros.report.tables import directions
        rows = self._rows()
        reference = reference or self.policies[0]
        if reference not in self.policies:
            raise ValueError(f"no policy {reference!r} in this run (policies: "
                             f"{', '.join(self.policies)})")
        gens = {r["generation"] for r in rows}
        last = max(gens) if generation is None else generation
        if last not in gens:
            raise ValueError(f"no generation {last} in this run (generations: "
                             f"{min(gens)}-{max(gens)})")
        better = directions(rows)
        names = metrics or sorted({r["metric"] for r in rows if "@" not in r["metric"]})
        out = []
        for m in names:
            hib = {"higher": True, "lower": False}.get(better.get(m, ""))
            for p in paired_differences(rows, m, last, reference, hib):
                out.append({"metric": m, "policy": p.policy, "reference": reference,
                            "generation": last, "mean": p.mean,
                            "low": p.interval.low if p.interval.shown else math.nan,
                            "high": p.interval.high if p.interval.shown else math.nan,
                            "n_seeds": p.n_seeds, "wins": p.wins if hib is not None else None,
                            "p_flip": p.p_flip, "p_sign": p.p_sign, "verdict": p.verdict(),
                            "seeds_needed": seeds_needed(list(p.diffs))})
        return pd.DataFrame(out)

    def verdicts(self, reference: str | None = None) -> list[str]:
        """The sentences ``ouroboros run`` prints: what the paired tests carry."""
        from ouroboros.report.tables import verdicts
        return verdicts(self._rows(), baseline=reference)

    @property
    def composition(self):
        """composition.csv: each cell and generation's training set by origin."""
        return self._csv("composition.csv")

    @property
    def slices(self):
        """slices.csv: metrics by origin, generator and curation outcome (empty if none)."""
        return self._csv("slices.csv")

    @property
    def training_curves(self):
        """training.csv: every model's loss per epoch (empty if none)."""
        return self._csv("training.csv")

    def samples(self, policy: str | None = None, seed: int | None = None,
                generation: int | None = None, **filters):
        """Every sample (``ouroboros samples``), with lineage: policy, seed, generation, id,
        generator (the model that wrote it), prompted_by, prompt, text, words, empty,
        finished, valid, reference_perplexity, curation. ``filters``: valid, empty, curation,
        generator, sort, limit (as the command's options)."""
        import pandas as pd

        from ouroboros.experiment import samples as browse
        rows = browse.select(browse.read_samples(self.path, policy, seed, generation),
                             **filters)
        return pd.DataFrame(rows, columns=browse.COLUMNS)

    def report(self) -> Path:
        """Write report/report.html again and return its path."""
        from ouroboros.report.html import render_report
        return render_report(self.path)

    def _csv(self, name: str):
        import pandas as pd
        path = self.path / name
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def _direction(row: dict) -> bool | None:
    value = str(row.get("higher_is_better", "")).strip().lower()
    return {"true": True, "false": False}.get(value)
