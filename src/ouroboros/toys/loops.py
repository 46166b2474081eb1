"""Analytic recursive-training loops with closed forms (../shared/REFERENCE.md).

Each toy is a model that fits data and samples from the fit. The loop is the one the language
models use, reduced to its bones, and assembles every generation's data with the SAME policy
functions (``ouroboros.policies.core``): generation 0 fits M real points; generation g fits
what the policy builds from the real points and the samples of generations < g. Index n in the
closed forms counts fits, so loop generation g is n = g + 1.

Many independent replicates give the empirical mean of each quantity and its standard error,
printed next to the closed form where one exists, labelled exact or approximate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ouroboros import registry
from ouroboros.policies.core import PolicyContext


def digamma(x: float) -> float:
    """psi(x) for x > 0: shift up with psi(x) = psi(x + 1) - 1/x, then the asymptotic series
    (error below 1e-12 once x >= 10)."""
    shift = 0.0
    while x < 10:
        shift -= 1 / x
        x += 1
    inv2 = 1 / (x * x)
    series = inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 * (1 / 240 - inv2 / 132))))
    return shift + math.log(x) - 1 / (2 * x) - series


@dataclass(frozen=True)
class ClosedForm:
    """A reference value for one quantity: exact, or an approximation naming what it neglects."""

    value: float
    neglects: str = ""  # empty: exact

    @property
    def kind(self) -> str:
        """'exact' or 'approximate'."""
        return "approximate" if self.neglects else "exact"


@dataclass
class ToySettings:
    """One toy study: which policy, how many points, generations and replicates."""

    policy: str = "replace"
    real_fraction: float | None = None
    samples: int = 20          # M: points per generation (T rows for regression)
    generations: int = 10
    replicates: int = 2000
    seed: int = 0
    init_var: float = 1.0      # sigma_0^2, the true variance, Gaussian only
    dim: int = 5               # d, regression only
    noise: float = 1.0         # sigma, regression only
    categories: int = 10       # K, categorical only
    zipf: float = 1.0          # beta: true p_i proportional to i^-beta, categorical only


class Toy:
    """A model family with closed forms: fit, sample, and the quantities it tracks."""

    name = ""
    quantities: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()  # the ToySettings fields only this kind of toy reads

    def truth(self, s: ToySettings, rng: np.random.Generator) -> dict:
        """The ground truth of one replicate."""
        raise NotImplementedError

    def real(self, truth: dict, n: int, rng: np.random.Generator) -> list[dict]:
        """``n`` real points drawn from the truth."""
        raise NotImplementedError

    def fit(self, truth: dict, rows: list[dict]) -> dict:
        """Parameters fitted to ``rows``."""
        raise NotImplementedError

    def sample(self, truth: dict, fit: dict, n: int, rng: np.random.Generator) -> list[dict]:
        """``n`` synthetic points from a fit."""
        raise NotImplementedError

    def measure(self, truth: dict, fit: dict) -> dict[str, float]:
        """The tracked quantities of one fit."""
        raise NotImplementedError

    def theory(self, s: ToySettings, n: int) -> dict[str, ClosedForm]:
        """Closed forms at fit index n >= 1 for the settings' policy (empty: none known)."""
        return {}

    def moments(self, s: ToySettings, g: int) -> tuple[bool, bool, str]:
        """(generation g's mean exists, its standard error means something, why not): the
        replicates' mean ± SE is printed only where both hold."""
        return True, True, ""

    def check(self, s: ToySettings) -> list[tuple[str, str]]:
        """(setting, problem) for settings this toy cannot run with (beyond each value's range)."""
        return []


# Gaussian accumulate: mu_n - mu_0 = sum_{k<n} v_k / (k + 1) with E v_k^2 = E[var_k] / M (var_0 =
# sigma_0^2), exactly; the closed form takes every E[var_k] as sigma_0^2, so it misses their
# shrinkage (docs/metrics.md: it overstates, by up to 0.8% unbiased, 2.6% MLE at the defaults).
FITTED_VARIANCE_AS_TRUE = "the fitted variances' shrinkage (takes every fit's variance as σ₀²)"


