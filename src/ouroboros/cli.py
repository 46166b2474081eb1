"""The ``ouroboros`` command: one subcommand per verb, each a thin layer over library calls."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import textwrap
from pathlib import Path

from ouroboros.config import ConfigError, load_config, notices

EXAMPLES = """examples:
  ouroboros run                     # the built-in demo study -> runs/demo
  ouroboros run configs/demo.yaml --out runs/x generations=3 seeds=[0]
  ouroboros run policies.0.name=accumulate-subsample training.epochs=4
  ouroboros status runs/demo
  ouroboros report runs/demo        # re-render runs/demo/report/report.html
  ouroboros compare runs/before runs/after --out compare.html
  ouroboros validate configs/demo.yaml
  ouroboros config                  # every setting with its documentation
  ouroboros toys gaussian-mle --policy accumulate   # vs its closed form
  ouroboros toys regression --dim 3 --noise 0.5 --samples 10
"""


def _version() -> str:
    """The package version, and the git commit of the ouroboros checkout it runs from, if it
    runs from one (+dirty when it has edits); never another project's commit."""
    import subprocess

    from ouroboros import __version__
    from ouroboros.experiment.rundir import _git_commit
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        ours = bool(top) and (Path(top) / "src" / "ouroboros").resolve() == here
        commit = _git_commit() if ours else None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return f"{__version__}" + (f" (git {commit})" if commit else "")


