"""The sampler: counter-based uniforms, exact draws from the filtered softmax (temperature and
top-p caught), the same distribution as Hugging Face's sampling, the lean GPT-2 decoder equal
to generate, and a sample that does not depend on its batch."""

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from ouroboros.config import load_config
from ouroboros.generation import hf
from ouroboros.generation.hf import generate_with_model
from ouroboros.generation.sampling import draw, row_seeds, uniforms
from ouroboros.models import gpt2_fast

from ..conftest import lm_encoder

N = 20_000  # draws per distribution test


@pytest.fixture(scope="module")
def sharp(tiny_model):
    """The tests' tiny model with its final layer norm scaled: logits x 16, so that its
    distributions are peaked enough for a wrong temperature to show."""
    import copy
    model, tok, *_ = tiny_model
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(16)
        model.transformer.ln_f.bias.mul_(16)
    return model, tok


def test_uniforms_are_uniform_and_independent_across_samples_and_steps():
    seeds = torch.tensor(row_seeds(7, 0, 100_000))
    u = [uniforms(seeds, step).numpy() for step in range(3)]
    for x in u:
        assert 0 <= x.min() and x.max() < 1
        assert stats.kstest(x, "uniform").pvalue > 1e-3
        assert len(np.unique(x)) == len(x)
    for a, b in ((0, 1), (1, 2), (0, 2)):  # consecutive steps of one stream: uncorrelated
        assert abs(np.corrcoef(u[a], u[b])[0, 1]) < 0.015
    assert abs(np.corrcoef(u[0][:-1], u[0][1:])[0, 1]) < 0.015  # neighbouring samples
    again = uniforms(seeds[5_000:5_010], 1).numpy()  # a row's number is its own
    assert np.array_equal(again, u[1][5_000:5_010])


def _first_token_probs(model, tok, warpers) -> np.ndarray:
    """The exact distribution of the first token after BOS, under the sampler's chain."""
    banned = [tok.pad_token_id, tok.unk_token_id, tok.bos_token_id]
    with torch.no_grad():
        logits = model(torch.tensor([[tok.bos_token_id]])).logits[:, -1].float()
    logits[:, banned] = -float("inf")
    for w in warpers:
        logits = w(None, logits)
    return torch.softmax(logits, -1)[0].double().numpy()


def _chi2(counts: np.ndarray, probs: np.ndarray) -> float:
    """p-value of counts against probabilities, cells expected below 5 pooled; a count where
    the probability is 0 fails outright."""
    assert counts[probs == 0].sum() == 0, "a token of probability 0 was drawn"
    expected = probs * counts.sum()
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] < 5:  # too little to pool: fold into the last big cell
        obs, exp = np.append(obs[:-2], obs[-2:].sum()), np.append(exp[:-2], exp[-2:].sum())
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


def _first_tokens(model, tok, *overrides, seed=0, n=N) -> np.ndarray:
    cfg = load_config(overrides=["generation.max_new_tokens=1", *overrides]).generation
    prompt = lm_encoder(tok).prompt_ids([])
    out = generate_with_model(model, tok, [prompt] * n, cfg, seed=seed, batch_size=4096)
    ids = [tok.convert_tokens_to_ids(c.text) if c.text else tok.eos_token_id for c in out]
    return np.bincount(ids, minlength=len(tok))


@pytest.mark.parametrize("overrides, warpers", [
    ((), []),
    (("generation.temperature=0.7",), [TemperatureLogitsWarper(0.7)]),
    (("generation.top_p=0.8",), [TopPLogitsWarper(0.8)]),
])
def test_draws_follow_the_filtered_softmax(sharp, overrides, warpers):
    model, tok = sharp
    probs = _first_token_probs(model, tok, warpers)
    counts = _first_tokens(model, tok, *overrides)
    assert _chi2(counts, probs) > 1e-3


def test_a_wrong_temperature_or_nucleus_is_caught(sharp):
    model, tok = sharp
    assert _first_token_probs(model, tok, []).max() > 0.02  # peaked: the test has power
    counts = _first_tokens(model, tok)  # sampled at temperature 1, no nucleus
    assert _chi2(counts, _first_token_probs(model, tok, [TemperatureLogitsWarper(0.8)])) < 1e-6
    nucleus = _first_token_probs(model, tok, [TopPLogitsWarper(0.8)])
    assert counts[nucleus == 0].sum() > 0  # draws outside the nucleus: top-p not applied


def test_the_same_distribution_as_hugging_face_sampling(sharp):
    model, tok = sharp
    ours = _first_tokens(model, tok)
    torch.manual_seed(0)
    ids = torch.full((N, 1), tok.bos_token_id)
    banned = [[t] for t in (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id)]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                             max_new_tokens=1, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, bad_words_ids=banned)
    theirs = np.bincount(out[:, 1].numpy(), minlength=len(tok))
    keep = (ours + theirs) >= 10
    table = np.stack([np.append(ours[keep], ours[~keep].sum()),
                      np.append(theirs[keep], theirs[~keep].sum())])
    assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > 1e-3


