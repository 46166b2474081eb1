"""Every sample of a run, read back from its stages with what is known of each: who wrote it
and from which prompt, its length, whether it is empty or cut, grammatical or not (the built-in
language), its perplexity under generation 0's model, and its curation outcome.

Stages are found through ``cells.json`` (written with the run's tables: each cell's stage
folders per generation), not by planning the study again, so a run directory written by
another version of the code can still be read; a run without it is read by stage labels and
recorded inputs, refusing where a label is ambiguous. ``ouroboros samples RUN`` filters, sorts
and prints or writes these rows."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

from ouroboros.experiment.stages import read_jsonl

COLUMNS = ["policy", "seed", "generation", "id", "generator", "prompted_by", "prompt", "text",
           "words", "empty", "finished", "valid", "reference_perplexity", "curation"]
SORTS = ("perplexity", "-perplexity", "words", "-words")


class SamplesError(ValueError):
    """A run directory whose samples cannot be read, or a filter that matches nothing."""


def _records(run_dir: Path) -> dict[str, dict[str, tuple[Path, dict]]]:
    """kind -> label -> (stage directory, its record); under ``"#fp"`` fingerprint ->
    (directory, record); under ``"#ambiguous"`` the ``kind/label`` of labels with several
    finished stages."""
    out: dict[str, dict[str, tuple[Path, dict]]] = {"#fp": {}, "#ambiguous": {}}
    for path in sorted((run_dir / "stages").glob("*/*/_complete.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(record, dict):
            continue
        kind, label = record.get("kind"), record.get("label")
        entry = (path.parent, record)
        if str(label) in out.setdefault(str(kind), {}):
            out["#ambiguous"][f"{kind}/{label}"] = entry
        out[str(kind)][str(label)] = entry
        out["#fp"][str(record.get("fingerprint"))] = entry
    return out


def _cells(run_dir: Path) -> list[tuple[str, int, int]]:
    """(policy, seed, generation) of every metrics.csv row, in its order."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise SamplesError(f"no metrics.csv in {run_dir}: has the study run?")
    with open(path, encoding="utf-8", newline="") as f:
        seen = dict.fromkeys((r["policy"], int(r["seed"]), int(r["generation"]))
                             for r in csv.DictReader(f))
    return list(seen)


_TRUTHS: dict[tuple, object] = {}


def _truth(run_dir: Path):
    """The built-in language of the run's config, if it has one (once per run directory)."""
    config = run_dir / "config.yaml"
    key = (run_dir.resolve(), config.stat().st_mtime_ns if config.is_file() else None)
    if key not in _TRUTHS:
        try:
            from ouroboros import registry
            from ouroboros.config import load_config
            cfg = load_config(run_dir / "config.yaml")
            if cfg.data.source != "grammar":
                raise LookupError("no built-in language")
            task = registry.TASKS.get(cfg.task.name)
            source = registry.DATA_SOURCES.get(cfg.data.source)(cfg.data, task.fields)
            _TRUTHS[key] = getattr(source, "truth", None)
        except Exception:  # noqa: BLE001 - validity is optional; a config of another version
            _TRUTHS[key] = None
    return _TRUTHS[key]


def curation_outcome(decisions: list[dict]) -> str:
    """A candidate's curation outcome: kept, or the first step that dropped it and why."""
    for d in decisions:
        if not d.get("kept", True):
            return f"dropped by {d.get('step')}: {d.get('reason', '')}".rstrip(": ")
    return "kept"


def _where(run_dir: Path, cells: list[tuple[str, int, int]]) -> dict:
    """(policy, seed, generation) -> (evaluate folder, samples folder, curate folder or None),
    from cells.json, else from stage labels (an ambiguous label is refused)."""
    index = run_dir / "cells.json"
    if index.is_file():
        out = {}
        for cell in json.loads(index.read_text()).get("cells", []):
            for g in cell.get("generations", []):
                out[(cell["policy"], cell["seed"], g["generation"])] = (
                    inside(run_dir, g["evaluate"]), inside(run_dir, g["samples"]),
                    inside(run_dir, g["curate"]) if g.get("curate") else None)
        return out
    stages = _records(run_dir)
    evaluations, curations = stages.get("evaluate", {}), stages.get("curate", {})
    out = {}
    for p, s, g in cells:
        label = f"{p}-s{s}-g{g}" if f"{p}-s{s}-g{g}" in evaluations else f"s{s}-g{g}"
        found = evaluations.get(label)
        if found is None:
            continue
        if f"evaluate/{label}" in stages["#ambiguous"]:
            raise SamplesError(f"{run_dir}: several finished evaluate stages are labelled "
                               f"{label} and this run has no cells.json to tell them apart; "
                               f"`ouroboros resume {run_dir}` writes it")
        fp = ((found[1].get("spec") or {}).get("deps") or {}).get("samples")
        made = stages["#fp"].get(str(fp))
        curate = curations.get(f"{p}-s{s}-g{g}")
        if made is not None:
            out[(p, s, g)] = (found[0], made[0], curate[0] if curate else None)
    return out