class _Version(argparse.Action):
    """--version, worked out only when asked for (it runs git)."""

    def __init__(self, option_strings, dest, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"ouroboros {_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ouroboros", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Recursive training of language models: watch "
                                            "them collapse,\nmeasure it, try mitigations "
                                            "and loops that improve them.")
    p.add_argument("--version", action=_Version)
    commands = p.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    class Sub:
        """add_parser with the help line as the command's description too."""

        @staticmethod
        def add_parser(name: str, help: str, **kw) -> argparse.ArgumentParser:
            kw.setdefault("description", help[0].upper() + help[1:] + ".")
            return commands.add_parser(name, help=help, **kw)
    sub = Sub()
    run = sub.add_parser("run", help="run (or continue) a study",
                         description="Run a study. CONFIG is a YAML file (none: the built-in "
                                     "demo); each dotted.key=value overrides one setting.")
    run.add_argument("args", nargs="*", metavar="[CONFIG] [dotted.key=value]")
    run.add_argument("--out", type=Path, help="run directory (default: runs/<name>)")
    run.add_argument("--no-report", action="store_true", help="skip the plots and HTML report")
    resume = sub.add_parser("resume", help="continue a run from its directory")
    resume.add_argument("run_dir", type=Path, help="the run directory")
    status = sub.add_parser("status", help="what is finished in a run directory")
    status.add_argument("run_dir", type=Path, help="the run directory")
    report = sub.add_parser("report", help="re-render the report from a run directory alone "
                                           "and print its summary table")
    report.add_argument("run_dir", type=Path, help="the run directory")
    report.add_argument("--metrics", help="comma-separated key metrics: the report's first "
                                          "figures and the summary table's columns")
    report.add_argument("--format", help="also write a figure per metric for papers: png, "
                                         "svg or pdf (comma-separated for several)")
    report.add_argument("--against", metavar="POLICY[,POLICY...]",
                        help="print the paired differences and exact tests against each of "
                             "these policies (default: the first policy), e.g. the controls")
    report.add_argument("--power", action="store_true",
                        help="also print, per key comparison, how many seeds the exact test "
                             "needs to reach p < 0.05 with 80%% probability at the observed "
                             "effect and spread")
    report.add_argument("--slices", nargs="?", const=-1, type=int, metavar="GENERATION",
                        help="also print metrics by origin, generator and curation outcome "
                             "(slices.csv) at GENERATION (default: the last)")
    samples = sub.add_parser("samples", help="browse a run's samples: filter, sort, print or "
                                             "write them as JSONL or CSV")
    samples.add_argument("run_dir", type=Path, help="the run directory")
    samples.add_argument("--policy", help="only this policy (its label, e.g. mix-0.1)")
    samples.add_argument("--seed", type=int, help="only this seed")
    samples.add_argument("--generation", type=int, help="only this generation")
    samples.add_argument("--valid", dest="valid", action="store_const", const=True,
                         help="only grammatical samples (the built-in language)")
    samples.add_argument("--invalid", dest="valid", action="store_const", const=False,
                         help="only ungrammatical samples")
    samples.add_argument("--empty", dest="empty", action="store_const", const=True,
                         help="only empty samples (no word)")
    samples.add_argument("--non-empty", dest="empty", action="store_const", const=False,
                         help="only samples with a word")
    samples.add_argument("--curation", metavar="OUTCOME",
                         help="only samples whose curation outcome starts so: kept, dropped")
    samples.add_argument("--generator", help="only samples whose generator contains this")
    samples.add_argument("--sort", choices=["perplexity", "words"],
                         help="by perplexity under generation 0's model or by length, lowest "
                              "first")
    samples.add_argument("--reverse", action="store_true", help="with --sort: highest first")
    samples.add_argument("--limit", type=int, metavar="N",
                         help="at most N samples (default: 20 printed, all written)")
    samples.add_argument("--format", choices=["text", "jsonl", "csv"], default=None,
                         help="text (default on screen), jsonl or csv (default for --out by "
                              "its suffix)")
    samples.add_argument("--out", type=Path, help="write to this file instead of printing")
    export = sub.add_parser("export", help="every generation's data of a run, with lineage, "
                                           "as parquet, JSONL or a Hugging Face dataset")
    export.add_argument("run_dir", type=Path, help="the run directory")
    export.add_argument("--out", type=Path, required=True,
                        help="a new or empty folder to write the tables to")
    export.add_argument("--format", choices=["parquet", "jsonl", "hf"], default="parquet",
                        help="parquet (default), jsonl, or hf (datasets' save_to_disk)")
    compare = sub.add_parser("compare", help="one report across runs, aligned by policy and "
                                             "generation, with the settings that differ")
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN",
                         help="run directories (the first is the baseline)")
    compare.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                         help="compare policy OLD (in any run) as NEW, e.g. "
                              "--map mix-0.1=mix-0.2 (repeatable)")
    compare.add_argument("--out", type=Path, default=Path("compare.html"),
                         help="the page to write (default: compare.html)")
    validate = sub.add_parser("validate", help="check a config without running (exit 2: bad)")
    validate.add_argument("args", nargs="*", metavar="[CONFIG] [dotted.key=value]")
    explain = sub.add_parser("config", help="print the resolved config, every field documented")
    explain.add_argument("args", nargs="*", metavar="[CONFIG] [dotted.key=value]")
    toys = sub.add_parser("toys", help="analytic loops checked against closed forms",
                          description="Run an analytic recursive loop (many replicates) through "
                                      "the same data policies as the language-model loop and "
                                      "print empirical values next to the closed forms.")
    toys.add_argument("name", help="gaussian-mle, gaussian-unbiased, regression, categorical")
    toys.add_argument("--policy", default="replace", help="a data policy (see `ouroboros ls`)")
    toys.add_argument("--real-fraction", type=float, default=None, help="for mix and fresh")
    toys.add_argument("--samples", type=int, default=20, help="M: points per generation")
    toys.add_argument("--generations", type=int, default=10)
    toys.add_argument("--replicates", type=int, default=2000)
    toys.add_argument("--seed", type=int, default=0)
    toys.add_argument("--init-var", type=float, metavar="VAR",
                      help="σ₀², the true variance (Gaussian toys; default 1)")
    toys.add_argument("--dim", type=int, metavar="D", help="d, regression weights (default 5)")
    toys.add_argument("--noise", type=float, metavar="SIGMA",
                      help="σ, the label noise's standard deviation (regression; default 1)")
    toys.add_argument("--categories", type=int, metavar="K", help="K (categorical; default 10)")
    toys.add_argument("--zipf", type=float, metavar="BETA", help="the truth's Zipf exponent: "
                                                                 "p_i ∝ i^-BETA (categorical; "
                                                                 "default 1)")
    toys.add_argument("--out", type=Path, help="folder for toys.csv and toys.png "
                                               "(default: runs/toys-<name>-<policy>)")
    sub.add_parser("ls", help="registered plug-ins by kind")
    return p


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """(config path or None, overrides): the config is the one argument without '='."""
    paths = [a for a in args if "=" not in a]
    if len(paths) > 1:
        raise ConfigError([f"more than one config file given: {', '.join(paths)}"], "command")
    return (paths[0] if paths else None), [a for a in args if "=" in a]


