"""Trait scorers: offline VADER, classifiers trained from labeled files (cached as JSON),
Hugging Face classifiers; every value names its scorer."""

import numpy as np
import pytest

from ouroboros.config import ConfigError, TraitConfig, load_config
from ouroboros.metrics import traits as traits_module
from ouroboros.metrics.signature import EvalContext
from ouroboros.metrics.traits import SCORERS, held_out_rows, traits

RUDE = ["you idiot", "stupid fool", "shut up idiot", "what a stupid idiot", "idiot fool"]
POLITE = ["thank you kindly", "dear sir thank you", "kind regards", "many thanks sir",
          "thank you dear"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OUROBOROS_CACHE", str(tmp_path / "cache"))


def _labeled(tmp_path, rows, name="labels.csv", header="text,label"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_classifier_learns_caches_and_reports_quality(tmp_path, monkeypatch):
    rows = [f"{t},1" for t in RUDE * 4] + [f"{t},0" for t in POLITE * 4]
    cfg = TraitConfig(trait="toxicity", scorer="classifier", file=str(_labeled(tmp_path, rows)),
                      text="text", label="label", positive=[1])
    scorer = SCORERS["classifier"](cfg)
    rude, polite = scorer.score(["you stupid idiot", "thank you sir"])
    assert rude > 0.5 > polite
    assert scorer.signature["held_out"]["n"] == 8  # 1 of 5 rude and 1 of 5 polite texts, x4
    assert len(list((tmp_path / "cache" / "traits").glob("*.json"))) == 1
    monkeypatch.setattr(traits_module.ClassifierScorer, "_train",
                        lambda self, path: pytest.fail("trained again instead of the cache"))
    assert SCORERS["classifier"](cfg).score(["you stupid idiot"])[0] == pytest.approx(rude)


def _duplicated_noise(n=200, seed=0):
    """n made-up phrases, each with a random label, each written 4 ways (as a retweet, with a
    link, in capitals with punctuation): nothing generalises from one phrase to another."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    phrases = [" ".join(rng.choice(words, 4)) for _ in range(n)]
    variants = [lambda p, i: p, lambda p, i: f"RT @user{i}: {p}",
                lambda p, i: f"{p} http://t.co/x{i}", lambda p, i: p.upper() + " !!"]
    return [(v(p, i), p) for i, p in enumerate(phrases) for v in variants], rng


@pytest.mark.parametrize("regression", [False, True])
def test_held_out_quality_keeps_duplicates_on_one_side(tmp_path, regression):
    """Random labels: a held-out quality above chance could only come from copies of training
    rows. A row-level split put copies on both sides (AUC 1.0, R² 0.89: remembered copies);
    grouped by duplicate text, each phrase is on one side and the quality is chance."""
    rows, rng = _duplicated_noise()
    values = rng.normal(size=200) if regression else rng.integers(0, 2, 200)
    lines = [f"{text},{values[i // 4]}" for i, (text, _) in enumerate(rows)]
    cfg = TraitConfig(trait="t", scorer="classifier", file=str(_labeled(tmp_path, lines)),
                      text="text", label="label", positive=[1], regression=regression)
    held_out = SCORERS["classifier"](cfg).signature["held_out"]
    if regression:
        assert held_out["r2"] < 0.1
    else:
        assert held_out["auc"] == pytest.approx(0.5, abs=0.15)  # 40 phrases held out
    held = held_out_rows([text for text, _ in rows])
    sides = {}
    for (_, phrase), h in zip(rows, held, strict=True):
        sides.setdefault(phrase, set()).add(bool(h))
    assert all(len(s) == 1 for s in sides.values()) and held.mean() == pytest.approx(0.2)


def test_regression_from_headerless_tsv(tmp_path):
    rows = [f"{-2 + i % 5}\t{'thank you kindly sir' if i % 5 > 2 else 'yo idiot'}"
            for i in range(60)]
    path = _labeled(tmp_path, rows, "f.tsv", header="0\tignored")
    cfg = TraitConfig(trait="formality", scorer="classifier", file=str(path), header=False,
                      text=1, label=0, regression=True)
    formal, informal = SCORERS["classifier"](cfg).score(["thank you kindly", "yo idiot"])
    assert formal > informal


def test_one_class_file_is_a_clear_error(tmp_path):
    path = _labeled(tmp_path, [f"{t},0" for t in POLITE * 3])
    cfg = TraitConfig(trait="t", scorer="classifier", file=str(path), text="text",
                      label="label", positive=[1])
    with pytest.raises(ValueError, match="same label"):
        SCORERS["classifier"](cfg)


def test_vader_is_offline_and_zero_on_neutral_text():
    scorer = SCORERS["vader"](TraitConfig(trait="emotion_intensity", scorer="vader"))
    neutral, intense = scorer.score(["the table is brown .", "I absolutely love this!!!"])
    assert neutral == 0.0 and intense > 0.5


def test_hf_scorer_reads_a_local_classifier(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from ouroboros.models.tokenizer import train_bpe_tokenizer
    tok = train_bpe_tokenizer(RUDE + POLITE, 300)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2, num_labels=2,
        pad_token_id=tok.pad_token_id, id2label={0: "neutral", 1: "toxic"},
        label2id={"neutral": 0, "toxic": 1}))
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    cfg = TraitConfig(trait="toxicity", scorer="hf", model=str(tmp_path / "clf"), label="toxic")
    scores = SCORERS["hf"](cfg).score(["you idiot", "thank you"])
    assert ((scores > 0) & (scores < 1)).all()
    with pytest.raises(ValueError, match="no label"):
        SCORERS["hf"](cfg.model_copy(update={"label": "nope"}))


def test_traits_metric_names_the_scorer():
    cfg = TraitConfig(trait="emotion_intensity", scorer="vader")
    ctx = EvalContext(samples=["I love it!", "ok ."], real_test=[], seed=0,
                      options={"trait_configs": [cfg]})
    (value,) = traits(ctx)
    assert value.metric == "trait_emotion_intensity" and "scorer=vader" in value.signature


def test_trait_config_problems():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["metrics.names=[traits]"])
    assert any("metrics.traits" in p for p in e.value.problems)
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["metrics.traits=[{trait: t, scorer: classifier}]"])
    assert any("needs file" in p for p in e.value.problems)
