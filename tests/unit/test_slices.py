"""Metrics sliced by origin, generator and curation outcome."""

import numpy as np

from ouroboros.data.grammar import GroundTruthLanguage
from ouroboros.metrics.slices import origin_of, outcome_of, slice_rows


def _by(rows):
    return {(r["group"], r["metric"]): (r["value"], r["n"]) for r in rows}


def test_trainset_sliced_by_origin_with_exact_error_rates():
    lang = GroundTruthLanguage()
    valid = lang.sample(6, np.random.default_rng(0))
    rows = ([{"target": t, "origin": "real"} for t in valid[:4]]
            + [{"target": valid[4], "origin": "synthetic", "generation": 0, "generator": "a"},
               {"target": "dog the the", "origin": "synthetic", "generation": 0,
                "generator": "a"},
               {"target": "sheep sheep", "origin": "synthetic", "generation": 1}])
    out = _by(slice_rows("trainset", rows, lambda r: r["target"], lang,
                         lambda rs: np.full(len(rs), 7.0)))
    assert out[("all", "count")] == (7.0, 7)
    assert out[("real", "error_rate")] == (0.0, 4)
    assert out[("synthetic-g0-a", "error_rate")] == (0.5, 2)
    assert out[("synthetic-g1", "error_rate")] == (1.0, 1)
    assert np.isnan(out[("synthetic-g1", "true_logprob")][0])
    assert out[("synthetic-g0-a", "true_logprob")] == (lang.logprobs([valid[4]])[0], 1)
    assert out[("real", "reference_perplexity")] == (7.0, 4)
    assert out[("all", "words")][0] == np.mean([len(r["target"].split()) for r in rows])


def test_candidates_by_first_dropping_step_with_mean_scores():
    rows = [{"target": "a b", "scores": {"quality": 1.0},
             "decisions": [{"step": "dedup", "kept": True}, {"step": "quality", "kept": True}]},
            {"target": "a b c", "scores": {"quality": -1.0},
             "decisions": [{"step": "dedup", "kept": True}, {"step": "quality", "kept": False}]},
            {"target": "a", "scores": {},
             "decisions": [{"step": "dedup", "kept": False}]}]
    assert [outcome_of(r) for r in rows] == ["kept", "dropped:quality", "dropped:dedup"]
    out = _by(slice_rows("candidates", rows, lambda r: r["target"]))
    assert out[("kept", "score_quality")] == (1.0, 1)
    assert out[("all", "score_quality")] == (0.0, 2)  # rows without the score are left out
    assert np.isnan(out[("dropped:dedup", "score_quality")][0])
    assert ("all", "error_rate") not in out  # no ground truth: no validity


def test_origin_names_match_composition():
    assert origin_of({"origin": "real-fresh"}) == "real-fresh"
    assert origin_of({"origin": "synthetic", "generation": 3, "generator": "wide"}) == \
        "synthetic-g3-wide"
