"""The bad-data matrix: every problem with real data files is exit code 2 with its file:line
or dotted path, from `run` and `validate` alike, before anything is written."""

import pytest

from ouroboros.cli import main

LM = ["data.source=files", "task.name=lm", "model.tokenizer=bpe", "model.vocab_size=300",
      "data.train_size=null", "data.valid_size=null", "data.test_size=null",
      "metrics.names=[perplexity]"]
SUM = LM[:1] + ["task.name=summarization", *LM[2:],
                "data.files.fields={source: document, target: summary}"]
LINES = "".join(f"line number {i} of some text\n" for i in range(40))
JSONL = "".join(f'{{"document": "dialogue {i}", "summary": "summary {i}"}}\n' for i in range(30))


def _files(**files):
    return files


CASES = [  # (files to write, overrides, what the error must say)
    ({"test.txt": LINES}, LM + ["data.files.train=train.txt", "data.files.test=test.txt"],
     "train.txt: no such file"),
    ({"test.txt": LINES, "train.txt/": None}, LM + ["data.files.train=train.txt",
                                                    "data.files.test=test.txt"],
     "train.txt: is a directory, not a file"),
    ({"train.txt": LINES, "test.txt": LINES},
     LM + ["data.files.train=train.txt", "data.files.test=test.txt", "data.train_size=100"],
     "data.train_size: asks for 100 examples, but the data hold 36"),
    ({"train.txt": LINES, "test.txt": LINES},
     LM + ["data.files.train=train.txt", "data.files.test=test.txt", "data.test_size=41"],
     "data.test_size: asks for 41 examples, but the data hold 40"),
    ({"train.txt": "", "test.txt": LINES}, LM + ["data.files.train=train.txt",
                                                 "data.files.test=test.txt"],
     "train.txt) has no examples"),
    ({"train.txt": b"good line\n\xff\xfe bad bytes\n", "test.txt": LINES},
     LM + ["data.files.train=train.txt", "data.files.test=test.txt"],
     "train.txt:2: not valid UTF-8"),
    ({"train.dat": LINES, "test.txt": LINES},
     LM + ["data.files.train=train.dat", "data.files.test=test.txt"],
     "train.dat: cannot tell the format from the extension"),
    ({"train.txt": LINES, "test.txt": LINES},
     LM + ["data.files.train=train.txt", "data.files.test=test.txt", "task.block_words=10000"],
     "shorter than one block of task.block_words=10000 words"),
    ({"src.txt": "a\nb\n\nd\n", "tgt.txt": "A\nB\nC\nD\n", "test.txt": LINES},
     SUM[:1] + ["task.name=translation", *LM[2:], "data.files.train=[src.txt, tgt.txt]",
                "data.files.test=[src.txt, tgt.txt]"],
     "src.txt:3: blank line in parallel data"),
    ({"src.txt": "a\nb\n", "tgt.txt": "A\n"},
     SUM[:1] + ["task.name=translation", *LM[2:], "data.files.train=[src.txt, tgt.txt]",
                "data.files.test=[src.txt, tgt.txt]"],
     "parallel files differ in length"),
    ({"train.jsonl": JSONL + '{"document": "d", "summary": null}\n', "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: field 'summary' (target) is null, not text"),
    ({"train.jsonl": JSONL + '{"document": "d", "summary": ["a", "b"]}\n',
      "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: field 'summary' (target) is a list, not text"),
    ({"train.jsonl": JSONL + '{"document": "d"}\n', "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: no field 'summary' for target (present: document)"),
    ({"train.jsonl": JSONL + "{broken\n", "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: not valid JSON"),
    ({"train.jsonl": JSONL + "[1, 2]\n", "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: each line must be a JSON object"),
    ({"train.csv": "document,summ\nd,s\n", "test.jsonl": JSONL},
     SUM + ["data.files.train=train.csv", "data.files.test=test.jsonl"],
     "train.csv:2: no field 'summary' for target"),
    ({"train.jsonl": JSONL + '{"document": "d \\ud800", "summary": "s"}\n', "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: a \\u escape names half of a UTF-16 surrogate pair"),
    ({"train.jsonl": JSONL + '{"document": 12345, "summary": "s"}\n', "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "train.jsonl:31: field 'document' (source) is a int (12345), not text"),
    ({"train.jsonl": JSONL + '{"document": "d", "summary": true}\n', "test.jsonl": JSONL},
     SUM + ["data.files.train=train.jsonl", "data.files.test=test.jsonl"],
     "field 'summary' (target) is a bool (True), not text"),
    ({"train.csv": "document,summary\n" + "x" * 200_000 + ",s\n" + "d,s\n" * 30,
      "test.jsonl": JSONL},
     SUM + ["data.files.train=train.csv", "data.files.test=test.jsonl", "data.train_size=31",
            "data.files.fields={source: document, target: nope}"],
     "train.csv:2: no field 'nope'"),  # a 200,000-character cell is read, not a traceback
    ({"train.parquet": "not parquet at all", "test.jsonl": JSONL},
     SUM + ["data.files.train=train.parquet", "data.files.test=test.jsonl"],
     "train.parquet: not a readable Parquet file"),
]


def _write(root, files):
    for name, content in files.items():
        path = root / name.rstrip("/")
        if name.endswith("/"):
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.mark.parametrize("verb", ["run", "validate"])
@pytest.mark.parametrize(("files", "overrides", "message"), CASES,
                         ids=[str(i) for i in range(len(CASES))])
def test_bad_data_is_refused_before_anything_is_written(tmp_path, capsys, verb, files,
                                                        overrides, message):
    data = tmp_path / "data"
    data.mkdir()
    _write(data, files)
    out = tmp_path / "run"
    args = [verb, *(["--out", str(out)] if verb == "run" else []),
            f"data.files.root={data}", *overrides]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and not out.exists()


def test_csv_with_a_byte_order_mark_is_read(tmp_path, capsys):
    """Spreadsheet exports start with a BOM; the header's first column is still 'document'."""
    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"dialogue {i},summary {i}\n" for i in range(30))
    (data / "train.csv").write_text("\ufeffdocument,summary\n" + rows, encoding="utf-8")
    (data / "test.csv").write_text("\ufeffdocument,summary\n" + rows, encoding="utf-8")
    assert main(["validate", f"data.files.root={data}", *SUM, "data.files.train=train.csv",
                 "data.files.test=test.csv"]) == 0, capsys.readouterr().err


def test_matrix_is_large():
    assert len(CASES) >= 15


def test_missing_trait_file_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    trait = ("metrics.traits=[{trait: toxicity, scorer: classifier, file: "
             f"{tmp_path}/labels.csv, text: tweet, label: class, positive: ['1']}}]")
    assert main(["run", "--out", str(out), "metrics.names=[perplexity, traits]", trait]) == 2
    assert f"metrics.traits.0.file: {tmp_path}/labels.csv: no such file" in \
        capsys.readouterr().err
    assert not out.exists()


def test_tsv_quotes_are_text_and_cr_only_line_endings_are_lines(tmp_path, capsys):
    """A TSV cell starting with a quote mark swallowed the next 100 rows; a file with old Mac
    line endings (CR only) was one line."""
    from ouroboros.data.files import read_delimited, read_text
    tsv = tmp_path / "a.tsv"
    tsv.write_text("document\tsummary\n" + '"quoted start\tx\n'
                   + "".join(f"d{i}\ts{i}\n" for i in range(100)))
    rows = read_delimited(tsv, "\t")
    assert len(rows) == 101 and rows[0]["document"] == '"quoted start'
    assert rows[-1]["_line"] == 102
    cr = tmp_path / "cr.txt"
    cr.write_bytes(b"one line\rtwo line\rthree\r")
    assert [r["text"] for r in read_text(cr)] == ["one line", "two line", "three"]


@pytest.mark.parametrize("kind", ["fifo", "loop"])
def test_a_fifo_or_a_symlink_loop_says_what_it_is(tmp_path, kind):
    import os

    from ouroboros.data.files import DataError, read_text
    path = tmp_path / "train.txt"
    if kind == "fifo":
        os.mkfifo(path)
        expected = r"not a regular file \(a FIFO"
    else:
        os.symlink(tmp_path / "other", path)
        os.symlink(path, tmp_path / "other")
        expected = "a loop of symbolic links"
    with pytest.raises(DataError, match=expected):
        read_text(path)


def test_a_quoted_csv_cell_keeps_its_line_breaks(tmp_path):
    from ouroboros.data.files import read_delimited
    path = tmp_path / "a.csv"
    path.write_text('text,label\n"line one\nline two",1\nplain,0\n')
    rows = read_delimited(path, ",")
    assert [r["text"] for r in rows] == ["line one\nline two", "plain"]
    assert [r["_line"] for r in rows] == [2, 4]


def test_a_trait_tsv_with_a_leading_quote_is_read_whole(tmp_path):
    from ouroboros.config import TraitConfig
    from ouroboros.metrics.traits import _read_labeled
    path = tmp_path / "labels.tsv"
    rows = [f"text {i}\t{i % 2}" for i in range(101)]
    rows[50] = '"quoted text\t1'
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    cfg = TraitConfig(trait="t", scorer="classifier", file=str(path), text="text",
                      label="label", positive=["1"])
    texts, labels = _read_labeled(cfg)
    assert len(texts) == 101 and texts[50] == '"quoted text'