class Gaussian(Toy):
    """Fit N(mu, sigma^2) by MLE (ddof=0) or unbiased variance (ddof=1); truth N(0, sigma_0^2)."""

    quantities = ("var", "sq_mean_error", "log_var")
    parameters = ("init_var",)

    def __init__(self, ddof: int) -> None:
        self.ddof = ddof
        self.name = "gaussian-mle" if ddof == 0 else "gaussian-unbiased"

    def truth(self, s, rng):
        return {"mu": 0.0, "var": s.init_var}

    def real(self, truth, n, rng):
        xs = rng.normal(truth["mu"], math.sqrt(truth["var"]), n)
        return [{"x": float(x), "origin": "real"} for x in xs]

    def fit(self, truth, rows):
        x = np.array([r["x"] for r in rows])
        return {"mu": float(x.mean()), "var": float(x.var(ddof=self.ddof))}

    def sample(self, truth, fit, n, rng):
        xs = rng.normal(fit["mu"], math.sqrt(fit["var"]), n)
        return [{"x": float(x), "origin": "synthetic"} for x in xs]

    def measure(self, truth, fit):
        return {"var": fit["var"], "sq_mean_error": (fit["mu"] - truth["mu"]) ** 2,
                "log_var": math.log(fit["var"]) if fit["var"] > 0 else -math.inf}

    def theory(self, s, n):
        m, v0 = s.samples, s.init_var
        if s.policy == "replace" and self.ddof == 0:
            shrink = ((m - 1) / m) ** n
            return {"var": ClosedForm(v0 * shrink), "sq_mean_error": ClosedForm(v0 * (1 - shrink))}
        if s.policy == "replace":
            log_var = math.log(v0) + n * (digamma((m - 1) / 2) + math.log(2 / (m - 1)))
            return {"var": ClosedForm(v0), "sq_mean_error": ClosedForm(v0 * n / m),
                    "log_var": ClosedForm(log_var)}
        if s.policy == "accumulate":  # REFERENCE.md: "≈"
            error = v0 * sum(1 / i**2 for i in range(1, n + 1)) / m
            return {"sq_mean_error": ClosedForm(error, neglects=FITTED_VARIANCE_AS_TRUE)}
        return {}


