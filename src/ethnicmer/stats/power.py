"""How large an effect a study could have detected (sensitivity), so that "not
significant" can be read: no effect, or too few subjects?

For a statistic whose sampling distribution is close to normal with standard
error ``se``, a two-sided test at level α detects a true effect δ with power
1 − β when ``|δ| ≥ (z_{1−α/2} + z_{1−β}) · se``; at α 0.05 and 80 % power the
factor is 2.80. With few subjects the test behaves like a t test: given ``df``
the factor uses t quantiles (2.93 at 22 degrees of freedom).

``se`` is the spread of the statistic *that the test uses*: the standard
deviation of the permutation (or swap) null for the permutation tests, the
robust standard error for the GEE Wald tests. (The two-level bootstrap over seeds
and subjects, used for the intervals, counts sample noise twice when seeds differ
only by sample-level noise and overstated the paired test's MDE by ~1.4×.)
For a log odds ratio (the GEE terms on recognition) the SE is not constant: it
grows as the alternative moves a group's rate towards 0 or 1, and a detectable
effect computed from the SE at the estimate was optimistic (0.68 power, not 0.80,
in the validation); :func:`wald_mde_by_direction` combines the SE under the null
and an approximate SE under the alternative instead, one value per direction
(0.75–0.84 power, calibrated by simulation).
The approximation is checked by simulation in ``tests/test_stats.py`` and
``benchmarks/stats_validation.py`` (type-I error and power of the tests this
package runs, on synthetic data with subject random effects).
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.80


def minimum_detectable_effect(
    se: float,
    df: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    sided: int = 2,
) -> float:
    """Smallest |effect| a test at ``alpha`` detects with ``power``.

    Args:
        se: standard error of the effect estimate (same unit as the effect).
        df: degrees of freedom (e.g. subjects − groups); None for the normal limit.
        sided: 2 (two-sided test, the default) or 1 (one-sided, e.g. decoding above chance).

    Returns:
        ``(q_{1-alpha/sided} + q_{power}) * se`` with normal (or t with ``df``)
        quantiles q; NaN when ``se`` is NaN or ``df`` < 1.
    """
    if sided not in (1, 2):
        raise ValueError(f"sided must be 1 or 2, not {sided}")
    q_test, q_power = _quantiles(1 - alpha / sided, power, df)
    return float((q_test + q_power) * se)


def _quantiles(level: float, power: float, df: float | None) -> tuple[float, float]:
    """The test's and the power's quantiles: normal, or t with ``df`` (NaN if < 1)."""
    if df is None:
        normal = NormalDist()
        return normal.inv_cdf(level), normal.inv_cdf(power)
    if not df >= 1:
        return float("nan"), float("nan")
    from scipy.stats import t

    return float(t.ppf(level, df)), float(t.ppf(power, df))


def wald_mde(
    se_at: Callable[[float], float],
    df: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """The larger of :func:`wald_mde_by_direction`'s two detectable effects (the
    smallest size detected with ``power`` in both directions; NaN when it is)."""
    return float(max(wald_mde_by_direction(se_at, df, alpha, power)))


def wald_mde_by_direction(
    se_at: Callable[[float], float],
    df: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    limit: float = 10.0,
    steps: int = 400,
) -> tuple[float, float]:
    """Smallest |effect| a two-sided Wald test detects when the spread of the
    estimate depends on the true effect (a log odds ratio: its SE grows as a
    group's rate moves towards 0 or 1) — an approximation, calibrated by
    simulation.

    Solves ``|δ| = q_{1-α/2} · se(0) + q_{power} · se(δ)`` (the null/alternative
    form of sample-size formulas for logistic regression; normal, or t with
    ``df``, quantiles). The test itself divides by the robust SE at the estimate,
    which under an alternative is near se(δ) (0.57 under the null, 0.72 at the
    MDE in the validation design), so the formula matching the test would be
    ``(q_{1-α/2} + q_{power}) · se(δ)``; but the ``se(δ)`` available here
    (:func:`ethnicmer.stats.effects._binomial_se_at`, model-based) overstates the
    spread near separation (0.81 against 0.68 measured), and with it that formula
    declares most effects undetectable. The form used gives 0.78 power at the
    stated MDE in ``benchmarks/stats_validation.py`` (the constant-SE figure gave
    0.68), whose GEE designs — an effect towards 0 or 1 and one towards 0.5 — are
    what it is calibrated on. With a constant SE it equals
    :func:`minimum_detectable_effect`.

    In each direction the smallest detectable |δ| is found (the first grid point
    where it is detectable, then scipy's ``brentq`` in the grid step before it).
    Near separation the detectable effects form a band: a Wald test loses power
    again for very large odds ratios (the Hauck–Donner effect; e.g. detectable
    for log odds ratios 2.3–5.4 only in one validation replicate), so the value
    is the band's lower end, not a promise for every larger effect.

    Args:
        se_at: standard error (link scale) if the true effect were δ; δ is on the
            same scale (log odds for a logistic term).
        df: degrees of freedom of the t reference; None for the normal limit.
        limit: largest |δ| searched (10 log-odds units: odds ratio 22,026).
        steps: grid points per direction before the crossing is refined.

    Returns:
        ``(up, down)``, both ≥ 0: the detectable |δ| for δ > 0 and for δ < 0;
        ``inf`` in a direction where no |δ| ≤ ``limit`` is detectable (the
        spread grows faster than the effect, near separation); NaN for both when
        ``df`` < 1 or the SE at 0 is not finite or zero.
    """
    q_test, q_power = _quantiles(1 - alpha / 2, power, df)
    threshold = q_test * se_at(0.0)
    if not np.isfinite(threshold):  # df < 1 or no SE
        return float("nan"), float("nan")

    def gap(delta: float) -> float:  # ≥ 0 where δ is detectable
        se = se_at(delta)
        return abs(delta) - threshold - q_power * se if np.isfinite(se) else -1e12

    from scipy.optimize import brentq

    roots = []
    for sign in (1.0, -1.0):
        grid = sign * np.linspace(0.0, limit, steps + 1)
        hit = next((i for i, d in enumerate(grid) if gap(d) >= 0), None)
        if hit is None:
            roots.append(float("inf"))
            continue
        if hit == 0:  # no spread at all (se(0) = 0): no test either
            return float("nan"), float("nan")
        roots.append(abs(float(brentq(gap, grid[hit - 1], grid[hit], xtol=1e-9))))
    return roots[0], roots[1]


def proportion_difference_mde(shares: tuple[float, float], sizes: tuple[int, int]) -> float:
    """Smallest difference of two proportions (subjects showing a feature in two groups)
    a two-sided test at α 0.05 detects with 80 % power (normal approximation).

    ``se = sqrt(p (1 - p) (1/n_a + 1/n_b))`` at the pooled proportion p; Fisher's exact
    test, which the coded-AU table runs, is more conservative, so its true detectable
    difference is somewhat larger. NaN when a group is empty; at p 0 or 1 (everyone or
    no one shows it) the pooled p is taken as 0.5 (the largest SE), not 0.
    """
    n_a, n_b = sizes
    if n_a < 1 or n_b < 1:
        return float("nan")
    pooled = (shares[0] * n_a + shares[1] * n_b) / (n_a + n_b)
    if pooled in (0.0, 1.0):
        pooled = 0.5
    se = (pooled * (1 - pooled) * (1 / n_a + 1 / n_b)) ** 0.5
    return min(minimum_detectable_effect(se), 1.0)
