"""Local data files: every format, field mapping, and errors that name the file and line."""

import json

import pytest

from ouroboros.data.files import DataError, map_fields, read_split


def test_formats_read_the_same_records(tmp_path):
    rows = [{"doc": "a b", "sum": "a"}, {"doc": "c d", "sum": "c"}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "d.csv").write_text("doc,sum\na b,a\nc d,c\n")
    (tmp_path / "d.tsv").write_text("doc\tsum\na b\ta\nc d\tc\n")
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.csv", "d.tsv", "d.parquet"):
        records, _ = read_split(name, "auto", tmp_path)
        mapped = map_fields(records, {"source": "doc", "target": "sum"}, ("source", "target"),
                            name)
        assert [{k: v for k, v in m.items() if k != "_line"} for m in mapped] == [
            {"source": "a b", "target": "a"}, {"source": "c d", "target": "c"}]
        assert [m["_line"] for m in mapped][0] in (1, 2)  # traceable to the file


def test_text_and_parallel(tmp_path):
    (tmp_path / "t.txt").write_text("one two\n\n  three  \n")
    records, _ = read_split("t.txt", "auto", tmp_path)
    assert [r["text"] for r in records] == ["one two", "three"]
    (tmp_path / "a.en").write_text("hello\nworld\n")
    (tmp_path / "a.de").write_text("hallo\nwelt\n")
    records, where = read_split(["a.en", "a.de"], "parallel", tmp_path)
    assert [(r["source"], r["target"]) for r in records] == [("hello", "hallo"),
                                                             ("world", "welt")]


def test_parallel_files_of_different_length(tmp_path):
    (tmp_path / "a.en").write_text("1\n2\n3\n")
    (tmp_path / "a.de").write_text("1\n2\n")
    with pytest.raises(DataError, match=r"a.en has 3 lines, .*a.de has 2"):
        read_split(["a.en", "a.de"], "parallel", tmp_path)


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\nstill fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=r"bad.txt:3: not valid UTF-8"):
        read_split("bad.txt", "auto", tmp_path)


def test_missing_field_and_bad_json(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"doc": "x", "sum": "y"}\n{"doc": "z"}\n')
    records, where = read_split("d.jsonl", "auto", tmp_path)
    with pytest.raises(DataError, match=r"d.jsonl:2: no field 'sum' for target \(present: doc\)"):
        map_fields(records, {"source": "doc", "target": "sum"}, ("source", "target"), where)
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n{broken\n')
    with pytest.raises(DataError, match=r"e.jsonl:2: not valid JSON"):
        read_split("e.jsonl", "auto", tmp_path)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file"):
        read_split("nope.txt", "auto", tmp_path)
    (tmp_path / "x.dat").write_text("a\n")
    with pytest.raises(DataError, match="set data.files.format"):
        read_split("x.dat", "auto", tmp_path)
