"""Metric values with signatures (name, version, sample count, seed, parameters) that read back
whole; the context a metric sees."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

# The signature's own fields; a parameter may not reuse their names (two ``seed=`` would say
# nothing about which seed is the evaluation's).
RESERVED = ("v", "n", "seed")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class MetricValue:
    """One number and everything needed to know what it is."""

    metric: str
    value: float
    version: int
    n: int
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool | None = None

    def __post_init__(self) -> None:
        check_names(self.metric, self.params)

    @property
    def signature(self) -> str:
        """``metric|v1|n=2000|seed=0|k=v...``, in the style of sacrebleu signatures."""
        return format_signature(self.metric, self.version, self.n, self.seed, self.params)


def check_names(metric: str, params: dict[str, Any]) -> None:
    """Refuse names that would make a signature ambiguous: ``|`` in the metric's name, a
    parameter named like a signature field, ``|`` or ``=`` in a parameter's name."""
    bad = [k for k in params if k in RESERVED or not k or "|" in k or "=" in k]
    if "|" in metric or not metric or bad:
        raise ValueError(f"metric {metric!r}: parameter names {bad} or the metric name would "
                         f"make its signature ambiguous (reserved: {', '.join(RESERVED)}; no "
                         f"'|' in names, no '=' in parameter names)")


def format_signature(metric: str, version: int, n: int, seed: int,
                     params: dict[str, Any]) -> str:
    """The signature text; ``parse_signature`` reads it back."""
    parts = [metric, f"v{version}", f"n={n}", f"seed={seed}"]
    return "|".join(parts + [f"{k}={_value_text(v)}" for k, v in sorted(params.items())])


def _value_text(value: Any) -> str:
    """A parameter value as signature text: a string as itself when that reads back as the
    same string, anything else as canonical JSON (quoted, so ``|`` and ``=`` inside are safe)."""
    if isinstance(value, str) and _bare(value):
        return value
    return json.dumps(json.loads(json.dumps(value, default=_jsonable)), sort_keys=True)


def _bare(text: str) -> bool:
    """True when ``text`` can stand unquoted: no ``|`` or ``=``, does not open like JSON text,
    and is no JSON literal (``1``, ``true``, ``null`` must stay numbers, booleans, null)."""
    if not text or "|" in text or "=" in text or text[0] in "\"[{":
        return False
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def _jsonable(obj: Any) -> Any:
    """numpy scalars as Python numbers, anything else JSON cannot write as its text."""
    return obj.item() if hasattr(obj, "item") else str(obj)


def parse_signature(text: str) -> dict[str, Any]:
    """The fields of a signature: ``format_signature(**parse_signature(s)) == s``. Raises
    ValueError on a repeated key or on text ``format_signature`` cannot have written."""
    metric, _, rest = text.partition("|")
    version, _, rest = rest.partition("|")
    fields = _parse_pairs(rest)
    if not version[1:].isdigit() or list(fields)[:2] != ["n", "seed"]:
        raise ValueError(f"not a metric signature: {text!r}")
    out = {"metric": metric, "version": int(version[1:]), "n": fields.pop("n"),
           "seed": fields.pop("seed"), "params": fields}
    if format_signature(**out) != text:  # e.g. a trailing "|", unsorted keys, n=true
        raise ValueError(f"not a signature format_signature writes: {text!r}")
    return out


def _parse_pairs(text: str) -> dict[str, Any]:
    """``k=v|k=v...``: a value opening like JSON text is read as one JSON value, any other up to
    the next ``|`` (as JSON if it is a JSON literal, else as the string itself)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        key = text[i:eq] if eq >= 0 else ""
        if not key or "|" in key or key in out:
            raise ValueError(f"repeated or malformed key at {text[i:]!r}")
        if text[eq + 1:eq + 2] in ('"', "[", "{"):
            out[key], i = _DECODER.raw_decode(text, eq + 1)
        else:
            end = text.find("|", eq + 1)
            i = len(text) if end < 0 else end
            out[key] = _literal(text[eq + 1:i])
        if i < len(text) and text[i] != "|":
            raise ValueError(f"expected '|' at {text[i:]!r}")
        i += 1
    return out


def _literal(text: str) -> Any:
    """An unquoted value: a JSON number, boolean or null, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class EvalContext:
    """What a metric may look at for one generation of one cell."""

    samples: list[str]                 # the samples as full texts (real prefix included)
    real_test: list[dict]              # real held-out test examples (never synthetic)
    seed: int
    truth: Any = None                  # GroundTruthLanguage when the data has one
    model: Any = None                  # the generation's model, loaded, eval mode
    tokenizer: Any = None
    encoder: Any = None                # models.encoding.Encoder of the model family
    task: Any = None
    predictions: list[str] | None = None  # model outputs for real test sources (conditional)
    train_predictions: dict[str, str] | None = None  # real training id -> output (accuracy)
    real_train: list[dict] = field(default_factory=list)  # the real training examples
    sample_rows: list[dict] = field(default_factory=list)  # the samples with source/target
    reference_model: Any = None        # the frozen generation-0 model of this seed
    artifacts: dict[str, Any] = field(default_factory=dict)  # per-sample values to save
    batch_size: int = 128
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)  # MetricsConfig as a dict

    @property
    def references(self) -> list[str]:
        """The original real targets of the scored test examples."""
        return [e["target"] for e in self.real_test[:len(self.predictions or [])]]

    @property
    def generated(self) -> list[str]:
        """What the model generated of each sample: its target (with real-prefix prompts the
        continuation, not the real prefix it was given; a back-translated pair's source, its
        target being real); ``samples`` where no rows are given."""
        if not self.sample_rows:
            return self.samples
        return [r["source"] if r.get("generated") == "source" else r["target"]
                for r in self.sample_rows]

    @property
    def test_texts(self) -> list[str]:
        """The real test examples as full texts."""
        return [self.task.text(e) for e in self.real_test]


class Metric(Protocol):
    """A metric plug-in: a function from the context to values."""

    def __call__(self, ctx: EvalContext) -> list[MetricValue]:
        """Every value this metric computes for the context."""
