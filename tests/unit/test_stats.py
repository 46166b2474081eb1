"""Statistics over seeds: bootstrap intervals, paired differences, what the report says."""

import pytest

from ouroboros.report.stats import bootstrap_ci, paired_differences
from ouroboros.report.tables import paired_table, summarise, summary_table


def _rows(values: dict[str, list[float]], metric="perplexity", hib=False):
    return [{"cell": f"{p}-s{s}", "policy": p, "seed": s, "generation": 1, "metric": metric,
             "value": v, "higher_is_better": str(hib), "signature": ""}
            for p, vs in values.items() for s, v in enumerate(vs)]


def test_bootstrap_interval_is_seeded_and_contains_the_mean():
    values = [1.0, 2.0, 4.0, 8.0, 3.0]
    lo, hi = bootstrap_ci(values)
    assert (lo, hi) == bootstrap_ci(values)
    assert lo < sum(values) / 5 < hi and lo >= 1.0 and hi <= 8.0
    assert bootstrap_ci([3.0]) == (3.0, 3.0)


def test_paired_differences_use_shared_seeds_only():
    rows = _rows({"replace": [10, 20, 30, 40], "accumulate": [8, 17, 29]})
    (p,) = paired_differences(rows, "perplexity", 1, "replace", higher_is_better=False)
    assert p.n_seeds == 3 and p.mean == pytest.approx(-2.0) and p.wins == 3
    assert p.low <= p.mean <= p.high


def test_report_text_states_seeds_and_interval_kind():
    rows = _rows({"replace": [10, 20, 30], "mix": [9, 19, 31]})
    for r in rows:
        r["generation"] = 0
    rows += [{**r, "generation": 1} for r in rows]
    s = summarise(rows)[("replace", "perplexity", 1)]
    assert s.n_seeds == 3 and s.median == 20 and s.band == (s.ci_low, s.ci_high)
    text = summary_table(rows)
    assert "mean over 3 seed(s) [95% bootstrap CI over seeds" in text
    assert "(2/3)" in paired_table(rows)  # mix is better than replace on 2 of 3 seeds