class RunIOError(RuntimeError):
    """The run directory cannot be written (disk full, read-only, no permission)."""


DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def out_problems(run_dir: Path) -> list[str]:
    """Why ``run_dir`` cannot be a run directory, checked before any work: an existing file,
    a path under a file, or a location this process cannot write."""
    if run_dir.exists() and not run_dir.is_dir():
        return [f"--out {run_dir}: is a file, not a run directory"]
    existing = run_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return [f"--out {run_dir}: {existing} is a file, so no directory can be made under it"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"--out {run_dir}: {existing} is not writable (a read-only location, or no "
                "permission)"]
    return []


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``args[0]`` is the command that continues it."""


@contextlib.contextmanager
def _writing(run_dir: Path, then: str):
    """Turn a full disk or an unwritable location into one clear error that says what to run
    once it is fixed (``then``); finished stages are kept either way."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(then) from None
    except OSError as e:
        where = e.filename or run_dir
        if e.errno in DISK_FULL:
            raise RunIOError(f"no space left on the device while writing {where} "
                             f"({os.strerror(e.errno)}); nothing finished is lost: free some "
                             f"space, then `{then}` continues") from e
        if e.errno in NOT_WRITABLE:
            raise RunIOError(f"cannot write {where}: {os.strerror(e.errno)}; choose a writable "
                             f"--out (then `{then}` continues)") from e
        raise


def cmd_run(config: str | None, overrides: list[str], out: Path | None,
            report: bool = True) -> int:
    """Validate, run the study, write metrics.csv, render the report, print a summary
    (``ouroboros.run_study`` with the summary printed)."""
    from ouroboros.api import _run
    cfg = load_config(config, overrides)
    run_dir = out or Path("runs") / cfg.name
    _run(cfg, run_dir, finish=lambda: _finish(run_dir, report), asked="command")
    return 0


def _finish(run_dir: Path, report: bool) -> int:
    from ouroboros.report.tables import WIDTH, read_metrics, summary_table, verdicts
    rows = read_metrics(run_dir)
    print()
    print(summary_table(rows))
    print()
    for line in verdicts(rows):
        print(textwrap.fill(line, WIDTH, subsequent_indent="  "))
    if report:
        from ouroboros.report.html import render_report
        print(f"\nreport: {render_report(run_dir)}")
    print(f"metrics: {run_dir / 'metrics.csv'}")
    return 0


def cmd_samples(args, parser) -> int:
    """Filter, sort and print or write a run's samples (experiment/samples.py)."""
    from ouroboros.experiment import samples as browse
    if args.reverse and not args.sort:
        parser.error("--reverse: give --sort perplexity or --sort words")
    fmt = args.format or ({".jsonl": "jsonl", ".csv": "csv"}.get(args.out.suffix, "jsonl")
                          if args.out else "text")
    limit = args.limit if args.limit is not None else (None if args.out else 20)
    if limit is not None and limit < 1:
        parser.error("--limit: give 1 or more")
    try:
        rows = browse.select(browse.read_samples(args.run_dir, args.policy, args.seed,
                                                 args.generation),
                             valid=args.valid, empty=args.empty, curation=args.curation,
                             generator=args.generator,
                             sort=args.sort and ("-" if args.reverse else "") + args.sort)
    except browse.SamplesError as e:
        parser.error(str(e))
    shown = rows[:limit] if limit is not None else rows
    text = {"text": browse.as_text, "jsonl": browse.as_jsonl, "csv": browse.as_csv}[fmt](shown)
    if args.out:
        from ouroboros.atomic import write_atomic
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, text)
        print(f"{len(shown)} of {len(rows)} matching samples written to {args.out}")
    else:
        print(text, end="" if text.endswith("\n") or not text else "\n")
        if fmt == "text":
            print(f"({len(shown)} of {len(rows)} matching samples"
                  + ("; --limit N or --out FILE for more)" if len(shown) < len(rows) else ")"))
    return 0


