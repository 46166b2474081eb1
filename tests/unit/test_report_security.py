"""A crafted run directory cannot put script into report.html or write outside report/."""

import csv
import json
from html.parser import HTMLParser

from ouroboros.experiment.rundir import METRIC_COLUMNS
from ouroboros.report.html import render_report
from ouroboros.report.plots import safe_filename

HOSTILE = ["x' onload='alert(3)", "<script>alert(1)</script>", "../../evil",
           "\"><img src=x onerror=alert(2)>"]


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_hostile_names_stay_text_and_inside_the_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        for i, name in enumerate(HOSTILE):
            for g in (0, 1):
                w.writerow({"cell": f"{name}-s0", "policy": name, "seed": 0, "generation": g,
                            "metric": name, "value": 1.0 + i + g, "higher_is_better": "True",
                            "signature": f"{name}|v1"})
    with open(run / "composition.csv", "w", encoding="utf-8") as f:
        f.write("cell,policy,seed,generation,origin,count\n"
                f"c,\"{HOSTILE[0]}\",0,0,\"{HOSTILE[1]}\",3\n")
    (run / "config.yaml").write_text(f"name: '{HOSTILE[1]}'\n")
    sample = {"policy": HOSTILE[1], "seed": 0, "generation": 0, "slot": 0, "text": HOSTILE[3],
              "prompt": HOSTILE[3], "valid": True, "reference_perplexity": 3.0,
              "curation": HOSTILE[0], "generator": HOSTILE[1], "finished": True}
    malformed = {**sample, "seed": "<img src=x onerror=alert(4)>",
                 "generation": "<img src=x onerror=alert(5)>"}
    (run / "samples_preview.jsonl").write_text(
        "\n".join([json.dumps(sample), json.dumps(malformed), "<img src=x onerror=alert(6)>",
                   "[" * 100_000, '{"seed": ' + "9" * 5000 + "}"]))
    with open(run / "samples_preview.jsonl", "ab") as f:
        f.write(b"\n\xff\xfe not UTF-8")
    before = {p for p in tmp_path.rglob("*")}
    page = render_report(run).read_text()

    parsed = _Elements()
    parsed.feed(page)
    # Exactly the page's own three scripts: the figures' JSON, Plotly, and the page's code.
    assert parsed.tags.count("script") == 3
    data = page.split('id="ouroboros-figures">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data  # the JSON cannot end its element
    assert not [a for a in parsed.attrs if a.startswith("on")]
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2",
                                "p", "pre", "div", "table", "thead", "tbody", "tr", "th", "td",
                                "small", "details", "summary", "caption", "code", "script",
                                "span"}
    text = "".join(parsed.text)
    assert all(name in text for name in HOSTILE)  # shown as text, not markup
    assert "5 malformed line(s) of samples_preview.jsonl skipped" in text
    written = {p for p in tmp_path.rglob("*")} - before
    assert all(p.is_relative_to(run / "report") for p in written), written
    assert not (tmp_path / "evil.png").exists()


def test_safe_filenames():
    assert safe_filename("perplexity") == "perplexity"
    for name in HOSTILE + ["", ".hidden", "a/b", "é"]:
        safe = safe_filename(name)
        assert safe and "/" not in safe and not safe.startswith(".")
        assert set(safe) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert safe_filename("a/b") != safe_filename("a_b")


def test_figure_json_cannot_close_its_script_element():
    from ouroboros.report.html import _json_for_script
    value = {"name": "</script><script>alert(1)</script><!--", "x": [1.5, None]}
    text = _json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value
