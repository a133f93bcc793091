"""How large an effect a study could have detected (sensitivity), so that "not
significant" can be read: no effect, or too few subjects?

For a statistic whose sampling distribution is close to normal with standard
error ``se`` (here: the bootstrap standard error over subjects and seeds), a
two-sided test at level α detects a true effect δ with power 1 − β when
``|δ| ≥ (z_{1−α/2} + z_{1−β}) · se``; at α 0.05 and 80 % power the factor is
2.80. The approximation is checked by simulation in ``tests/test_stats.py`` and
``benchmarks/stats_validation.py`` (type-I error and power of the tests this
package runs, on synthetic data with subject random effects).
"""

from __future__ import annotations

from statistics import NormalDist

ALPHA = 0.05
POWER = 0.80


def minimum_detectable_effect(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |effect| a two-sided test at ``alpha`` detects with ``power``.

    Args:
        se: standard error of the effect estimate (same unit as the effect).

    Returns:
        ``(z_{1-alpha/2} + z_{power}) * se``; NaN when ``se`` is NaN.
    """
    normal = NormalDist()
    return float((normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)) * se)