def test_two_steps_draw_the_joint_distribution(sharp):
    """Each step's number is fresh: the (first, second) token pairs follow p(a) p(b | a). For
    the likeliest first tokens, the second falls in each quarter of its conditional
    distribution (contiguous token ranges, the inverse CDF's order) as often as p says; a
    stream that reused its number would put it in the first token's quarter."""
    model, tok = sharp
    cfg = load_config(overrides=["generation.max_new_tokens=2"]).generation
    prompt = lm_encoder(tok).prompt_ids([])
    out = generate_with_model(model, tok, [prompt] * N, cfg, seed=3, batch_size=4096)
    eos = tok.eos_token_id
    banned = [tok.pad_token_id, tok.unk_token_id, tok.bos_token_id]
    seen = {}
    for c in out:
        words = c.text.split()
        if not words:
            continue
        a = tok.convert_tokens_to_ids(words[0])
        b = tok.convert_tokens_to_ids(words[1]) if len(words) == 2 else eos
        seen.setdefault(a, []).append(b)
    p1 = _first_token_probs(model, tok, [])
    observed, expected = [], []
    with torch.no_grad():
        for a in [t for t in np.argsort(p1)[::-1] if t != eos][:8]:
            logits = model(torch.tensor([[tok.bos_token_id, a]])).logits[0, -1].float()
            logits[banned] = -float("inf")
            p2 = torch.softmax(logits, -1).double().numpy()
            quarter = np.minimum(3, np.floor(4 * (np.cumsum(p2) - p2 / 2))).astype(int)
            got = np.bincount(quarter[seen.get(int(a), [])], minlength=4)
            observed += list(got)
            expected += [p1[a] * N * p2[quarter == k].sum() for k in range(4)]
    observed.append(N - sum(observed))
    expected.append(N - sum(expected))
    assert min(expected) > 5
    assert stats.chisquare(observed, np.array(expected) * N / sum(expected)).pvalue > 1e-3


def test_the_lean_decoder_is_generate(tiny_model):
    """Greedy continuations of left-padded prompts of several lengths, token for token, and
    the next-token logits of every step."""
    model, tok, *_ = tiny_model
    assert gpt2_fast.fits(model, generating=True)
    enc = lm_encoder(tok)
    prompts = [enc.prompt_ids(enc.ids(p)) for p in
               ["", "the", "she saw the", "the old dog saw a cat"]]
    ids, mask = hf._batch_inputs(prompts, tok.pad_token_id, left=True)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                             max_new_tokens=12, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, output_scores=True,
                             return_dict_in_generate=True)
    chain = LogitsProcessorList([])
    ours = hf._decode_fast(model, ids, mask, 12, chain, tok.eos_token_id, tok.pad_token_id)
    assert torch.equal(ours, ref.sequences)
    decoder = gpt2_fast.Decoder(model, ids, mask, 12)
    logits = decoder.start()
    for t, score in enumerate(ref.scores):
        torch.testing.assert_close(logits, score, rtol=1e-4, atol=1e-4)
        if t + 1 < len(ref.scores):
            logits = decoder.step(ref.sequences[:, ids.shape[1] + t])


def test_a_sample_does_not_depend_on_its_batch(tiny_model):
    """Sample j with prompts of other lengths beside it, in another position, alone."""
    model, tok, *_ = tiny_model
    enc = lm_encoder(tok)
    texts = ["the", "she saw the old", "a", "the dog", "", "a cat saw the dog and"]
    prompts = [enc.prompt_ids(enc.ids(p)) for p in texts]
    cfg = load_config(overrides=["generation.max_new_tokens=20"]).generation
    seeds = row_seeds(11, 0, len(prompts))
    together = generate_with_model(model, tok, prompts, cfg, seed=0, batch_size=6,
                                   row_seeds=seeds)
    alone = [generate_with_model(model, tok, [p], cfg, seed=0, batch_size=1,
                                 row_seeds=[s])[0] for p, s in zip(prompts, seeds, strict=True)]
    order = [5, 2, 0, 4, 1, 3]
    shuffled = generate_with_model(model, tok, [prompts[i] for i in order], cfg, seed=0,
                                   batch_size=4, row_seeds=[seeds[i] for i in order])
    assert together == alone
    assert [shuffled[order.index(i)] for i in range(6)] == together
    assert len({c.text for c in together}) > 3


def test_draw_never_picks_a_token_of_probability_zero():
    scores = torch.full((3, 10), -float("inf"))
    scores[0, 4] = 0.0  # one possible token
    scores[1, [0, 9]] = torch.tensor([5.0, -5.0])
    scores[2, 9] = 1.0  # the last one
    seeds = torch.tensor(row_seeds(0, 0, 3))
    for step in range(200):
        t = draw(scores, seeds, step).tolist()
        assert t[0] == 4 and t[1] in (0, 9) and t[2] == 9


def test_streams_do_not_share_their_numbers():
    """Each stream keeps its seed's 63 bits: 100,000 streams give 100,000 different pairs of
    first numbers (a 32-bit digest of the seed made rows 4543 and 31394 here equal at every
    step, and so their samples equal)."""
    seeds = torch.tensor(row_seeds(0, 0, 100_000))
    first, second = uniforms(seeds, 0).numpy(), uniforms(seeds, 1).numpy()
    assert len(set(zip(first.tolist(), second.tolist(), strict=True))) == 100_000
    pair = seeds[[4543, 31394]]
    assert all(uniforms(pair, s)[0] != uniforms(pair, s)[1] for s in range(50))


def test_a_row_with_nothing_to_draw_or_a_bad_seed_is_a_clear_error():
    from ouroboros.generation.sampling import CounterSampler, SamplingError
    scores = torch.zeros(3, 8)
    scores[1] = float("nan")
    with pytest.raises(SamplingError, match="row 1 of a batch has no token to draw"):
        draw(scores, torch.tensor(row_seeds(0, 0, 3)), 0)
    scores[1] = -float("inf")
    with pytest.raises(SamplingError, match="row 1"):
        draw(scores, torch.tensor(row_seeds(0, 0, 3)), 0)
    with pytest.raises(ValueError, match=r"row seeds are integers in \[0, 2\*\*63\)"):
        CounterSampler([1, 2**63])
