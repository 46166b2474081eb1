"""The lean GPT-2 forward (models/gpt2_fast.py) against Hugging Face's: the same loss and
gradients and trained weights (to rounding), the same batches; models it does not cover go
through Hugging Face."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ouroboros.config import load_config
from ouroboros.models import gpt2_fast
from ouroboros.models.scoring import collate
from ouroboros.training import trainer

from ..conftest import TINY, lm_items


def _batch(tok, texts):
    return collate(lm_items(tok, texts), tok.pad_token_id)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_loss_and_gradients_are_hugging_faces(tiny_model, dropout):
    model, tok, _, texts = tiny_model
    model = copy.deepcopy(model)
    for m in model.modules():  # dropout: the same masks need the same random stream order
        if isinstance(m, torch.nn.Dropout):
            m.p = dropout
    batch = _batch(tok, texts[:16])  # right-padded: sentences of many lengths
    assert (batch["attention_mask"] == 0).any()
    model.train()
    torch.manual_seed(0)
    ref = model(**batch).loss
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    torch.manual_seed(0)
    ours = gpt2_fast.lm_loss(model, batch["input_ids"], batch["labels"])
    grads = torch.autograd.grad(ours, list(model.parameters()))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_trained_model_is_the_one_hugging_faces_forward_trains(tiny_model, monkeypatch):
    _, tok, _, texts = tiny_model
    from ouroboros.models.tiny import TinyGPT2
    cfg = load_config(overrides=TINY)
    items = lm_items(tok, texts)
    fast = TinyGPT2().build(cfg.model, tok, seed=3)
    trainer.train_model(fast, items, cfg.training, seed=3, pad_id=tok.pad_token_id)
    monkeypatch.setattr(gpt2_fast, "fits", lambda model, generating=False: False)
    slow = TinyGPT2().build(cfg.model, tok, seed=3)
    trainer.train_model(slow, items, cfg.training, seed=3, pad_id=tok.pad_token_id)
    for (name, a), (_, b) in zip(fast.state_dict().items(), slow.state_dict().items(),
                                 strict=True):  # equal to rounding (the fused tanh GELU)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert not all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(),
                                                     slow.state_dict().values(), strict=True))


def test_padded_batches_are_collates(tiny_model):
    _, tok, _, texts = tiny_model
    decoder_only = lm_items(tok, texts[:50])
    # encoder-decoder items: sources and targets of other lengths (a target longer than
    # every source in its batch, a one-token source)
    pairs = [([5, 2], [7, 8, 9, 10, 2]), ([6, 6, 6, 2], [11, 2]), ([2], [4, 4, 4, 4, 4, 4, 2]),
             ([9, 9, 9, 9, 9, 2], [3, 2])]
    for items in (decoder_only, pairs):
        padded = trainer.Padded(items, tok.pad_token_id)
        n = len(items)
        for idx in ([3 % n, 1, 2 % n, 1, 0], [0], list(range(n - 1, -1, -2))):
            got, want = padded.batch(idx), collate([items[i] for i in idx], tok.pad_token_id)
            assert got.keys() == want.keys()
            for k in want:
                assert torch.equal(got[k], want[k]), (k, idx)


def test_other_models_go_through_hugging_face():
    plain = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20))
    assert gpt2_fast.fits(plain) and gpt2_fast.fits(plain, generating=True)
    scaled = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20,
                                        scale_attn_by_inverse_layer_idx=True))
    assert not gpt2_fast.fits(scaled)
    for setting, value in (("repetition_penalty", 1.3), ("guidance_scale", 1.5),
                           ("remove_invalid_values", True), ("stop_strings", ["."]),
                           ("min_new_tokens", 3)):  # what generate would add or stop at
        config = copy.deepcopy(plain.generation_config)
        setattr(plain.generation_config, setting, value)
        assert gpt2_fast.fits(plain) and not gpt2_fast.fits(plain, generating=True), setting
        plain.generation_config = config

    class Subclass(GPT2LMHeadModel):
        pass
    assert not gpt2_fast.fits(Subclass(plain.config))
