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
in the validation); :func:`wald_mde` uses the SE under the null for the test's
threshold and the SE under the alternative for the estimate's spread instead.
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
    level = 1 - alpha / sided
    if df is None:
        normal = NormalDist()
        return float((normal.inv_cdf(level) + normal.inv_cdf(power)) * se)
    if not df >= 1:
        return float("nan")
    from scipy.stats import t

    return float((t.ppf(level, df) + t.ppf(power, df)) * se)


def wald_mde(
    se_at: Callable[[float], float],
    df: float | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
    limit: float = 10.0,
    steps: int = 400,
) -> float:
    """Smallest |effect| a two-sided Wald test detects when the spread of the
    estimate depends on the true effect (a log odds ratio: its SE grows as a
    group's rate moves towards 0 or 1).

    The test rejects when ``|estimate| > q_{1-α/2} · ŝe``. With few clusters the
    robust ``ŝe`` stays near its value without an effect (0.58 under the null,
    0.69 at the old MDE in ``benchmarks/stats_validation.py``) while the
    estimate's own spread follows the information at the alternative, so an
    effect δ is detected with ``power`` when
    ``|δ| ≥ q_{1-α/2} · se(0) + q_{power} · se(δ)`` (the null/alternative form of
    sample-size formulas for logistic regression; normal, or t with ``df``,
    quantiles). The smaller root in each direction is found; the larger of the
    two directions is returned, so that an effect of at least that size either
    way is detected with the stated power. With a constant SE it equals
    :func:`minimum_detectable_effect`.

    Args:
        se_at: standard error (link scale) if the true effect were δ; δ is on the
            same scale (log odds for a logistic term).
        df: degrees of freedom of the t reference; None for the normal limit.
        limit: largest |δ| searched (10 log-odds units: odds ratio 22,026).
        steps: grid points per direction before the crossing is refined by
            bisection.

    Returns:
        The detectable |δ|; ``inf`` when in some direction no |δ| ≤ ``limit``
        is detectable (the spread grows faster than the effect, near
        separation); NaN when ``df`` < 1 or the SE at 0 is not finite.
    """
    if df is None:
        normal = NormalDist()
        q_test, q_power = normal.inv_cdf(1 - alpha / 2), normal.inv_cdf(power)
    elif df >= 1:
        from scipy.stats import t

        q_test, q_power = float(t.ppf(1 - alpha / 2, df)), float(t.ppf(power, df))
    else:
        return float("nan")
    threshold = q_test * se_at(0.0)
    if not np.isfinite(threshold):
        return float("nan")

    def gap(delta: float) -> float:  # ≥ 0 where δ is detectable
        se = se_at(delta)
        return abs(delta) - threshold - q_power * se if np.isfinite(se) else -np.inf

    roots = []
    for sign in (1.0, -1.0):
        grid = sign * np.linspace(0.0, limit, steps + 1)
        hit = next((i for i, d in enumerate(grid) if gap(d) >= 0), None)
        if hit is None:
            return float("inf")
        if hit == 0:  # no spread at all: any effect is detected
            return 0.0
        low, high = grid[hit - 1], grid[hit]
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (low, middle) if gap(middle) >= 0 else (middle, high)
        roots.append(abs(high))
    return float(max(roots))


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