class Regression(Toy):
    """OLS on a Gaussian design X (T x d, fixed within a replicate); labels regenerated by the
    previous fit with fresh noise sigma.

    A point is a design row with a label. The design is fixed, so new real data (the ``fresh``
    policy) are new observations: ``n`` distinct design rows drawn at random, each labelled by
    the truth with a new noise draw."""

    name = "regression"
    quantities = ("sq_weight_error",)
    parameters = ("dim", "noise")

    def truth(self, s, rng):
        return {"X": rng.normal(size=(s.samples, s.dim)), "w": rng.normal(size=s.dim),
                "noise": s.noise}

    def _rows(self, truth, n, rng):
        """``n`` distinct design rows: all T of them when n = T, else a random subset."""
        t = len(truth["X"])
        return np.arange(t) if n == t else rng.choice(t, size=n, replace=False)

    def _label(self, truth, w, rows, rng):
        y = truth["X"][rows] @ w + rng.normal(0.0, truth["noise"], len(rows))
        return [{"row": int(i), "y": float(v)} for i, v in zip(rows, y, strict=True)]

    def real(self, truth, n, rng):
        rows = self._rows(truth, n, rng)
        return [{**r, "origin": "real"} for r in self._label(truth, truth["w"], rows, rng)]

    def fit(self, truth, rows):
        X = truth["X"][[r["row"] for r in rows]]
        y = np.array([r["y"] for r in rows])
        return {"w": np.linalg.lstsq(X, y, rcond=None)[0]}

    def sample(self, truth, fit, n, rng):
        rows = self._rows(truth, n, rng)
        return [{**r, "origin": "synthetic"} for r in self._label(truth, fit["w"], rows, rng)]

    def measure(self, truth, fit):
        return {"sq_weight_error": float(np.sum((fit["w"] - truth["w"]) ** 2))}

    def moments(self, s, g):
        # The fewest distinct design rows a generation-g training set can hold: mix and fresh
        # join n_real real rows and T - n_real synthetic ones (each part distinct, the parts
        # may overlap); accumulate-subsample draws T of g + 1 copies of each row.
        t, d = s.samples, s.dim
        if g == 0 or s.policy in ("replace", "accumulate"):
            fewest = t
        elif s.policy in ("mix", "fresh"):
            n_real = round(s.real_fraction * t)
            fewest = max(n_real, t - n_real)
        else:
            fewest = math.ceil(t / (g + 1))
        if fewest < d + 2:
            return False, False, (
                f"under {s.policy} a training set can hold as few as {fewest} distinct design "
                f"rows, fewer than d + 2 = {d + 2}: OLS is then rank-deficient or its expected "
                f"squared error infinite, so the mean and its SE do not exist (the median is "
                f"reported)")
        if fewest < d + 4:
            return True, False, (
                f"with as few as {fewest} <= d + 3 = {d + 3} distinct design rows the squared "
                f"error has infinite variance: its mean is finite, but a standard error means "
                f"nothing")
        return True, True, ""

    def check(self, s):
        if s.samples > s.dim + 1:
            return []
        return [("samples", f"must exceed dim + 1 = {s.dim + 1} for regression, got {s.samples}: "
                            "OLS needs T > d rows, and at T = d + 1 the expected squared error "
                            "σ² d/(T−d−1) is infinite")]

    def theory(self, s, n):
        one = s.noise**2 * s.dim / (s.samples - s.dim - 1)  # E tr((X'X)^-1) sigma^2
        if s.policy == "replace":  # exact: n independent increments (X'X)^-1 X' noise
            return {"sq_weight_error": ClosedForm(n * one)}
        if s.policy == "accumulate":  # exact: every fit sees the same X, so w_n - w* is
            # sum_{k<n} (X'X)^-1 X' noise_k / (k + 1) with independent noise_k
            return {"sq_weight_error": ClosedForm(one * sum(1 / i**2 for i in range(1, n + 1)))}
        return {}


class Categorical(Toy):
    """Resample M draws from the empirical frequencies (Wright-Fisher drift) over K categories
    with a Zipf truth p_i proportional to i^-beta."""

    name = "categorical"
    quantities = ("gini_simpson", "categories_left")
    parameters = ("categories", "zipf")

    def truth(self, s, rng):
        p = np.arange(1, s.categories + 1) ** -float(s.zipf)
        return {"p": p / p.sum()}

    def _draw(self, p, n, rng, origin):
        return [{"c": int(c), "origin": origin} for c in rng.choice(len(p), size=n, p=p)]

    def real(self, truth, n, rng):
        return self._draw(truth["p"], n, rng, "real")

    def fit(self, truth, rows):
        counts = np.bincount([r["c"] for r in rows], minlength=len(truth["p"]))
        return {"p": counts / counts.sum()}

    def sample(self, truth, fit, n, rng):
        return self._draw(fit["p"], n, rng, "synthetic")

    def measure(self, truth, fit):
        return {"gini_simpson": float(1 - np.sum(fit["p"] ** 2)),
                "categories_left": float(np.count_nonzero(fit["p"]))}

    def theory(self, s, n):
        if s.policy != "replace":
            return {}
        p = self.truth(s, None)["p"]
        out = {"gini_simpson": ClosedForm((1 - 1 / s.samples) ** n * float(1 - np.sum(p**2)))}
        if n == 1:  # category i is missing from M draws with probability (1 - p_i)^M
            out["categories_left"] = ClosedForm(float(np.sum(1 - (1 - p) ** s.samples)))
        return out


TOYS: dict[str, Callable[[], Toy]] = {
    "gaussian-mle": lambda: Gaussian(0), "gaussian-unbiased": lambda: Gaussian(1),
    "regression": Regression, "categorical": Categorical,
}


# setting -> (is the value valid, what it must be); ranges every toy needs
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "samples": (lambda v: v >= 2, "an integer >= 2"),
    "generations": (lambda v: v >= 1, "an integer >= 1"),
    "replicates": (lambda v: v >= 2, "an integer >= 2"),
    "dim": (lambda v: v >= 1, "an integer >= 1"),
    "init_var": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "noise": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "categories": (lambda v: v >= 2, "an integer >= 2"),
    "zipf": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
}


