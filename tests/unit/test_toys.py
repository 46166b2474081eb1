"""Analytic loops against the closed forms of ../shared/REFERENCE.md, through the policies."""

import csv
import math

import pytest

from ouroboros import registry
from ouroboros.cli import main
from ouroboros.report import plots
from ouroboros.toys.loops import Regression, ToySettings, digamma, run_toy

# (toy, policy): each exact closed form must hold within 4 standard errors at every generation.
CASES = [("gaussian-mle", "replace"), ("gaussian-unbiased", "replace"),
         ("regression", "replace"), ("regression", "accumulate"), ("categorical", "replace")]


@pytest.mark.parametrize(("name", "policy"), CASES)
def test_closed_forms(name, policy):
    rows = run_toy(name, ToySettings(policy=policy, replicates=3000, generations=8))
    checked = [r for r in rows if r.theory is not None]
    assert len(checked) >= 8
    for r in checked:
        assert r.theory_kind == "exact" and abs(r.mean - r.theory) < 4 * r.stderr + 1e-12, r


# The exact closed forms away from the defaults: other M, sigma_0^2, d, sigma, K and Zipf beta.
SETTINGS = [("gaussian-mle", "replace", {"samples": 5, "init_var": 4.0}),
            ("gaussian-unbiased", "replace", {"samples": 8, "init_var": 0.25}),
            ("regression", "replace", {"samples": 10, "dim": 3, "noise": 0.5}),
            ("regression", "accumulate", {"samples": 8, "dim": 2, "noise": 2.0}),
            ("categorical", "replace", {"samples": 7, "categories": 4, "zipf": 2.0})]


@pytest.mark.parametrize(("name", "policy", "settings"), SETTINGS)
def test_exact_closed_forms_at_other_settings(name, policy, settings):
    rows = run_toy(name, ToySettings(policy=policy, replicates=3000, generations=4, seed=1,
                                     **settings))
    checked = [r for r in rows if r.theory is not None]
    assert len(checked) >= 4
    for r in checked:
        assert r.theory_kind == "exact" and abs(r.mean - r.theory) < 4 * r.stderr + 1e-12, r


@pytest.mark.parametrize("name", ["gaussian-mle", "gaussian-unbiased"])
def test_accumulate_bounds_the_gaussian_mean_error(name):
    rows = run_toy(name, ToySettings(policy="accumulate", replicates=3000, generations=8))
    errors = [r for r in rows if r.quantity == "sq_mean_error"]
    for r in errors:  # an approximation, off by up to 2.6% here (docs/metrics.md): 4 SE + 5%
        assert r.theory_kind == "approximate" and "σ₀²" in r.theory_neglects, r
        assert abs(r.mean - r.theory) < 4 * r.stderr + 0.05 * r.theory, r
    assert errors[-1].mean < math.pi**2 / 6 / 20 * 1.1  # bounded, unlike replace's n/M


def test_unbiased_variance_collapses_in_median_not_mean():
    rows = run_toy("gaussian-unbiased", ToySettings(replicates=3000, generations=10))
    var = [r for r in rows if r.quantity == "var"]
    assert abs(var[-1].mean - 1.0) < 4 * var[-1].stderr  # E[sigma^2] stays sigma0^2 ...
    assert var[-1].median < 0.8                          # ... while the typical chain shrinks


def test_toys_use_the_registered_policies(monkeypatch):
    calls = []
    real = registry.POLICIES.get("mix")
    monkeypatch.setitem(registry.POLICIES.entries, "mix", "tests.unit.test_toys:_spy")
    monkeypatch.setattr("tests.unit.test_toys._spy", lambda ctx: calls.append(1) or real(ctx),
                        raising=False)
    run_toy("gaussian-mle", ToySettings(policy="mix", real_fraction=0.5, replicates=3,
                                        generations=4))
    assert len(calls) == 3 * 3


def test_fresh_regression_draws_n_new_rows_at_the_replace_size(monkeypatch):
    """fresh at real share 1/4 fits 5 new distinct real rows + 15 synthetic (T = 20 in all),
    so the error rises above generation 0's; fitting all T real rows plus synthetic ones made
    it fall."""
    seen = set()
    fit = Regression.fit

    def spy(self, truth, rows):
        real = [r["row"] for r in rows if r["origin"] == "real"]
        seen.add((len(rows), len(real), len(set(real))))
        return fit(self, truth, rows)

    monkeypatch.setattr(Regression, "fit", spy)
    rows = run_toy("regression", ToySettings(policy="fresh", real_fraction=0.25, replicates=400,
                                             generations=5))
    assert seen == {(20, 20, 20), (20, 5, 5)}
    first, last = rows[0], rows[-1]
    assert last.mean - first.mean > 4 * (first.stderr + last.stderr), (first, last)


