"""Tasks and encodings: blocks, prompts, and which tokens the loss covers."""

import numpy as np

from ouroboros.config import GenerationConfig, TaskConfig
from ouroboros.models.encoding import IGNORE, Encoder, encode_examples, target_cut
from ouroboros.models.tokenizer import train_bpe_tokenizer, train_word_tokenizer
from ouroboros.tasks.conditional import Summarization, Translation
from ouroboros.tasks.lm import LanguageModelling


def test_lm_blocks_of_words():
    task = LanguageModelling(TaskConfig(block_words=3))
    ex = task.examples([{"text": "a b c d"}, {"text": "e f g"}], "train")
    assert [e["target"] for e in ex] == ["a b c", "d e f"]  # the incomplete tail is dropped
    assert all(e["source"] == "" for e in ex)


def test_lm_real_prefix_prompts_cover_every_real_example_in_order():
    task = LanguageModelling(TaskConfig())
    real = [{"id": f"r{i}", "source": "", "target": f"w{i} x y"} for i in range(4)]
    cfg = GenerationConfig(prompt="real-prefix", prefix_words=1)
    prompts = task.prompts(real, 4, cfg, np.random.default_rng(0))
    assert [p["source"] for p in prompts] == ["w0", "w1", "w2", "w3"]
    assert [p["prompted_by"] for p in prompts] == ["r0", "r1", "r2", "r3"]


def test_conditional_prompts_answer_every_real_source():
    task = Summarization(TaskConfig())
    real = task.examples([{"source": f"doc {i}", "target": f"s{i}"} for i in range(3)], "train")
    prompts = task.prompts(real, 3, GenerationConfig(), np.random.default_rng(0))
    assert [p["source"] for p in prompts] == ["doc 0", "doc 1", "doc 2"]
    assert task.context("doc") == "doc\nSummary:"
    assert Translation(TaskConfig(template="en: {source} de:")).context("x") == "en: x de:"


def test_decoder_only_loss_covers_only_the_target_and_the_template_is_never_cut():
    tok = train_word_tokenizer(["a b c Summary: x y"])
    enc = Encoder(tok, seq2seq=False, context_length=32, max_source_tokens=2)
    task = Summarization(TaskConfig())
    (ids, labels), = encode_examples(enc, task, [{"source": "a b c", "target": "x y"}])
    # [BOS] a b Summary: x y [EOS]: the source is cut to 2 tokens, the template stays whole
    assert tok.convert_ids_to_tokens(ids) == ["[BOS]", "a", "b", "Summary:", "x", "y", "[EOS]"]
    n_prompt = 1 + 2 + 1
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    (ids, labels), = encode_examples(enc, LanguageModelling(TaskConfig()),
                                     [{"source": "", "target": "a b"}])
    assert labels[1:] == ids[1:]  # plain language modelling: every token after BOS is learned


def test_an_unfinished_sample_is_learned_without_eos_and_a_cut_target_is_detected():
    tok = train_word_tokenizer(["a b c d e f"])
    enc = Encoder(tok, seq2seq=False, context_length=5, max_source_tokens=8)
    task = LanguageModelling(TaskConfig())
    done, unfinished, long = encode_examples(enc, task, [
        {"source": "", "target": "a b"}, {"source": "", "target": "a b", "finished": False},
        {"source": "", "target": "a b c d e f"}])
    assert done[0][-1] == tok.eos_token_id and unfinished[0][-1] != tok.eos_token_id
    assert len(unfinished[0]) == len(done[0]) - 1
    assert [target_cut(enc, x) for x in (done, long)] == [False, True]


def test_seq2seq_encoding_and_truncation():
    tok = train_bpe_tokenizer(["hello world", "hallo welt"] * 20, vocab_size=300)
    enc = Encoder(tok, seq2seq=True, context_length=5, max_source_tokens=3)
    task = Translation(TaskConfig())
    (ids, labels), = encode_examples(enc, task, [{"source": "hello world hello world",
                                                  "target": "hallo welt hallo welt hallo welt"}])
    assert len(ids) <= 4 and ids[-1] == tok.eos_token_id
    assert len(labels) == 5
    assert tok.decode(tok("hallo welt")["input_ids"]) == "hallo welt"  # byte-level round trip


def test_cut_count_counts_unfinished_synthetic_rows_that_lost_tokens():
    from ouroboros.experiment.builders.train import cut_count
    tok = train_word_tokenizer(["a b c d e f"])
    enc = Encoder(tok, seq2seq=False, context_length=5, max_source_tokens=8)
    task = LanguageModelling(TaskConfig())
    rows = [{"source": "", "target": "a b"},                              # fits
            {"source": "", "target": "a b c", "finished": False},         # BOS + 3: fits
            {"source": "", "target": "a b c d e", "finished": False},     # BOS + 5: cut
            {"source": "", "target": "a b c"}]                            # BOS + 3 + EOS: fits
    assert cut_count(enc, task, rows) == 1
    assert cut_count(enc, task, rows + [{"source": "", "target": "a b c d e"}]) == 2
