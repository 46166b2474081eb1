"""Word-level tokenizer built with ``tokenizers`` from the real training split only.

It is frozen for all generations: words a later generation invents, or real words the real
training split never showed, map to ``[UNK]``.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]


def train_word_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer whose vocabulary is every word in ``texts``."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS,
                                                             min_frequency=1))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK,
                                   bos_token=BOS, eos_token=EOS)


def encode_sequences(tokenizer: PreTrainedTokenizerFast, texts: list[str],
                     context_length: int) -> list[list[int]]:
    """``[BOS] text [EOS]`` token ids per text, cut to ``context_length`` tokens."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return [([bos] + x + [eos])[:context_length] for x in ids]
