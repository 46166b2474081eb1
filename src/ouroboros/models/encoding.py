"""Examples -> token ids and labels, for decoder-only and encoder-decoder models.

Decoder-only: ``[BOS] context target [EOS]`` with the context's labels masked (-100), so the
loss covers only what a generation regenerates (for plain language modelling the context is
empty and the loss covers everything). Encoder-decoder: the source is the encoder input and the
target the labels. Sources are cut to ``max_source_tokens`` the same way in training and in
generation.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100


@dataclass(frozen=True)
class Encoder:
    """How one model family turns (context, target) text into ids."""

    tokenizer: object
    seq2seq: bool
    context_length: int
    max_source_tokens: int

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt_ids(self, context: str) -> list[int]:
        """What generation starts from: ``[BOS] context`` (decoder-only) or the encoder input."""
        ids = self._ids(context)[:self.max_source_tokens]
        if self.seq2seq:
            eos = self.tokenizer.eos_token_id
            return ids + ([eos] if eos is not None else [])
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + ids

    def pair(self, context: str, target: str) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one training or scoring example."""
        prompt = self.prompt_ids(context)
        eos = self.tokenizer.eos_token_id
        tgt = self._ids(f" {target}" if context and not self.seq2seq else target) + [eos]
        if self.seq2seq:
            return prompt, tgt[:self.context_length]
        ids = (prompt + tgt)[:self.context_length]
        labels = ([IGNORE] * len(prompt) + tgt)[:self.context_length]
        return ids, labels


def context_of(encoder: Encoder, task, source: str) -> str:
    """The conditioning text of a source: templated for decoder-only models (and for
    encoder-decoder ones only when the config gives a template), empty for no source."""
    if not source:
        return ""
    return task.context(source, not encoder.seq2seq or task.cfg.template is not None)


def encode_examples(encoder: Encoder, task, examples: list[dict]) -> list[tuple[list[int],
                                                                               list[int]]]:
    """(ids, labels) per example, the context built by the task."""
    return [encoder.pair(context_of(encoder, task, e["source"]), e["target"])
            for e in examples]
