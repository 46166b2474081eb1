"""The training loop: it learns, it is deterministic, budgets and selection work."""

from types import SimpleNamespace

import pytest
import torch

from ouroboros.config import TrainingConfig, load_config
from ouroboros.models.tiny import TinyGPT2
from ouroboros.training.trainer import plan_steps, train_model

from ..conftest import TINY, lm_items


def _setup(texts, *overrides):
    cfg = load_config(overrides=TINY + list(overrides))
    family = TinyGPT2()
    tok = family.build_tokenizer(cfg.model, texts)
    return cfg, tok, family.build(cfg.model, tok, seed=0), lm_items(tok, texts)


def test_every_parameter_changes_after_one_step(tiny_model):
    texts = tiny_model[3]
    cfg, tok, model, seqs = _setup(texts, "training.epochs=null", "training.tokens=10",
                                 "training.warmup_fraction=0")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = train_model(model, seqs, cfg.training, seed=0, pad_id=tok.pad_token_id)
    assert result.steps == 1
    # Rows of tokens that occur nowhere (e.g. padding's embedding) get only weight decay;
    # every tensor as a whole must move.
    unchanged = [n for n, p in model.named_parameters() if torch.equal(before[n], p)]
    assert unchanged == []


def test_same_seed_same_weights_other_seed_differs(tiny_model):
    texts = tiny_model[3]
    runs = []
    for seed in (0, 0, 1):
        cfg, tok, model, seqs = _setup(texts)
        r = train_model(model, seqs, cfg.training, seed=seed, pad_id=tok.pad_token_id)
        runs.append((r.final_train_loss, model.lm_head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_loss_goes_down(tiny_model):
    texts = tiny_model[3]
    cfg, tok, model, seqs = _setup(texts, "training.epochs=5", "training.lr=0.01")
    r = train_model(model, seqs, cfg.training, seed=0, pad_id=tok.pad_token_id)
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"] - 0.5


def test_budgets():
    seqs = [([1, 2, 3, 4], [1, 2, 3, 4])] * 10  # 40 tokens
    cfg = load_config(overrides=["training.batch_size=4", "training.epochs=2.5"]).training
    assert plan_steps(seqs, cfg) == (8, 3)  # ceil(10/4)=3 per epoch, round(2.5*3)=8
    cfg = load_config(overrides=["training.batch_size=4", "training.tokens=120"]).training
    assert plan_steps(seqs, cfg) == (9, 3)  # 120 tokens = 3 epochs of 40


def test_best_selection_keeps_best_validation_epoch(tiny_model):
    texts = tiny_model[3]
    cfg, tok, model, seqs = _setup(texts, "training.epochs=3", "training.selection=best",
                                   "training.selection_split=real")
    r = train_model(model, seqs[:150], cfg.training, seed=0, pad_id=tok.pad_token_id,
                    valid=seqs[150:])
    losses = [h["valid_loss"] for h in r.history]
    assert r.selected_epoch == 1 + losses.index(min(losses))


class _Recorder(torch.nn.Module):
    """A stand-in model that records the first token of every example it is trained on."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def forward(self, input_ids, attention_mask=None, labels=None):
        self.seen += input_ids[:, 0].tolist()
        return SimpleNamespace(loss=(self.w ** 2).sum() + 1.0)


@pytest.mark.parametrize("order", ["given", "fixed", "shuffle"])
def test_training_orders(order):
    n = 40
    items = [([i + 1, 0], [i + 1, 0]) for i in range(n)]  # example i starts with token i+1
    model = _Recorder()
    train_model(model, items, TrainingConfig(epochs=3, batch_size=8, order=order), seed=3,
                pad_id=0)
    epochs = [model.seen[k * n:(k + 1) * n] for k in range(3)]
    assert all(sorted(e) == list(range(1, n + 1)) for e in epochs)  # each example once an epoch
    if order == "given":
        assert epochs == [list(range(1, n + 1))] * 3
    elif order == "fixed":  # one random order, kept: the control arm of ordered training
        assert epochs[0] != list(range(1, n + 1)) and epochs[0] == epochs[1] == epochs[2]
    else:
        assert epochs[0] != epochs[1]


def test_micro_batches_take_the_same_step(tiny_model):
    """Gradient accumulation over micro-batches of unequal target counts gives the step of the
    whole batch: each part's mean loss is weighted by its share of the target tokens."""
    texts = tiny_model[3]
    weights, losses = [], []
    for micro in (None, 5, 1):
        cfg, tok, model, seqs = _setup(texts, "training.epochs=null", "training.tokens=300",
                                       "training.batch_size=16")
        r = train_model(model, seqs, cfg.training, seed=0, pad_id=tok.pad_token_id,
                        micro_batch_size=micro)
        weights.append(model.lm_head.weight.detach().clone())
        losses.append(r.final_train_loss)
    assert r.steps >= 2
    for w, loss in zip(weights[1:], losses[1:], strict=True):
        torch.testing.assert_close(w, weights[0], rtol=1e-4, atol=1e-5)
        assert loss == pytest.approx(losses[0], rel=1e-5)


def test_bf16_autocast_trains_float32_weights(tiny_model):
    texts = tiny_model[3]
    result = {}
    for precision in ("fp32", "bf16"):
        cfg, tok, model, seqs = _setup(texts, f"training.precision={precision}")
        r = train_model(model, seqs, cfg.training, seed=0, pad_id=tok.pad_token_id)
        assert model.lm_head.weight.dtype == torch.float32
        result[precision] = r.final_train_loss
    assert result["bf16"] != result["fp32"]  # autocast really ran in bfloat16
    assert result["bf16"] == pytest.approx(result["fp32"], rel=0.05)


class _Diverging(_Recorder):
    def forward(self, input_ids, attention_mask, labels):
        out = super().forward(input_ids, attention_mask, labels)
        return SimpleNamespace(loss=out.loss * float("nan"))


def test_non_finite_loss_stops_training():
    from ouroboros.training.trainer import TrainingDiverged
    items = [([i + 1, 0], [i + 1, 0]) for i in range(8)]
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 1 of .*training\.lr"):
        train_model(_Diverging(), items, TrainingConfig(epochs=1, batch_size=4), seed=0, pad_id=0)