def inside(run_dir: Path, relpath) -> Path:
    """``run_dir / relpath``, refused unless it stays inside the run directory (a run
    directory is not trusted: cells.json could name any folder, through ``..`` or a link)."""
    path = (run_dir / str(relpath)).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise SamplesError(f"{run_dir}/cells.json names {relpath!r}, outside the run "
                           f"directory: refused")
    return path


def _number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_samples(run_dir: Path, policy: str | None = None, seed: int | None = None,
                 generation: int | None = None) -> Iterator[dict]:
    """The samples of every (policy, seed, generation) of the run that the filters keep, each
    as a row with ``COLUMNS``; a sample shared by several policies (generation 0's) is given
    once per policy."""
    run_dir = Path(run_dir)
    cells = _cells(run_dir)
    if policy is not None and policy not in {p for p, _, _ in cells}:
        raise SamplesError(f"--policy: no policy {policy!r} in this run (policies: "
                           f"{', '.join(dict.fromkeys(p for p, _, _ in cells))})")
    where = _where(run_dir, cells)
    truth = _truth(run_dir)
    for p, s, g in cells:
        if ((policy is not None and p != policy) or (seed is not None and s != seed)
                or (generation is not None and g != generation)):
            continue
        if (p, s, g) not in where:
            continue
        evaluated, made, curate = where[(p, s, g)]
        if not (made / "samples.jsonl").is_file():
            continue
        samples = read_jsonl(made / "samples.jsonl")
        ppl_path = evaluated / "sample_perplexity.json"
        ppl = json.loads(ppl_path.read_text())["values"] if ppl_path.is_file() else None
        outcome = ({r.get("id"): curation_outcome(r.get("decisions", []))
                    for r in read_jsonl(curate / "lineage.jsonl")}
                   if curate is not None and (curate / "lineage.jsonl").is_file() else {})
        for i, r in enumerate(samples):
            yield sample_row(p, s, g, r, None if ppl is None or i >= len(ppl) else ppl[i],
                             truth, outcome.get(r.get("id")))


def sample_row(policy: str, seed: int, generation: int, r: dict, perplexity=None,
               truth=None, curation: str | None = None) -> dict:
    """One sample of ``samples.jsonl`` as a row with ``COLUMNS``: the generated side as
    ``text`` (the source, for back-translation), what it was given as ``prompt``."""
    back = r.get("generated") == "source"  # back-translation: the source is generated
    generated = str(r.get("source" if back else "target") or "")
    given = r.get("target") if back else (
        r.get("source") if r.get("prompted_by") is not None else None)
    whole = f"{r.get('source', '')} {r.get('target', '')}".strip()
    words = len(generated.split())
    return {"policy": policy, "seed": seed, "generation": generation, "id": r.get("id"),
            "generator": r.get("generator") or r.get("model"),
            "prompted_by": r.get("prompted_by"), "prompt": given, "text": generated,
            "words": words, "empty": words == 0,
            "finished": r.get("source_finished" if back else "finished"),
            "valid": None if truth is None else bool(truth.is_valid(whole)),
            "reference_perplexity": _number(perplexity), "curation": curation}


