"""Tokenizers for from-scratch models, learned with ``tokenizers`` from the real training split
only and frozen for all generations: word-level (the ground-truth language) or byte-level BPE
(real text: no unknown tokens, every string is encodable)."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK,
                                   bos_token=BOS, eos_token=EOS)


def train_word_tokenizer(texts: list[str],
                         vocabulary: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer.

    With ``vocabulary`` (a closed language's lexicon, part of the language's definition) its
    words are exactly that list, so every sentence of the language is encodable and no test
    word falls back to [UNK]; otherwise every word in ``texts``.
    """
    if vocabulary is not None:
        words = list(dict.fromkeys(vocabulary))
        vocab = {w: i for i, w in enumerate(SPECIAL_TOKENS + [w for w in words
                                                              if w not in SPECIAL_TOKENS])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return _wrap(tok)
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS,
                                                             min_frequency=1))
    return _wrap(tok)


def train_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style) with at most ``vocab_size`` tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _wrap(tok)
