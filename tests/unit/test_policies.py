"""The data policies: sizes, composition and failure on impossible requests."""

import numpy as np
import pytest

from ouroboros import registry
from ouroboros.policies.core import PolicyContext


def _ctx(g=2, fraction=None, size=100):
    real = [{"text": f"r{i}", "origin": "real"} for i in range(size)]
    synthetic = [[{"text": f"s{k}-{i}", "origin": "synthetic", "generation": k}
                  for i in range(size)] for k in range(g)]
    fresh = lambda n: [{"text": f"f{i}", "origin": "real-fresh"} for i in range(n)]  # noqa: E731
    return PolicyContext(g, real, synthetic, size, np.random.default_rng(0), fresh, fraction)


def origins(rows):
    return [r["origin"] + str(r.get("generation", "")) for r in rows]


def test_replace_uses_only_last_generation():
    rows = registry.POLICIES.get("replace")(_ctx(g=3))
    assert set(origins(rows)) == {"synthetic2"} and len(rows) == 100


def test_accumulate_keeps_everything():
    rows = registry.POLICIES.get("accumulate")(_ctx(g=3))
    assert len(rows) == 400 and origins(rows).count("real") == 100


def test_accumulate_subsample_is_compute_matched():
    rows = registry.POLICIES.get("accumulate-subsample")(_ctx(g=3))
    assert len(rows) == 100 and len({r["text"] for r in rows}) == 100
    assert {"real", "synthetic0", "synthetic2"} <= set(origins(rows))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_mix_has_the_real_fraction(fraction):
    rows = registry.POLICIES.get("mix")(_ctx(fraction=fraction))
    assert len(rows) == 100 and origins(rows).count("real") == round(100 * fraction)
    assert origins(rows).count("synthetic1") == 100 - round(100 * fraction)


def test_fresh_draws_new_real_data():
    rows = registry.POLICIES.get("fresh")(_ctx(fraction=0.3))
    assert origins(rows).count("real-fresh") == 30 and origins(rows).count("real") == 0


def test_policy_cannot_take_more_than_exists():
    ctx = _ctx(fraction=0.5)
    ctx.real = ctx.real[:10]
    with pytest.raises(ValueError, match="only 10"):
        registry.POLICIES.get("mix")(ctx)


def test_mix_under_given_order_keeps_the_curated_order_after_the_real_rows():
    import numpy as np

    from ouroboros.policies.core import PolicyContext, mix
    real = [{"id": f"r{i}", "origin": "real"} for i in range(10)]
    curated = [{"id": f"s{i}", "origin": "synthetic", "generation": 0} for i in range(30)]
    ctx = PolicyContext(generation=1, real=real, synthetic=[curated], size=10,
                        rng=np.random.default_rng(0), fresh=lambda n: [], real_fraction=0.2,
                        ordered=True)
    rows = mix(ctx)
    assert [r["origin"] for r in rows] == ["real"] * 2 + ["synthetic"] * 8
    ranks = [int(r["id"][1:]) for r in rows[2:]]
    assert ranks == sorted(ranks)  # best first, as curation ordered them
    shuffled = mix(PolicyContext(generation=1, real=real, synthetic=[curated], size=10,
                                 rng=np.random.default_rng(0), fresh=lambda n: [],
                                 real_fraction=0.2))
    assert {r["id"] for r in shuffled} == {r["id"] for r in rows}  # the same draw