def check_settings(name: str, s: ToySettings) -> list[tuple[str, str]]:
    """(setting, problem) for every reason toy ``name`` cannot run with ``s``; empty: valid."""
    problems = [(k, f"must be {what}, got {getattr(s, k)}") for k, (ok, what) in _RANGES.items()
                if not ok(getattr(s, k))]
    needs = s.policy in {"mix", "fresh"}
    if needs != (s.real_fraction is not None):
        problems.append(("real_fraction", "is needed by mix and fresh, and only by them"))
    elif needs and not 0 <= s.real_fraction <= 1:
        problems.append(("real_fraction", f"must be in [0, 1], got {s.real_fraction}"))
    if problems or name not in TOYS:  # a toy's own checks assume valid ranges
        return problems
    return TOYS[name]().check(s)


def describe(name: str, s: ToySettings) -> str:
    """One line naming the toy and every setting its results depend on."""
    fraction = f" {s.real_fraction}" if s.real_fraction is not None else ""
    own = "".join(f", {k}={getattr(s, k)}" for k in TOYS[name]().parameters)
    return (f"{name}, policy {s.policy}{fraction}, samples={s.samples}{own}, "
            f"{s.replicates} replicates, seed {s.seed}")


def run_chain(toy: Toy, s: ToySettings, rng: np.random.Generator) -> list[dict[str, float]]:
    """One replicate: the tracked quantities of every generation's fit."""
    policy = registry.POLICIES.get(s.policy)
    truth = toy.truth(s, rng)
    real = toy.real(truth, s.samples, rng)
    fit = toy.fit(truth, real)
    out, synthetic = [toy.measure(truth, fit)], []
    for g in range(1, s.generations):
        synthetic.append(toy.sample(truth, fit, s.samples, rng))
        ctx = PolicyContext(generation=g, real=real, synthetic=synthetic, size=s.samples,
                            rng=rng, fresh=lambda n: toy.real(truth, n, rng),
                            real_fraction=s.real_fraction)
        fit = toy.fit(truth, policy(ctx))
        out.append(toy.measure(truth, fit))
    return out


@dataclass
class ToyRow:
    """One generation's empirical mean, its standard error, and the closed form (if any) with
    its kind ("exact", "approximate", or "" when none) and what an approximation neglects."""

    generation: int
    quantity: str
    mean: float
    stderr: float
    median: float
    theory: float | None
    theory_kind: str = ""
    theory_neglects: str = ""
    note: str = ""  # why the mean or its SE is not reported (NaN), if it is not


def _row(generation: int, quantity: str, values: np.ndarray, ref: ClosedForm | None,
         moments: tuple[bool, bool, str] = (True, True, "")) -> ToyRow:
    """The summary of one quantity's values over the replicates, next to its closed form; the
    mean and its SE only where they exist (``moments``)."""
    has_mean, has_se, why = moments
    return ToyRow(generation, quantity, float(values.mean()) if has_mean else math.nan,
                  float(values.std(ddof=1) / math.sqrt(len(values))) if has_se else math.nan,
                  float(np.median(values)), ref.value if ref else None,
                  ref.kind if ref else "", ref.neglects if ref else "", why)


def run_toy(name: str, s: ToySettings) -> list[ToyRow]:
    """All replicates of a toy study, summarised per generation and quantity; ValueError
    (before any work) if the settings are invalid."""
    problems = check_settings(name, s)
    if problems:
        raise ValueError("; ".join(f"{k}: {why}" for k, why in problems))
    toy = TOYS[name]()
    rng = np.random.default_rng(s.seed)
    chains = [run_chain(toy, s, rng) for _ in range(s.replicates)]
    rows = []
    for g in range(s.generations):
        theory = toy.theory(s, g + 1)
        for q in toy.quantities:
            rows.append(_row(g, q, np.array([c[g][q] for c in chains]), theory.get(q),
                             toy.moments(s, g)))
    return rows