def cmd_resume(run_dir: Path) -> int:
    """Continue a run with the config saved in its directory."""
    from ouroboros.api import _run
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {run_dir} is not a run directory, or "
                                f"its run stopped before writing its config: start it again "
                                f"with `ouroboros run CONFIG --out {run_dir}`")
    _run(load_config(cfg_path), run_dir, finish=lambda: _finish(run_dir, True), notes=False,
         asked="command")
    return 0


def cmd_status(run_dir: Path) -> int:
    """Print finished/planned stages by kind and evaluated generations per cell."""
    from ouroboros.experiment.loop import study_status
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: is {run_dir} a run directory?")
    st = study_status(load_config(cfg_path), run_dir)
    from ouroboros.experiment.rundir import lock_holder
    holder = lock_holder(run_dir)
    if holder is not None:
        print(f"{run_dir}: running now (ouroboros process {holder} holds its lock)")
    elif st["complete"]:
        print(f"{run_dir}: complete")
    elif st["stages_done"]:
        print(f"{run_dir}: incomplete: every stage is finished, but the CSVs and report were not "
              f"all written; `ouroboros resume {run_dir}` writes them")
    else:
        print(f"{run_dir}: incomplete, and no process is running it: `ouroboros resume "
              f"{run_dir}` continues")
    for kind, (done, total) in st["stages"].items():
        print(f"  {kind:<10} {done}/{total} stages finished")
    for cell, done in st["cells"].items():
        print(f"  {cell:<28} {done}/{st['generations']} generations evaluated")
    return 0


def _flag(setting: str) -> str:
    """The command-line option of a toy setting: ``init_var`` -> ``--init-var``."""
    return "--" + setting.replace("_", "-")


def _toy_settings(args: argparse.Namespace):
    """The toy's settings from the command line; ConfigError listing every problem."""
    from ouroboros.registry import POLICIES
    from ouroboros.toys.loops import TOYS, ToySettings, check_settings
    problems = []
    if args.name not in TOYS:
        problems.append(f"toy: unknown '{args.name}'; valid: {', '.join(TOYS)}")
    try:
        POLICIES.check(args.policy)
    except ValueError as e:
        problems.append(f"policy: {e}")
    users = {}  # toy setting -> the toys that read it
    for name, make in TOYS.items():
        for k in make().parameters:
            users.setdefault(k, []).append(name)
    toy_flags = {k: getattr(args, k) for k in users if getattr(args, k) is not None}
    problems += [f"{_flag(k)}: only for {', '.join(users[k])}" for k in toy_flags
                 if args.name in TOYS and args.name not in users[k]]
    s = ToySettings(policy=args.policy, real_fraction=args.real_fraction, samples=args.samples,
                    generations=args.generations, replicates=args.replicates, seed=args.seed,
                    **toy_flags)
    problems += [f"{_flag(k)}: {why}" for k, why in check_settings(args.name, s)]
    if problems:
        raise ConfigError(problems, "toys")
    return s