@pytest.mark.parametrize("samples", [3, 5, 6])
def test_regression_needs_more_rows_than_dim_plus_one(samples, tmp_path, capsys):
    """T <= d + 1 (d = 5): a clear error before any work, not a crash (T = d + 1 divided by
    zero) nor a negative closed form (T <= d)."""
    with pytest.raises(ValueError, match=r"samples: must exceed dim \+ 1 = 6"):
        run_toy("regression", ToySettings(samples=samples, replicates=2, generations=2))
    out = tmp_path / "out"
    assert main(["toys", "regression", "--samples", str(samples), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()


def test_digamma():
    assert digamma(1.0) == pytest.approx(-0.5772156649015329, abs=1e-12)
    assert digamma(0.5) == pytest.approx(-0.5772156649015329 - 2 * math.log(2), abs=1e-12)


def test_cli(tmp_path, capsys):
    assert main(["toys", "categorical", "--replicates", "50", "--generations", "3",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gini_simpson" in out and "closed form" in out
    assert (tmp_path / "toys.csv").is_file() and (tmp_path / "toys.png").stat().st_size > 1000
    assert main(["toys", "nope", "--policy", "replce"]) == 2
    err = capsys.readouterr().err
    assert "unknown 'nope'" in err and "did you mean 'replace'" in err


@pytest.mark.parametrize(("args", "quantity", "first"), [
    (["regression", "--dim", "3", "--noise", "0.5", "--samples", "10"], "sq_weight_error",
     0.25 * 3 / 6),
    (["gaussian-mle", "--init-var", "4"], "var", 4 * 19 / 20),
    (["categorical", "--categories", "4", "--zipf", "0"], "gini_simpson", 0.75 * 19 / 20),
])
def test_cli_flags_reach_the_loop(args, quantity, first, tmp_path):
    """The closed form follows the flags, and so do the simulated chains (the defaults give a
    different value: 0.357, 0.95 and 0.72)."""
    assert main(["toys", *args, "--replicates", "600", "--generations", "2",
                 "--out", str(tmp_path)]) == 0
    with open(tmp_path / "toys.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["quantity"] == quantity]
    assert float(rows[0]["theory"]) == pytest.approx(first)
    for r in rows:
        assert abs(float(r["mean"]) - float(r["theory"])) < 4 * float(r["stderr"]), r


@pytest.mark.parametrize(("args", "problem"), [
    (["regression", "--dim", "0"], "--dim: must be an integer >= 1, got 0"),
    (["regression", "--noise", "-1"], "--noise: must be a finite number > 0"),
    (["regression", "--noise", "0"], "--noise: must be a finite number > 0"),
    (["gaussian-mle", "--init-var", "0"], "--init-var: must be a finite number > 0"),
    (["categorical", "--categories", "1"], "--categories: must be an integer >= 2"),
    (["categorical", "--zipf", "-1"], "--zipf: must be a finite number >= 0"),
    (["gaussian-unbiased", "--dim", "3"], "--dim: only for regression"),
    (["gaussian-mle", "--policy", "mix", "--real-fraction", "1.5"], "--real-fraction: must be"),
])
def test_cli_rejects_bad_toy_settings(args, problem, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["toys", *args, "--replicates", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and problem in err
    assert not out.exists()


def test_closed_forms_are_labelled_exact_or_approximate(tmp_path, capsys, monkeypatch):
    """Console, toys.csv and the plot legend say which reference values are exact and which
    approximate, and what an approximation neglects."""
    legend = []
    close = plots.plt.close

    def spy(fig):
        legend.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        close(fig)

    monkeypatch.setattr(plots.plt, "close", spy)
    for policy, kind in (("accumulate", "approximate"), ("replace", "exact")):
        out = tmp_path / policy
        assert main(["toys", "gaussian-unbiased", "--policy", policy, "--replicates", "20",
                     "--generations", "2", "--out", str(out)]) == 0
        with open(out / "toys.csv", encoding="utf-8") as f:
            assert {r["theory_kind"] for r in csv.DictReader(f) if r["theory"]} == {kind}
    printed = capsys.readouterr().out
    assert "0.0625  approximate" in printed and "0.1000  exact" in printed
    assert "approximate closed form of sq_mean_error: neglects the fitted variances'" in printed
    assert "closed form (exact)" in legend
    assert any(t.startswith("approximate closed form, neglects") for t in legend)


def test_regression_means_that_do_not_exist_are_not_reported():
    """mix can train on fewer distinct design rows than d + 2: the mean error then does not
    exist (the issue: 3811 +- 1910 printed where the median was 4.1)."""
    import math

    from ouroboros.toys.loops import ToySettings, run_toy
    rows = run_toy("regression", ToySettings(policy="mix", real_fraction=0.1, dim=8, samples=10,
                                             generations=3, replicates=50))
    assert math.isfinite(rows[0].mean)  # generation 0: all T = d + 2 real rows
    assert all(math.isnan(r.mean) and math.isnan(r.stderr) and r.note for r in rows[1:])
    assert all(math.isfinite(r.median) for r in rows)
    rows = run_toy("regression", ToySettings(policy="replace", dim=8, samples=10,
                                             generations=2, replicates=50))
    assert all(math.isfinite(r.mean) and math.isnan(r.stderr) for r in rows)  # T = d + 2
    rows = run_toy("regression", ToySettings(policy="replace", dim=2, samples=20,
                                             generations=2, replicates=50))
    assert all(math.isfinite(r.stderr) and not r.note for r in rows)
