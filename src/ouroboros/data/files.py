"""Readers for local data files: text, JSON Lines, CSV/TSV, Parquet, line-aligned parallel text.

Every reader returns plain dict records and names the file and line of anything it cannot read
(bytes that are not UTF-8, a broken JSON line, a missing field), so bad input fails with a clear
message before any training starts.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import stat
from pathlib import Path

MAX_CELL = 1 << 24  # characters in one CSV/TSV cell (csv's default limit is 131,072)


class DataError(ValueError):
    """Real data that cannot be used, with the file (and line) at fault."""


def _must_be_file(path: Path) -> None:
    """A DataError unless ``path`` is a regular file, saying what it is instead."""
    try:
        mode = path.stat().st_mode  # follows links; a loop of links is ELOOP
    except OSError as e:
        what = {errno.ENOENT: "no such file", errno.ELOOP: "a loop of symbolic links",
                errno.EACCES: "not readable (permission denied)"}.get(e.errno, e.strerror)
        raise DataError(f"{path}: {what}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(mode):  # a FIFO would block the run, a device never end
        raise DataError(f"{path}: is not a regular file (a FIFO, socket or device)")


def _lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, without line endings (\\n, \\r\\n or a lone \\r, as
    old Mac files end lines); bad bytes name file and line."""
    _must_be_file(path)
    out = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f.read().splitlines(), 1):
            try:
                # A byte-order mark (spreadsheet exports) is not part of the first line.
                out.append(raw.decode("utf-8-sig" if i == 1 else "utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{i}: not valid UTF-8 "
                                f"(byte {e.start}: {e.reason})") from None
    return out


def read_text(path: Path) -> list[dict]:
    """One record per non-blank line: ``{"text": line}`` (surrounding spaces stripped)."""
    return [{"text": line.strip(), "_line": i} for i, line in enumerate(_lines(path), 1)
            if line.strip()]


def read_jsonl(path: Path) -> list[dict]:
    """One record per non-blank line, each a JSON object."""
    records = []
    for i, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{i}: each line must be a JSON object")
        try:  # "\\ud800" parses to a lone surrogate, which no file can hold later
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{path}:{i}: a \\u escape names half of a UTF-16 surrogate "
                            f"pair, which is not a character") from None
        records.append({**obj, "_line": i})
    return records


def read_delimited(path: Path, delimiter: str) -> list[dict]:
    """Rows of a CSV/TSV file with a header line. TSV has no quoting (a cell starting with
    a quote mark is text, never the start of a cell running over later lines); CSV quotes as
    spreadsheets write it."""
    csv.field_size_limit(MAX_CELL)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # Lines with their ends: a quoted CSV cell may run over several lines and keeps them.
    reader = csv.DictReader([line + "\n" for line in _lines(path)], delimiter=delimiter,
                            quoting=quoting)
    rows = []
    try:
        start = 2
        for row in reader:
            rows.append({**row, "_line": start})
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: {e}") from None
    return rows


def read_parquet(path: Path) -> list[dict]:
    """Rows of a Parquet file (via pyarrow)."""
    _must_be_file(path)
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:  # not Parquet, or a broken file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: not a readable Parquet file ({first})") from None
    return [{**row, "_line": i} for i, row in enumerate(table.to_pylist(), 1)]


def read_parallel(source: Path, target: Path) -> list[dict]:
    """Line-aligned source and target files: ``{"source", "target"}`` per line pair."""
    src, tgt = _lines(source), _lines(target)
    if len(src) != len(tgt):
        raise DataError(f"parallel files differ in length: {source} has {len(src)} lines, "
                        f"{target} has {len(tgt)}")
    for i, (s, t) in enumerate(zip(src, tgt, strict=True), 1):
        if not s.strip() or not t.strip():  # would become an empty example, or a pair shifted
            raise DataError(f"{source if not s.strip() else target}:{i}: blank line in "
                            f"parallel data (every line pairs with the other file's line {i})")
    return [{"source": s.strip(), "target": t.strip(), "_line": i}
            for i, (s, t) in enumerate(zip(src, tgt, strict=True), 1)]


FORMATS = {".txt": "text", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet"}


def split_paths(spec: str | list[str], root: Path | None) -> list[Path]:
    """The file(s) of one split: a path or a [source, target] pair, relative to ``root``."""
    paths = [Path(p) for p in (spec if isinstance(spec, list) else [spec])]
    return [root / p if root is not None and not p.is_absolute() else p for p in paths]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: data is identified by content, not by where it lies."""
    _must_be_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_split(spec: str | list[str], fmt: str, root: Path | None) -> tuple[list[dict], str]:
    """(records, description) of one split given as a path or a [source, target] pair."""
    paths = split_paths(spec, root)
    if fmt == "parallel" or len(paths) == 2:
        if len(paths) != 2:
            raise DataError(f"parallel data needs [source, target] files, got {spec}")
        return read_parallel(*paths), f"{paths[0]} + {paths[1]}"
    path = paths[0]
    if fmt == "auto":
        fmt = FORMATS.get(path.suffix.lower(), "")
        if not fmt:
            raise DataError(f"{path}: cannot tell the format from the extension; set "
                            f"data.files.format")
    readers = {"text": read_text, "jsonl": read_jsonl, "parquet": read_parquet,
               "csv": lambda p: read_delimited(p, ","), "tsv": lambda p: read_delimited(p, "\t")}
    return readers[fmt](path), str(path)


def map_fields(records: list[dict], fields: dict[str, str], needed: tuple[str, ...],
               where: str) -> list[dict]:
    """Records with the ``needed`` fields, renamed by ``fields`` (ours -> theirs), keeping the
    line they came from (``_line``) so every example can be traced back to its file."""
    out = []
    for r in records:
        row = {"_line": r["_line"]} if "_line" in r else {}
        for name in needed:
            column = fields.get(name, name)
            value = r.get(column)
            line = f"{where}:{r.get('_line', '?')}"
            if column not in r:
                present = sorted(k for k in r if k != "_line")
                raise DataError(f"{line}: no field '{column}' for {name} (present: "
                                f"{', '.join(present)}); map it with data.files.fields")
            if value is None:
                raise DataError(f"{line}: field '{column}' ({name}) is null, not text")
            if isinstance(value, list | dict):
                raise DataError(f"{line}: field '{column}' ({name}) is a "
                                f"{type(value).__name__}, not text (pick one element when "
                                f"preparing the data)")
            if not isinstance(value, str):  # 12345, true, NaN: never silently "12345"
                raise DataError(f"{line}: field '{column}' ({name}) is a "
                                f"{type(value).__name__} ({value!r}), not text (quote it in "
                                f"the file if it is meant as text)")
            row[name] = value
        out.append(row)
    return out