def _toy_table(rows) -> str:
    """Empirical values next to the closed forms, each labelled exact or approximate; then what
    every approximation neglects."""
    lines = [f"{'gen':>4} {'quantity':<16}{'empirical':>22}{'median':>11}{'closed form':>13}"
             f"  kind"]
    for r in rows:
        theory = f"{r.theory:13.4f}  {r.theory_kind}" if r.theory is not None else f"{'-':>13}"
        mean = f"{r.mean:12.4f}" if r.mean == r.mean else f"{'n/a':>12}"  # NaN: no mean
        se = f"{r.stderr:<7.4f}" if r.stderr == r.stderr else f"{'n/a':<7}"
        lines.append(f"{r.generation:>4} {r.quantity:<16}{mean} ± {se}{r.median:>11.4f}{theory}")
    approximations = dict.fromkeys((r.quantity, r.theory_neglects) for r in rows
                                   if r.theory_kind == "approximate")
    lines += [f"approximate closed form of {q}: neglects {what}" for q, what in approximations]
    lines += [f"n/a: {note}" for note in dict.fromkeys(r.note for r in rows if r.note)]
    return "\n".join(lines)


def cmd_toys(args: argparse.Namespace) -> int:
    """Run one analytic loop; print, save and plot empirical values against theory."""
    import csv
    import dataclasses

    from ouroboros.report.plots import plot_toy
    from ouroboros.toys.loops import describe, run_toy
    s = _toy_settings(args)
    rows = run_toy(args.name, s)
    print(f"{describe(args.name, s)}; n = generation + 1 fits; mean ± standard error")
    print(_toy_table(rows))
    out = args.out or Path("runs") / f"toys-{args.name}-{args.policy}"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "toys.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[fld.name for fld in dataclasses.fields(rows[0])])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(r) for r in rows)
    plot_toy(rows, describe(args.name, s), out / "toys.png")
    print(f"\nwritten: {out / 'toys.csv'}, {out / 'toys.png'}")
    return 0


