"""Metric values with signatures: name, version, parameters, sample count and seed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol


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

    @property
    def signature(self) -> str:
        """``metric|v1|n=2000|seed=0|k=v...``, in the style of sacrebleu signatures."""
        parts = [self.metric, f"v{self.version}", f"n={self.n}", f"seed={self.seed}"]
        parts += [f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v}"
                  for k, v in sorted(self.params.items())]
        return "|".join(parts)


@dataclass
class EvalContext:
    """What a metric may look at for one generation of one cell."""

    samples: list[str]                 # texts the generation's model generated (its data)
    real_test: list[dict]              # real held-out test examples (never synthetic)
    seed: int
    truth: Any = None                  # GroundTruthLanguage when the data has one
    model: Any = None                  # the generation's model, loaded, eval mode
    tokenizer: Any = None
    encoder: Any = None                # models.encoding.Encoder of the model family
    task: Any = None
    predictions: list[str] | None = None  # model outputs for real test sources (conditional)
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
    def test_texts(self) -> list[str]:
        """The real test examples as full texts."""
        return [self.task.text(e) for e in self.real_test]


class Metric(Protocol):
    """A metric plug-in: a function from the context to values."""

    def __call__(self, ctx: EvalContext) -> list[MetricValue]:
        """Every value this metric computes for the context."""
