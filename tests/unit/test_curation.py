"""Curation steps: what they keep, the lineage they record, and refusing to empty a set."""

from pathlib import Path

import numpy as np
import pytest

from ouroboros.config import ConfigError, CurationStepConfig, TaskConfig, load_config
from ouroboros.curation.steps import CurationContext, curate, dedup, detector, verifier
from ouroboros.data.grammar import GroundTruthLanguage
from ouroboros.tasks.lm import LanguageModelling


@pytest.fixture
def one_thread():
    """Tiny transformers train on one thread: their many small ops gain nothing from more,
    and on a busy 2-core machine two threads made these tests 20-60x slower."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rows(texts):
    return [{"id": f"s{i}", "source": "", "target": t} for i, t in enumerate(texts)]


def _ctx(real=(), truth=None, seed=0):
    return CurationContext(real=_rows(list(real)), rng=np.random.default_rng(seed),
                           task=LanguageModelling(TaskConfig()), truth=truth)


def test_dedup_exact_and_near():
    base = "the old dog sleeps near the big red barn every single day"
    near = base.replace("day", "night")              # 10 of 11 trigrams shared -> J = 9/11
    far = "a completely different sentence about cats and their many toys"
    rows = _rows([base, base, near, far])
    kept = dedup(rows, _ctx(), threshold=0.8)
    assert [r["target"] for r in kept] == [base, far]
    assert rows[1]["decisions"][-1]["kept"] is False and rows[2]["scores"]["dedup"] >= 0.8
    rows = _rows([base, near, far])
    assert len(dedup(rows, _ctx(), threshold=0.95)) == 3  # below the threshold: both stay


def test_verifier_error_rates():
    lang = GroundTruthLanguage()
    valid = lang.sample(2000, np.random.default_rng(0))
    invalid = ["dog the sleeps ."] * 2000
    kept = verifier(_rows(valid + invalid), _ctx(truth=lang), false_accept=0.1,
                    false_reject=0.25)
    kept_valid = sum(r["target"] in set(valid) for r in kept)
    assert kept_valid / 2000 == pytest.approx(0.75, abs=0.04)
    assert (len(kept) - kept_valid) / 2000 == pytest.approx(0.1, abs=0.03)
    perfect = verifier(_rows(valid[:50] + invalid[:50]), _ctx(truth=lang))
    assert len(perfect) == 50


def test_detector_filter_order_resample_and_auc():
    lang = GroundTruthLanguage()
    real = lang.sample(200, np.random.default_rng(1))
    synthetic = [t.replace(" .", " zzz .") if i % 2 else t
                 for i, t in enumerate(lang.sample(100, np.random.default_rng(2)))]
    ctx = _ctx(real)
    kept = detector(_rows(synthetic), ctx, mode="filter", keep_fraction=0.5)
    assert len(kept) == 50 and sum("zzz" in r["target"] for r in kept) < 10
    assert ctx.info["detector"]["auc"] > 0.6
    ordered = detector(_rows(synthetic), _ctx(real), mode="order")
    human = [r["scores"]["human_likeness"] for r in ordered]
    assert human == sorted(human, reverse=True) and len(ordered) == 100
    resampled = detector(_rows(synthetic), _ctx(real), mode="resample")
    assert len(resampled) == 100 and sum("zzz" in r["target"] for r in resampled) < 50


def test_cross_fit_never_scores_an_input_with_a_model_that_trained_on_it(monkeypatch):
    """A spy classifier scores -1 an input related to one it trained on (the same words, or
    the same given group) and its number of training inputs anything else: no score may be
    -1, and only new inputs may meet the model fitted on all 62 inputs."""
    from ouroboros.curation import classifiers
    from ouroboros.splits import duplicate_key
    texts = [f"text {i % 30}" for i in range(60)] + ["TEXT 1!", "text 99"]  # duplicates
    groups = np.arange(62) // 2  # pairs of rows that must stay together
    related: dict = {}
    for t, g in zip(texts, groups, strict=True):
        related.setdefault(duplicate_key(t), set()).add(g)

    def spy(inputs, labels, rng, pairs=False):
        seen = set().union(*(related[duplicate_key(x)] for x in inputs))
        return lambda new: np.array([-1.0 if related.get(duplicate_key(x), set()) & seen
                                     else len(inputs) for x in new])
    monkeypatch.setitem(classifiers.CLASSIFIERS, "spy", classifiers.Classifier(spy, folds=4))
    fitted = classifiers.cross_fit("spy", texts, np.arange(62) % 2, np.random.default_rng(0),
                                   groups)
    assert fitted.folds == 4 and ((fitted.scores > 0) & (fitted.scores < 62)).all()
    again = fitted.predict(["text 5", "TEXT 99", "new text"])
    assert again[:2].tolist() == [fitted.scores[5], fitted.scores[61]] and again[2] == 62
    assert fitted.seen_count(["text 5", "new text"]) == 1


def _unseen_by_an_80_20_split(n_real, n_synthetic, seed):
    """Which synthetic rows a seeded 80/20 split of real + synthetic rows holds out: the rows a
    detector that scores its own training rows in-sample has not seen (the former split)."""
    n = n_real + n_synthetic
    held = np.random.default_rng(seed).permutation(n)[int(0.8 * n):]
    return np.isin(np.arange(n_real, n), held)


def _outcome(rows):
    kept = np.array([r["decisions"][-1]["kept"] for r in rows])
    return kept, np.array([r["scores"]["human_likeness"] for r in rows])


def test_detector_scores_every_row_out_of_fold():
    """Synthetic rows drawn from the real language: nothing tells them apart, so the AUC is
    near 0.5, P(real) near the real share, and no subset is kept preferentially. In-sample
    scoring kept 88-93% of the rows its split held out and 38-41% of the others (3 seeds)."""
    lang = GroundTruthLanguage()
    real, synthetic = (lang.sample(300, np.random.default_rng(s)) for s in (10, 20))
    ctx, rows = _ctx(real), _rows(synthetic)
    detector(rows, ctx, mode="filter", keep_fraction=0.5)
    kept, human = _outcome(rows)
    assert ctx.info["detector"]["folds"] == 5 and ctx.info["detector"]["examples"] == 600
    assert ctx.info["detector"]["auc"] == pytest.approx(0.5, abs=0.08)
    assert human.mean() == pytest.approx(0.5, abs=0.04)  # in-sample: 0.42
    unseen = _unseen_by_an_80_20_split(300, 300, seed=0)
    assert kept[unseen].mean() == pytest.approx(0.5, abs=0.2)  # ~3 standard errors (60 rows)


def test_detector_finds_a_subtle_artifact():
    """Half of the synthetic rows are real-language sentences, half use "this" for every "the"
    (a word-frequency shift, not a marker): the out-of-fold AUC over every row is clearly above
    0.5 (at most about 0.75, half the rows being indistinguishable) and the filter keeps the
    artifact rows far less."""
    lang = GroundTruthLanguage()
    real, clean = (lang.sample(400, np.random.default_rng(s)) for s in (10, 20))
    artifact = np.arange(400) % 2 == 1
    synthetic = [" ".join("this" if w == "the" else w for w in t.split()) if a else t
                 for t, a in zip(clean, artifact, strict=True)]
    ctx, rows = _ctx(real), _rows(synthetic)
    detector(rows, ctx, mode="filter", keep_fraction=0.5)
    kept, _ = _outcome(rows)
    assert ctx.info["detector"]["folds"] == 5 and ctx.info["detector"]["examples"] == 800
    assert 0.6 < ctx.info["detector"]["auc"] <= 0.8  # out of fold over all 800 rows
    assert kept[artifact].mean() < 0.5 * kept[~artifact].mean()


def test_a_step_that_empties_the_set_is_an_error():
    lang = GroundTruthLanguage()
    steps = [CurationStepConfig(name="length", min_words=100)]
    with pytest.raises(ValueError, match="step 'length' left no data: it dropped all 3"):
        curate(_rows(["a b .", "c d .", "e ."]), steps, _ctx(truth=lang))
    with pytest.raises(ValueError, match="at least 4"):
        detector(_rows(["a ."]), _ctx(["b ."]))


def test_curation_config_problems():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["curation=[{name: verifier, false_reject: 1.2}]"])
    assert any(p.startswith("curation.0.false_reject") for p in e.value.problems)
    with pytest.raises(ConfigError, match="takes no threshold"):
        load_config(overrides=["curation=[{name: length, threshold: 0.5}]"])
    with pytest.raises(ConfigError, match="a classifier to train or a model, not both"):
        load_config(overrides=["curation=[{name: model-verifier, classifier: ngram, model: x}]"])
    with pytest.raises(ConfigError, match="step length takes no classifier"):
        load_config(overrides=["curation=[{name: length, classifier: transformer}]"])
    cfg = load_config(overrides=["policies.0.curation=[{name: dedup}]", "policies.0.order=given"])
    assert cfg.policies[0].curation[0].name == "dedup" and cfg.policies[0].order == "given"


def test_best_of_n_keeps_the_best_candidate_per_request():
    from ouroboros.curation.steps import best_of_n
    lang = GroundTruthLanguage()
    rows = _rows(["dog the sleeps .", "the dog sleeps .", "the dog sleeps quickly .",
                  "he sleeps .", "sleeps he ."])
    for r, request in zip(rows, [0, 0, 0, 1, 1], strict=True):
        r["request"] = request
    ctx = _ctx(truth=lang)
    kept = best_of_n(rows, ctx, scorer="true_logprob")
    assert [r["target"] for r in kept] == ["the dog sleeps .", "he sleeps ."]
    assert ctx.info["best-of-n"] == {"requests": 2, "candidates": 5, "scorer": "true_logprob"}
    with pytest.raises(ValueError, match="put the step that gives it"):
        best_of_n(_rows(["a ."]), _ctx(), scorer="human_likeness")


def test_quality_filters_and_orders_by_reference_likelihood():
    from ouroboros.curation.steps import quality
    rows = _rows(["a", "b", "c", "d"])
    ctx = _ctx()
    ctx.score_quality = lambda rs: np.array([-3.0, -1.0, -2.0, -4.0])
    assert [r["target"] for r in quality(rows, ctx, keep_fraction=0.5)] == ["b", "c"]
    ordered = quality(_rows(["a", "b", "c", "d"]), ctx, mode="order")
    assert [r["target"] for r in ordered] == ["b", "c", "a", "d"]
    with pytest.raises(ValueError, match="generation-0 model"):
        quality(_rows(["a"]), _ctx())


def test_reference_verifier_for_real_tasks():
    from ouroboros.curation.steps import reference
    from ouroboros.tasks.conditional import Translation
    real = [{"id": "train-L1", "source": "a dog runs", "target": "ein Hund rennt"},
            {"id": "train-L2", "source": "a cat sleeps", "target": "eine Katze schläft"}]
    rows = [{"id": "g0-0", "source": "a dog runs", "target": "ein Hund rennt",
             "prompted_by": "train-L1"},
            {"id": "g0-1", "source": "a cat sleeps", "target": "völlig daneben",
             "prompted_by": "train-L2"}]
    ctx = CurationContext(real=real, rng=np.random.default_rng(0),
                          task=Translation(TaskConfig()))
    kept = reference(rows, ctx, threshold=0.3)
    assert [r["id"] for r in kept] == ["g0-0"] and rows[0]["scores"]["reference"] == 1.0
    lm_rows = [{"id": "x", "source": "the dog", "target": "runs .", "prompted_by": "r"}]
    lm_ctx = _ctx()
    lm_ctx.real = [{"id": "r", "source": "", "target": "the dog runs ."}]
    assert reference(lm_rows, lm_ctx)[0]["scores"]["reference"] == 1.0  # vs the continuation
    with pytest.raises(ValueError, match="prompted by real examples"):
        reference(_rows(["a ."]), _ctx())


def test_dedup_compares_with_earlier_refill_rounds():
    base = "the old dog sleeps near the big red barn every single day"
    ctx = _ctx()
    ctx.previous = _rows([base])
    kept = dedup(_rows([base, base.replace("day", "night"), "cats play"]), ctx, threshold=0.8)
    assert [r["target"] for r in kept] == ["cats play"]


def test_refill_config_problems():
    with pytest.raises(ConfigError, match="policies.0.refill: needs curation steps"):
        load_config(overrides=["policies=[{name: replace, refill: 3}]"])
    with pytest.raises(ConfigError, match="policies.0.refill: detector keeps a share"):
        load_config(overrides=["policies=[{name: replace, refill: 3, curation: "
                               "[{name: detector}]}]"])
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["policies=[{name: replace, refill: 0, curation: "
                               "[{name: verifier}]}]"])
    assert any(p.startswith("policies.0.refill") for p in e.value.problems)
    load_config(overrides=["policies=[{name: replace, refill: 3, curation: [{name: verifier}, "
                           "{name: quality, mode: order}]}]"])


MULTI30K = Path(__file__).resolve().parents[3] / "shared" / "data" / "multi30k"
needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(),
                                    reason=f"{MULTI30K} not found (../shared/data)")


def _multi30k(n, split="train", offset=0):
    d = MULTI30K
    en = (d / f"{split}.en").read_text().splitlines()[offset:offset + n]
    de = (d / f"{split}.de").read_text().splitlines()[offset:offset + n]
    return [{"id": f"{split}-L{i}", "source": a, "target": b}
            for i, (a, b) in enumerate(zip(en, de, strict=True))]


@needs_multi30k
def test_model_verifier_learns_which_target_answers_which_source():
    from ouroboros.curation.steps import model_verifier
    from ouroboros.tasks.conditional import Translation
    real = _multi30k(1500)
    good = _multi30k(100, "val")
    bad = [{**e, "id": f"bad{i}", "target": good[(i + 7) % 100]["target"]}
           for i, e in enumerate(good)]
    ctx = CurationContext(real=real, rng=np.random.default_rng(0),
                          task=Translation(TaskConfig(name="translation")))
    kept = model_verifier([dict(r) for r in good + bad], ctx, threshold=0.5)
    kept_bad = sum(r["id"].startswith("bad") for r in kept)
    assert len(kept) - kept_bad > 2 * kept_bad  # right answers pass far more often
    assert ctx.info["model-verifier"]["auc"] > 0.65  # held out by example, not by row
    assert all(0 <= r["scores"]["model_verifier"] <= 1 for r in kept)


def test_model_verifier_for_lm_scores_fluency_and_needs_data():
    from ouroboros.curation.steps import model_verifier
    lang = GroundTruthLanguage()
    real = lang.sample(400, np.random.default_rng(0))
    fluent = lang.sample(60, np.random.default_rng(1))
    shuffled = [" ".join(sorted(t.split())) for t in fluent]
    rows = _rows(fluent + shuffled)
    model_verifier(rows, _ctx(real), threshold=0.0)
    scores = np.array([r["scores"]["model_verifier"] for r in rows])
    assert scores[:60].mean() > scores[60:].mean()
    with pytest.raises(ValueError, match="at least 8 real examples"):
        model_verifier(_rows(["a ."]), _ctx(["b ."]))
    from ouroboros.curation.classifiers import negative_pairs
    texts = [{"source": "", "target": t} for t in real[:50] + ["x y", "z"]]
    wrong = [t for _, t in negative_pairs(texts, np.random.default_rng(0), mismatch=False)]
    assert not set(wrong) & {e["target"] for e in texts}  # without sources: all disfluent


def test_model_verifier_scores_copies_of_its_training_texts_out_of_fold():
    """lm: candidates that copy real training texts and fresh sentences of the same language
    are equally fluent, so they pass equally often. Scored by the model that learned the
    copies as acceptable, copies passed 10-20 points more often (4 seeds); out of fold the gap
    is -4 to +4 points."""
    from ouroboros.curation.steps import model_verifier
    lang = GroundTruthLanguage()
    real, fresh = (lang.sample(n, np.random.default_rng(s)) for n, s in ((600, 10), (300, 20)))
    rows, ctx = _rows(real[:300] + fresh), _ctx(real)
    model_verifier(rows, ctx, threshold=0.5)
    kept = np.array([r["decisions"][-1]["kept"] for r in rows])
    assert ctx.info["model-verifier"]["scored_out_of_fold"] >= 300
    assert kept[:300].mean() - kept[300:].mean() == pytest.approx(0, abs=0.08)


def test_transformer_detector_option(one_thread):
    lang = GroundTruthLanguage()
    real = lang.sample(300, np.random.default_rng(1))
    synthetic = [t + " zzz zzz" if i % 2 else t
                 for i, t in enumerate(lang.sample(200, np.random.default_rng(2)))]
    ctx = _ctx(real)
    kept = detector(_rows(synthetic), ctx, mode="filter", keep_fraction=0.5,
                    classifier="transformer")
    assert ctx.info["detector"]["classifier"] == "transformer"
    assert ctx.info["detector"]["folds"] == 3
    assert ctx.info["detector"]["auc"] > 0.65  # at most about 0.75: half are real sentences
    # A scorer that ignores the text keeps 50 (sd 3.5). Out-of-fold scores keep 5 to 35 of them
    # (4 seeds); in-sample scores kept 3 to 6, as the detector ranked rows it had learned.
    assert sum("zzz" in r["target"] for r in kept) < 40


def _pair_classifier(folder, pairs):
    """A tiny HF sequence classifier trained (one unpadded example a step) to call a pair
    acceptable (label 1 of 2) iff its target is its own source's translation."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from ouroboros.models.tokenizer import train_word_tokenizer
    tok = train_word_tokenizer([s for p in pairs for s in p])
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2, num_labels=2,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    examples = [(s, t, int(i == j)) for i, (s, _) in enumerate(pairs)
                for j, (_, t) in enumerate(pairs)]
    for _ in range(50):
        for s, t, y in examples:
            loss = model(**tok(s, t, return_tensors="pt"), labels=torch.tensor([y])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def test_model_verifier_with_a_hugging_face_classifier(tmp_path, one_thread):
    """Each target is right for one source and wrong for the other, so only a scorer that
    gives the model both sides, reads its last label and handles padding (the pairs differ
    in length) keeps exactly the right answers."""
    from ouroboros.curation.steps import model_verifier
    from ouroboros.tasks.conditional import Translation
    pairs = [("a dog runs", "ein Hund rennt"), ("a small cat sleeps", "eine kleine Katze schläft")]
    _pair_classifier(tmp_path, pairs)
    rows = [{"id": f"{i}-{j}", "source": s, "target": t} for i, (s, _) in enumerate(pairs)
            for j, (_, t) in enumerate(pairs)]
    ctx = CurationContext(real=[], rng=np.random.default_rng(0),
                          task=Translation(TaskConfig(name="translation")))
    kept = model_verifier(rows, ctx, threshold=0.5, model=str(tmp_path))
    assert [r["id"] for r in kept] == ["0-0", "1-1"]
    assert ctx.info["model-verifier"] == {"model": str(tmp_path), "accepted": 2}


def test_finished_step_drops_samples_cut_before_their_end():
    rows = [{"id": "a", "source": "", "target": "x y", "finished": True},
            {"id": "b", "source": "", "target": "x y z", "finished": False}]
    ctx = CurationContext(real=[], rng=np.random.default_rng(0),
                          task=LanguageModelling(TaskConfig()))
    kept, lineage = curate(rows, [CurationStepConfig(name="finished")], ctx)
    assert [r["id"] for r in kept] == ["a"] and ctx.info["finished"] == {"dropped": 1}
    assert lineage[1]["decisions"][0]["kept"] is False