def cmd_ls() -> int:
    """Print every registered plug-in name, by kind."""
    from ouroboros.registry import ALL
    for kind, reg in ALL.items():
        print(f"{kind}: {', '.join(reg.names())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failure, 2 bad input, 3 run dir busy)."""
    from ouroboros.atomic import LinkInRunDir
    from ouroboros.data.files import DataError
    from ouroboros.experiment.conditions import ConditionMismatch
    from ouroboros.experiment.inputs import InputChanged
    from ouroboros.experiment.rundir import RunLockedError
    from ouroboros.models.pretrained import ModelLoadError
    from ouroboros.report.compare import CompareError
    from ouroboros.report.tables import MetricsFileError
    parser = _parser()
    # Overrides may come before or after options (`run --out d k=v` and `run k=v --out d`).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.verb not in {"run", "validate", "config"} or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args += extra
    try:
        if args.verb == "run":
            config, overrides = _split_args(args.args)
            return cmd_run(config, overrides, args.out, not args.no_report)
        if args.verb == "validate":
            config, overrides = _split_args(args.args)
            cfg = load_config(config, overrides)
            for line in notices(cfg):
                print(f"note: {line}", file=sys.stderr)
            from ouroboros.experiment.loop import device_problems, preflight
            # The same data, plan and model checks as `run`, writing nothing; a device this
            # machine lacks is a note (a GPU study can be checked on a laptop), `run` refuses.
            preflight(cfg, check_device=False)
            for line in device_problems(cfg.runtime.device):
                print(f"note: this machine cannot run it: {line}", file=sys.stderr)
            print(f"{config or 'built-in demo'}: valid ({len(cfg.policies)} policies x "
                  f"{len(cfg.seeds)} seeds x {cfg.generations} generations)")
            return 0
        if args.verb == "config":
            from ouroboros.config import explain
            config, overrides = _split_args(args.args)
            print(explain(load_config(config, overrides)))
            return 0
        if args.verb == "toys":
            return cmd_toys(args)
        if args.verb == "resume":
            return cmd_resume(args.run_dir)
        if args.verb == "status":
            return cmd_status(args.run_dir)
        if args.verb == "samples":
            return cmd_samples(args, parser)
        if args.verb == "export":
            from ouroboros.experiment import dataset_export
            try:
                counts = dataset_export.export(args.run_dir, args.out, args.format)
            except dataset_export.ExportError as e:
                parser.error(str(e))
            print(f"{args.out} ({args.format}): " + ", ".join(
                f"{name} {n}" for name, n in counts.items() if n))
            return 0
        if args.verb == "compare":
            from ouroboros.report.compare import compare_text, render_compare
            if len(args.run_dirs) < 2:
                parser.error("compare needs at least two run directories")
            mapping = {}
            for item in args.map:
                old, sep, new = item.partition("=")
                if not (sep and old and new):
                    parser.error(f"--map {item}: give OLD=NEW, e.g. --map mix-0.1=mix-0.2")
                if old in mapping:
                    parser.error(f"--map {old}: given twice")
                mapping[old] = new
            print(compare_text(args.run_dirs, mapping))
            with _writing(args.out, f"ouroboros compare ... --out {args.out}"):
                print(f"\ncomparison: {render_compare(args.run_dirs, args.out, mapping)}")
            return 0
        if args.verb == "report":
            from ouroboros.report.html import render_report
            from ouroboros.report.tables import paired_table, read_metrics, summary_table
            columns = args.metrics.split(",") if args.metrics else None
            rows = read_metrics(args.run_dir)
            print(summary_table(rows, columns))
            print()
            from ouroboros.report.tables import WIDTH, verdicts
            for a in ([a.strip() for a in args.against.split(",")] if args.against
                      else [None]):
                try:
                    said = verdicts(rows, columns, a)
                except ValueError as e:
                    parser.error(str(e))
                for line in said:
                    print(textwrap.fill(line, WIDTH, subsequent_indent="  "))
                print()
            against = [a.strip() for a in args.against.split(",")] if args.against else [None]
            try:
                tables = [paired_table(rows, columns, a) for a in against]
            except ValueError as e:
                parser.error(str(e))
            print("\n\n".join(tables))
            if args.power:
                from ouroboros.report.tables import power_table
                print()
                print("\n\n".join(power_table(rows, columns, a) for a in against))
            if args.slices is not None:
                from ouroboros.report.tables import read_slices, slices_text
                print()
                print(slices_text(read_slices(args.run_dir),
                                  None if args.slices < 0 else args.slices))
            formats = tuple(f.strip() for f in args.format.split(",")) if args.format else ()
            with _writing(args.run_dir, f"ouroboros report {args.run_dir}"):
                print(f"report: {render_report(args.run_dir, formats, columns)}")
            return 0
        return cmd_ls()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, DataError, ModelLoadError, CompareError, ConditionMismatch,
            MetricsFileError, LinkInRunDir, InputChanged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunLockedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except RunIOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        # Training diverged (a NaN or infinite loss): a setting to change, not a bug. The
        # trainer (and torch) is only imported by commands that train, hence the lookup.
        # So is a server that refuses or keeps failing requests, or vLLM failing to start.
        expected = [getattr(sys.modules.get(module), name, None) for module, name in (
            ("ouroboros.training.trainer", "TrainingDiverged"),
            ("ouroboros.experiment.executors", "StageLost"),
            ("ouroboros.experiment.executors", "ExecutorError"),
            ("ouroboros.experiment.executors", "CodeChanged"),
            ("ouroboros.experiment.stages", "RebuildMismatch"),
            ("ouroboros.generation.server", "ServerError"),
            ("ouroboros.generation.vllm_backend", "VLLMError"))]
        if not isinstance(e, tuple(cls for cls in expected if cls is not None)):
            raise
        kept = "" if "finished stages are kept" in str(e) else " (finished stages are kept)"
        print(f"error: {e}{kept}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not a failure
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit
        return 0
    except KeyboardInterrupt as e:
        then = e.args[0] if isinstance(e, Interrupted) else "ouroboros resume RUN_DIR"
        print(f"\ninterrupted; finished stages are kept: `{then}` continues", file=sys.stderr)
        return 130
