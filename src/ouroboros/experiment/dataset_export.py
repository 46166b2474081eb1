"""``ouroboros export RUN --out DIR``: every generation's data of a run as datasets another tool
can read, with lineage.

Tables (one row per example):

* ``samples``: every sample every model generated (policy, seed, generation, id, generator: the
  model that wrote it, prompted_by, prompt, text, words, empty, finished, valid,
  reference_perplexity, curation outcome);
* ``trainsets``: every training set each model was given (policy, seed, ``trained_at``: the
  generation of the model trained on it, and per example its id, source, target, origin: real
  or synthetic, ``generation`` of the data, ``model`` that wrote it, prompted_by, and
  ``used_for``: training, or validation where ``training.selection_split: synthetic`` held it
  out for model selection);
* ``real_train``, ``real_valid``, ``real_test``: the real splits of every seed;
* ``predictions``: each model's outputs for the real test sources (conditional tasks), with the
  reference, so any external scorer can score them.

Formats: ``parquet`` (a file per table, ``pandas.read_parquet`` / ``load_dataset("parquet",
data_files=...)``), ``jsonl`` (a file per table), ``hf`` (a ``datasets.DatasetDict`` saved with
``save_to_disk``, read with ``load_from_disk``). Nested values are JSON text in every format.
"""

from __future__ import annotations

import json
from pathlib import Path

from ouroboros.experiment import samples as browse
from ouroboros.experiment.samples import inside
from ouroboros.experiment.stages import read_jsonl

FORMATS = ("parquet", "jsonl", "hf")


class ExportError(ValueError):
    """A run that cannot be exported, or an --out that would overwrite something."""


def _flat(row: dict) -> dict:
    """Scalars as they are, anything nested as JSON text (one column type per column)."""
    return {k: v if v is None or isinstance(v, (str, int, float, bool))
            else json.dumps(v, ensure_ascii=False, sort_keys=True) for k, v in row.items()}


def tables(run_dir: Path) -> dict[str, list[dict]]:
    """Every table of the run (module docstring), as lists of flat rows."""
    run_dir = Path(run_dir)
    index_path = run_dir / "cells.json"
    if not index_path.is_file():
        raise ExportError(f"{run_dir} has no cells.json (written with the run's tables since "
                          f"this version): `ouroboros resume {run_dir}` writes it")
    index = json.loads(index_path.read_text())
    out: dict[str, list[dict]] = {"samples": [_flat(r) for r in browse.read_samples(run_dir)],
                                  "trainsets": [], "real_train": [], "real_valid": [],
                                  "real_test": [], "predictions": []}
    seeds_done: set[int] = set()
    for cell in index["cells"]:
        key = {"policy": cell["policy"], "seed": cell["seed"]}
        for g in cell["generations"]:
            if g.get("trainset"):
                path = inside(run_dir, g["trainset"]) / "trainset.jsonl"
                held = inside(run_dir, g.get("model") or ".") / "holdout.json"
                held_out = (set(json.loads(held.read_text())["ids"])
                            if g.get("model") and held.is_file() else set())
                if path.is_file():
                    out["trainsets"] += [
                        _flat({**key, "trained_at": g["generation"], **r,
                               "used_for": ("validation" if r.get("id") in held_out
                                            else "training")})
                        for r in read_jsonl(path)]
            path = inside(run_dir, g["evaluate"]) / "predictions.jsonl"
            if path.is_file():
                out["predictions"] += [
                    _flat({**key, "generation": g["generation"],
                           "model": g.get("model"), **r}) for r in read_jsonl(path)]
        if cell["seed"] in seeds_done:  # real splits are per seed, shared by its cells
            continue
        seeds_done.add(cell["seed"])
        for split, folder in (("train", cell.get("data")), ("valid", cell.get("data")),
                              ("test", cell.get("test"))):
            path = inside(run_dir, folder) / f"{split}.jsonl" if folder else None
            if path is not None and path.is_file():
                out[f"real_{split}"] += [_flat({"seed": cell["seed"], **r})
                                         for r in read_jsonl(path)]
    return out


def _one_type(rows: list[dict]) -> list[dict]:
    """Columns whose values are of several types (an int in one stage's rows, text in
    another's, e.g. ``request``) as text, so every format has one type per column."""
    kinds: dict[str, set] = {}
    for r in rows:
        for k, v in r.items():
            if v is not None:
                kinds.setdefault(k, set()).add(float if type(v) in (int, float) else type(v))
    mixed = {k for k, t in kinds.items() if len(t) > 1}
    if not mixed:
        return rows
    return [{k: (str(v) if k in mixed and v is not None else v) for k, v in r.items()}
            for r in rows]


def export(run_dir: Path, out: Path, fmt: str = "parquet") -> dict[str, int]:
    """Write the run's tables to ``out`` (a new or empty folder) in ``fmt``; rows per table.
    Everything is written into a sibling folder first and moved into place at the end, so a
    failure leaves ``out`` as it was."""
    import shutil
    import tempfile
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: exists and is not an empty folder (nothing is "
                          f"overwritten)")
    try:
        found = {name: _one_type(rows) for name, rows in tables(run_dir).items()}
    except browse.SamplesError as e:
        raise ExportError(str(e)) from e
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write(found, work, fmt)
        if out.exists():
            out.rmdir()  # empty (checked above)
        work.rename(out)
    except (OSError, ValueError, TypeError) as e:
        shutil.rmtree(work, ignore_errors=True)
        raise ExportError(f"export to {out} failed, nothing written: {e}") from e
    return {name: len(rows) for name, rows in found.items()}


def _write(found: dict[str, list[dict]], out: Path, fmt: str) -> None:
    import pandas as pd
    frames = {name: pd.DataFrame(rows) for name, rows in found.items() if rows}
    if fmt == "hf":
        import datasets
        from datasets import Dataset, DatasetDict
        datasets.disable_progress_bars()
        DatasetDict({name: Dataset.from_pandas(df, preserve_index=False)
                     for name, df in frames.items()}).save_to_disk(str(out))
        return
    for name, df in frames.items():
        if fmt == "parquet":
            df.to_parquet(out / f"{name}.parquet", index=False)
        else:
            with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for r in found[name]:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
