"""KL(true || model) on the ground-truth language, checked against planted known truths.

A grammar (the true language, or the same lexicon with other weights) stands in for a model: its
exact next-word probabilities become logits, and it is scored by the same code path that scores
a checkpoint (the tokenizer the tokenizer stage builds, ``encode_examples``, ``sequence_nll``,
the ``ground-truth`` metric). Its KL to the truth is known independently, by Monte Carlo over
many sentences with exact log-probabilities of both languages.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ouroboros.config import load_config
from ouroboros.data.grammar import GroundTruthLanguage, LanguageSpec
from ouroboros.experiment.executors import execute
from ouroboros.experiment.loop import plan_study
from ouroboros.experiment.stages import StageStore, read_jsonl
from ouroboros.metrics.groundtruth import ground_truth
from ouroboros.metrics.signature import EvalContext
from ouroboros.models.encoding import Encoder
from ouroboros.tasks.lm import LanguageModelling

FLOOR = -80.0  # log-probability of impossible tokens (never a label of a valid sentence)


class GrammarLM(torch.nn.Module):
    """A language's exact next-word distribution behind a causal-LM interface."""

    def __init__(self, lang: GroundTruthLanguage, tokenizer) -> None:
        super().__init__()
        self.lang, self.tok = lang, tokenizer
        self.config = SimpleNamespace(is_encoder_decoder=False)
        self.words = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        index = {w: i for i, w in enumerate(self.words)} | {None: tokenizer.eos_token_id}
        self.states = sorted(lang.arcs) + ["<stop>"]
        # Row s: the next-word distribution from state s, over the tokenizer's ids.
        self.table = np.zeros((len(self.states), len(self.words)))
        for k, state in enumerate(self.states):
            for w, p in lang.next_words({state: 1.0}).items():
                self.table[k, index[w]] += p

    def _logits(self, alpha: dict) -> torch.Tensor:
        weights = np.array([alpha.get(s, 0.0) for s in self.states])
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.maximum(np.log(weights @ self.table), FLOOR))

    def forward(self, input_ids, attention_mask=None, labels=None):
        out = torch.full((*input_ids.shape, len(self.words)), FLOOR, dtype=torch.float64)
        cache: dict = {}
        for b, ids in enumerate(input_ids.tolist()):
            alpha, prefix = {"start": 1.0}, ()
            for t, i in enumerate(ids):
                if t > 0:
                    if i in (self.tok.eos_token_id, self.tok.pad_token_id):
                        break
                    prefix += (self.words[i],)
                    alpha, _ = self.lang.step(alpha, self.words[i])
                if prefix not in cache:
                    cache[prefix] = self._logits(alpha)
                out[b, t] = cache[prefix]
        return SimpleNamespace(logits=out)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tokenizer the study's own tokenizer stage builds, and 400 real test sentences."""
    cfg = load_config(overrides=["data.grammar.open_class_size=null", "data.train_size=50",
                                 "data.valid_size=10",
                                 "data.test_size=400", "seeds=[0]", "runtime.progress=false"])
    run = tmp_path_factory.mktemp("run")
    plan = plan_study(cfg)
    store = StageStore(run)
    execute(type(plan)([s for s in plan.stages if s.kind in ("data", "test", "tokenizer")], []),
            store, cfg.runtime, cfg.data, log=lambda _: None)
    test, tok_stage = (next(s for s in plan.stages if s.kind == k) for k in ("test", "tokenizer"))
    from ouroboros.experiment.plan import make_source
    from ouroboros.models.checkpoint import load_tokenizer
    return (make_source(cfg).truth, load_tokenizer(store.path(tok_stage)),
            read_jsonl(store.path(test) / "test.jsonl"), cfg)


def _measure(model_lang, study) -> dict:
    truth, tok, test, cfg = study
    ctx = EvalContext(samples=[], real_test=test, seed=0, truth=truth,
                      model=GrammarLM(model_lang, tok), tokenizer=tok,
                      encoder=Encoder(tok, False, cfg.model.context_length, 64),
                      task=LanguageModelling(cfg.task), batch_size=64)
    return {v.metric: v.value for v in ground_truth(ctx)}


def _monte_carlo_kl(truth, other, n=10_000) -> tuple[float, float]:
    x = truth.sample(n, np.random.default_rng(123))
    gap = truth.logprobs(x) - other.logprobs(x)
    return float(gap.mean()), float(gap.std(ddof=1) / np.sqrt(n))


def test_every_word_of_the_language_is_in_the_study_tokenizer(study):
    truth, tok, _, _ = study  # built from 50 training sentences: the lexicon, not the data
    ids = tok(truth.lexicon, add_special_tokens=False, is_split_into_words=True)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == len(truth.lexicon)


def test_the_truth_itself_has_kl_zero(study):
    m = _measure(study[0], study)
    assert abs(m["kl_true_model"]) < 1e-6
    assert m["cross_entropy"] == pytest.approx(m["true_entropy"], abs=1e-6)


@pytest.mark.parametrize("spec", [LanguageSpec(zipf_exponent=0.9),
                                  LanguageSpec(zipf_exponent=1.4),
                                  LanguageSpec(seed=7)])
def test_planted_models_kl_is_recovered_within_three_standard_errors(study, spec):
    truth = study[0]
    other = GroundTruthLanguage(spec)
    assert set(other.lexicon) == set(truth.lexicon)  # same words, other probabilities
    expected, se_expected = _monte_carlo_kl(truth, other)
    m = _measure(other, study)
    se = m["kl_true_model@se"]
    assert expected > 0.05 and se > 0
    assert abs(m["kl_true_model"] - expected) < 3 * np.hypot(se, se_expected)
    assert m["kl_true_model@low"] < m["kl_true_model"] < m["kl_true_model@high"]


def test_a_test_sentence_cut_by_the_context_is_an_error_not_a_shorter_sentence(study):
    truth, tok, test, cfg = study
    longest = max(test, key=lambda e: len(e["target"].split()))
    ctx = EvalContext(samples=[], real_test=[longest], seed=0, truth=truth,
                      model=GrammarLM(truth, tok), tokenizer=tok,
                      encoder=Encoder(tok, False, 4, 64), task=LanguageModelling(cfg.task))
    with pytest.raises(ValueError, match="context_length"):
        ground_truth(ctx)
