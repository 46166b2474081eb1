"""Checkpoints load as the very tensors that were saved, by the direct path (config + the
safetensors file) and by ``from_pretrained`` alike."""

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, T5Config

from ouroboros.models import checkpoint
from ouroboros.models.checkpoint import load_checkpoint, save_checkpoint


def _same(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_tiny_gpt2_checkpoint_loads_directly_and_identically(tiny_model, tmp_path,
                                                                monkeypatch):
    model, tok, _, _ = tiny_model
    save_checkpoint(model, tok, tmp_path)
    calls = []
    real = checkpoint._load_direct
    monkeypatch.setattr(checkpoint, "_load_direct",
                        lambda *a: calls.append(1) or real(*a))
    state = torch.random.get_rng_state()
    loaded, _ = load_checkpoint(tmp_path)
    assert calls and torch.equal(torch.random.get_rng_state(), state)  # no draw leaks out
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, use_safetensors=True).eval()
    _same(loaded, reference)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)
    assert loaded.generation_config.to_dict() == reference.generation_config.to_dict()
    assert not loaded.training


def test_an_encoder_decoder_loads_identically_too(tiny_model, tmp_path):
    _, tok, _, _ = tiny_model
    config = T5Config(vocab_size=len(tok), d_model=16, d_ff=32, num_layers=1, num_heads=2,
                      d_kv=8, decoder_start_token_id=tok.pad_token_id or 0)
    torch.manual_seed(0)
    save_checkpoint(AutoModelForSeq2SeqLM.from_config(config), tok, tmp_path)
    loaded, _ = load_checkpoint(tmp_path)
    reference = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, use_safetensors=True).eval()
    _same(loaded, reference)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        a = loaded(input_ids=ids, decoder_input_ids=ids).logits
        b = reference(input_ids=ids, decoder_input_ids=ids).logits
    assert torch.equal(a, b)


def test_a_file_missing_a_weight_falls_back_to_from_pretrained(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file
    model, tok, _, _ = tiny_model
    save_checkpoint(model, tok, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop(next(k for k in state if k.endswith("ln_f.weight")))
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    assert checkpoint._load_direct(AutoModelForCausalLM,
                                   __import__("transformers").AutoConfig.from_pretrained(
                                       tmp_path), tmp_path) is None


def test_a_checkpoint_in_another_dtype_loads_as_from_pretrained_loads_it(tiny_model, tmp_path):
    model, tok, _, _ = tiny_model
    import copy
    save_checkpoint(copy.deepcopy(model).half(), tok, tmp_path)
    loaded, _ = load_checkpoint(tmp_path)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, use_safetensors=True).eval()
    _same(loaded, reference)
