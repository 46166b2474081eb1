"""Examples -> token ids and labels, for decoder-only and encoder-decoder models.

Decoder-only: ``[BOS] context target [EOS]`` with the context's labels masked (-100), so the
loss covers only what a generation regenerates (for plain language modelling the context is
empty and the loss covers everything). Encoder-decoder: the source is the encoder input and the
target the labels. A long source is cut to ``max_source_tokens`` before the task's template is
put around it, so the template (e.g. "Summary:") is never cut away; training and generation cut
the same way. A target keeps its EOS only if it ended: a sample cut at ``max_new_tokens`` is
learned and scored as unfinished text, never as a finished one.
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

    def ids(self, text: str) -> list[int]:
        """Token ids of a text, no special tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt_ids(self, context: list[int]) -> list[int]:
        """What generation starts from: ``[BOS] context`` (decoder-only) or the encoder input."""
        if self.seq2seq:
            eos = self.tokenizer.eos_token_id
            return context + ([eos] if eos is not None else [])
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + context

    def pair(self, context: list[int], target: str,
             finished: bool = True) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one training or scoring example."""
        prompt = self.prompt_ids(context)
        eos = [self.tokenizer.eos_token_id] if finished else []
        tgt = self.ids(f" {target}" if context and not self.seq2seq else target) + eos
        if self.seq2seq:
            return prompt, tgt[:self.context_length]
        ids = (prompt + tgt)[:self.context_length]
        labels = ([IGNORE] * len(prompt) + tgt)[:self.context_length]
        return ids, labels


def context_ids(encoder: Encoder, task, source: str) -> list[int]:
    """The conditioning ids of a source: the source cut to ``max_source_tokens``, inside the
    task's template for decoder-only models (and for encoder-decoder ones only when the config
    gives a template); empty for no source."""
    if not source:
        return []
    body = encoder.ids(source)[:encoder.max_source_tokens]
    template = getattr(task, "template", None)  # lm has none: the prefix is the context
    templated = not encoder.seq2seq or task.cfg.template is not None
    if template is None or not templated:
        return body
    before, _, after = template.partition("{source}")
    literal = {"{{": "{", "}}": "}"}  # as str.format reads the template
    for k, v in literal.items():
        before, after = before.replace(k, v), after.replace(k, v)
    before_ids, after_ids = encoder.ids(before), encoder.ids(after)
    if not encoder.seq2seq:  # BOS, template and one target token must fit: never cut them
        room = encoder.context_length - len(before_ids) - len(after_ids) - 2
        if room < 1:
            raise ValueError(f"the template takes {len(before_ids) + len(after_ids)} tokens of "
                             f"a {encoder.context_length}-token context: no room for a source")
        body = body[:room]
    return before_ids + body + after_ids


def target_cut(encoder: Encoder, item: tuple[list[int], list[int]]) -> bool:
    """Whether an encoded finished example lost the end of its target (and its EOS) to the
    context length."""
    return item[1][-1] != encoder.tokenizer.eos_token_id if item[1] else True


def encode_examples(encoder: Encoder, task, examples: list[dict]) -> list[tuple[list[int],
                                                                               list[int]]]:
    """(ids, labels) per example; an example with ``finished: false`` gets no EOS."""
    return [encoder.pair(context_ids(encoder, task, e["source"]), e["target"],
                         e.get("finished", True) is not False)
            for e in examples]