def select(rows: Iterator[dict], valid: bool | None = None, empty: bool | None = None,
           curation: str | None = None, generator: str | None = None,
           sort: str | None = None, limit: int | None = None) -> list[dict]:
    """The rows that match every filter given (``curation``: kept, dropped, or the start of an
    outcome; ``generator``: a substring of who wrote it), sorted by ``sort`` (one of SORTS;
    ``-`` for descending; unknown values last), at most ``limit``."""
    if sort is not None and sort not in SORTS:
        raise SamplesError(f"--sort: {sort!r} is not one of {', '.join(SORTS)}")
    out = []
    for r in rows:
        if valid is not None and r["valid"] is None:
            raise SamplesError("--valid/--invalid: this run's data has no built-in language "
                               "to judge samples by (data.source grammar has one)")
        if valid is not None and r["valid"] is not valid:
            continue
        if empty is not None and r["empty"] is not empty:
            continue
        if curation is not None and not str(r["curation"] or "").startswith(curation):
            continue
        if generator is not None and generator not in str(r["generator"] or ""):
            continue
        out.append(r)
    if sort is not None:
        key = {"perplexity": "reference_perplexity", "words": "words"}[sort.lstrip("-")]
        known, unknown = [], []
        for r in out:
            (known if isinstance(r[key], (int, float)) and math.isfinite(r[key])
             else unknown).append(r)
        known.sort(key=lambda r: r[key], reverse=sort.startswith("-"))
        out = known + unknown
    return out[:limit] if limit is not None else out


def as_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def as_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def as_text(rows: list[dict], width: int = 80) -> str:
    """One sample per block: where it comes from and what is known of it, then its text."""
    import textwrap
    blocks = []
    for r in rows:
        known = [f"{r['words']} words"]
        if r["empty"]:
            known.append("EMPTY")
        if r["finished"] is False:
            known.append("cut at max_new_tokens")
        if r["valid"] is not None:
            known.append("grammatical" if r["valid"] else "NOT grammatical")
        if r["reference_perplexity"] is not None:
            known.append(f"perplexity under g0 {r['reference_perplexity']:.4g}")
        if r["curation"]:
            known.append(r["curation"])
        head = f"{r['policy']} s{r['seed']} g{r['generation']} {r['id']}: " + ", ".join(known)
        text = [f"  prompt: {r['prompt']}"] if r["prompt"] else []
        text += textwrap.wrap(r["text"] or "(empty)", width - 4, initial_indent="  > ",
                              subsequent_indent="    ") or ["  > (empty)"]
        blocks.append("\n".join(textwrap.wrap(head, width, subsequent_indent="    ") + text))
    return "\n".join(blocks)


def real_examples(run_dir: Path, seed: int, k: int) -> list[dict]:
    """The first ``k`` real training examples of a seed (its data stage's train.jsonl), as
    rows with the same columns (policy "real", generation None)."""
    run_dir = Path(run_dir)
    stages = _records(run_dir)
    found = stages.get("data", {}).get(f"s{seed}")
    if found is None or not (found[0] / "train.jsonl").is_file():
        return []
    rows = []
    for r in read_jsonl(found[0] / "train.jsonl")[:k]:
        text = r.get("target", "")
        rows.append({"policy": "real", "seed": seed, "generation": None, "id": r.get("id"),
                     "generator": None, "prompted_by": None,
                     "prompt": r.get("source") or None, "text": text,
                     "words": len(text.split()), "empty": not text.split(), "finished": True,
                     "valid": None, "reference_perplexity": None, "curation": None})
    return rows


def extremes(rows: list[dict], k: int = 2) -> list[tuple[str, dict]]:
    """Of one generation's samples, the ones worth reading: the ``k + 1`` highest and the
    ``k`` lowest perplexity under generation 0's model, up to ``k`` empty and up to ``k``
    ungrammatical ones (none twice), each with why it was picked."""
    scored = [r for r in rows if isinstance(r["reference_perplexity"], (int, float))
              and math.isfinite(r["reference_perplexity"])]
    scored.sort(key=lambda r: r["reference_perplexity"])
    picks: list[tuple[str, dict]] = []
    seen: set = set()

    def take(reason: str, candidates: list[dict], n: int) -> None:
        for r in candidates:
            if n <= 0:
                return
            if id(r) not in seen:
                seen.add(id(r))
                picks.append((reason, r))
                n -= 1
    take("highest perplexity", scored[::-1], k + 1)
    take("lowest perplexity", scored, k)
    take("empty", [r for r in rows if r["empty"]], k)
    take("not grammatical", [r for r in rows if r["valid"] is False], k)
    return picks
