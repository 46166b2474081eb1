"""Generation: batch-size invariance of sampling, decoding modes, prompts, checkpoints."""

from ouroboros.config import load_config
from ouroboros.generation.hf import HFBackend, generate_with_model
from ouroboros.models.checkpoint import save_checkpoint

from ..conftest import lm_encoder


def _gen(model, tok, prompts, batch_size, *overrides, seed=0):
    cfg = load_config(overrides=list(overrides)).generation
    ids = [lm_encoder(tok).prompt_ids(lm_encoder(tok).ids(p)) for p in prompts]
    return generate_with_model(model, tok, ids, cfg, seed=seed, batch_size=batch_size)


def test_samples_do_not_depend_on_batch_size(tiny_model):
    model, tok, *_ = tiny_model
    a = _gen(model, tok, [""] * 12, 12)
    b = _gen(model, tok, [""] * 12, 5)
    assert [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a}) > 6  # sampling really varies between samples
    assert [c.text for c in _gen(model, tok, [""] * 12, 12, seed=1)] != [c.text for c in a]


def test_greedy_and_beam_are_deterministic(tiny_model):
    model, tok, *_ = tiny_model
    for mode in ("greedy", "beam"):
        a = _gen(model, tok, ["the", "she"], 2, f"generation.decoding={mode}")
        assert a == _gen(model, tok, ["the", "she"], 1, f"generation.decoding={mode}")


def test_special_tokens_never_generated_and_length_capped(tiny_model):
    model, tok, *_ = tiny_model
    out = _gen(model, tok, [""] * 20, 20, "generation.max_new_tokens=3")
    assert all(c.new_tokens <= 3 for c in out)
    assert all("[" not in c.text for c in out)


def test_backend_loads_hf_checkpoint(tiny_model, tmp_path):
    model, tok, *_ = tiny_model
    save_checkpoint(model, tok, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    cfg = load_config().generation
    ids = [lm_encoder(tok).prompt_ids(lm_encoder(tok).ids(p)) for p in ["", "the"]]
    out = HFBackend().generate(tmp_path, ids, cfg, seed=0, batch_size=2)
    assert [c.text for c in out] == [c.text for c in _gen(model, tok, ["", "the"], 2)]


def test_prompted_generation_continues_real_prefixes(tiny_model):
    import numpy as np

    from ouroboros.config import TaskConfig
    from ouroboros.tasks.lm import LanguageModelling

    model, tok, _, texts = tiny_model
    real = [{"id": f"r{i}", "source": "", "target": t} for i, t in enumerate(texts)]
    cfg = load_config(overrides=["generation.prompt=real-prefix",
                                 "generation.prefix_words=2"]).generation
    task = LanguageModelling(TaskConfig())
    prompts = [p["source"] for p in task.prompts(real, 8, cfg, np.random.default_rng(0))]
    assert all(len(p.split()) == 2 for p in prompts)
    assert set(prompts) <= {" ".join(t.split()[:2]) for t in texts}
    out = _gen(model, tok, prompts, 3, "generation.prompt=real-prefix")
    joined = [task.text({"source": p, "target": c.text}) for p, c in zip(prompts, out,
                                                                          strict=True)]
    assert all(j.startswith(p + " ") for j, p in zip(joined, prompts, strict=True))
    unconditional = task.prompts(real, 3, load_config().generation, np.random.default_rng(0))
    assert [p["source"] for p in unconditional] == [""] * 3
