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
The approximation is checked by simulation in ``tests/test_stats.py`` and
``benchmarks/stats_validation.py`` (type-I error and power of the tests this
package runs, on synthetic data with subject random effects).
"""

from __future__ import annotations

from statistics import NormalDist

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
