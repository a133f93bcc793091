"""Between-group tests of a per-sample measure with the subject as the unit.

Samples of one subject are not independent (same face, same session), so each
subject contributes the mean of its samples and the tests run over subjects:
a two-sided permutation test of the difference in means (group labels permuted
across subjects, scipy ``permutation_test``), a percentile bootstrap 95 % CI of
the difference (subjects resampled within each group, scipy ``bootstrap``), and
Cohen's d on the subject means (pooled standard deviation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MIN_SUBJECTS = 2
"""A comparison needs at least this many subjects with a value in each group."""


def _difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d of two samples with the pooled standard deviation (NaN if undefined)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    return float((np.mean(a) - np.mean(b)) / pooled) if pooled > 0 else float("nan")


def compare_groups(
    values: pd.DataFrame,
    group_a: str,
    group_b: str,
    permutations: int,
    bootstrap: int,
    seed: int,
) -> dict[str, float | int | str]:
    """Compare a measure between two groups over subjects.

    Args:
        values: one row per sample with columns ``subject_id``, ``group``, ``value``
            (NaN values are left out and counted).
        group_a, group_b: the two group names; the difference is A − B.
        permutations: permutation resamples; bootstrap: bootstrap resamples.
        seed: seeds both resamplers.

    Returns:
        ``subjects_<a|b>``, ``samples_<a|b>``, ``mean_<a|b>`` (means of subject
        means), ``difference``, ``ci_low``, ``ci_high``, ``p_permutation``,
        ``cohens_d``, ``missing`` (samples with NaN) and ``note`` (why a test was
        not run).
    """
    valid = values.dropna(subset=["value"])
    per_subject = valid.groupby(["group", "subject_id"])["value"].mean()
    out: dict[str, float | int | str] = {"missing": int(len(values) - len(valid))}
    arrays = {}
    for tag, group in (("a", group_a), ("b", group_b)):
        subject_means = (
            per_subject.loc[group].to_numpy() if group in per_subject.index else np.array([])
        )
        arrays[tag] = subject_means
        out[f"subjects_{tag}"] = len(subject_means)
        out[f"samples_{tag}"] = int((valid["group"] == group).sum())
        out[f"mean_{tag}"] = float(np.mean(subject_means)) if len(subject_means) else float("nan")
    a, b = arrays["a"], arrays["b"]
    nan = float("nan")
    if len(a) < MIN_SUBJECTS or len(b) < MIN_SUBJECTS:
        out.update(difference=nan, ci_low=nan, ci_high=nan, p_permutation=nan, cohens_d=nan)
        out["note"] = f"fewer than {MIN_SUBJECTS} subjects in a group: not tested"
        return out
    out["difference"] = float(np.mean(a) - np.mean(b))
    rng = np.random.default_rng(seed)
    test = stats.permutation_test(
        (a, b),
        _difference,
        permutation_type="independent",
        vectorized=True,
        n_resamples=permutations,
        alternative="two-sided",
        rng=rng,
    )
    interval = stats.bootstrap(
        (a, b),
        _difference,
        vectorized=True,
        n_resamples=bootstrap,
        method="percentile",
        rng=rng,
    ).confidence_interval
    out.update(
        ci_low=float(interval.low),
        ci_high=float(interval.high),
        p_permutation=float(test.pvalue),
        cohens_d=cohens_d(a, b),
        note="",
    )
    return out


def _stratum_differences(values: np.ndarray, is_a: np.ndarray) -> np.ndarray:
    """Mean of A − mean of B along the last axis; ``is_a`` is ``(..., n)`` bool."""
    n_a = is_a.sum(axis=-1)
    total = values.sum()
    sum_a = (is_a * values).sum(axis=-1)
    return sum_a / n_a - (total - sum_a) / (values.size - n_a)


def stratified_effect(
    values: pd.DataFrame,
    factor: str,
    stratum: str,
    level_a: str,
    level_b: str,
    permutations: int,
    seed: int,
) -> dict[str, float | int | str]:
    """The effect of ``factor`` (A − B) on a measure, holding ``stratum`` fixed.

    Ethnicity and dataset are nearly the same variable in the composite database
    (every CASME II subject is Asian), so a group difference over all samples may
    be a dataset difference. This test compares the two levels of ``factor`` only
    inside each level of ``stratum`` (e.g. ethnicity within SAMM, dataset within
    the Asian group): the statistic is the mean of the within-stratum differences
    of subject means, weighted by ``n_a n_b / (n_a + n_b)`` (the Mantel–Haenszel
    weighting), and its two-sided p-value comes from permuting ``factor`` across
    subjects *within* each stratum (Monte Carlo, ``(1 + #{|T*| ≥ |T|}) / (1 + B)``).
    Strata where a level has fewer than :data:`MIN_SUBJECTS` subjects cannot
    inform the effect and are left out (listed in ``strata_used``).

    Args:
        values: one row per sample with ``subject_id``, ``value`` and the two
            per-subject columns ``factor`` and ``stratum`` (NaN values left out).
        factor, stratum: column names, e.g. ``"ethnicity"`` and ``"dataset"``.
        level_a, level_b: the two levels of ``factor``; the effect is A − B.
        permutations: Monte Carlo resamples; seed: seeds them.

    Returns:
        ``effect``, ``p_permutation``, ``subjects_a``, ``subjects_b`` (in the used
        strata), ``strata_used`` (comma-separated) and ``note`` (why no test ran:
        the factor does not vary within any stratum).
    """
    valid = values.dropna(subset=["value"])
    per_subject = valid.groupby(["subject_id", factor, stratum], as_index=False)["value"].mean()
    per_subject = per_subject[per_subject[factor].isin([level_a, level_b])]
    used, strata, weights = [], [], []
    value_array = per_subject["value"].to_numpy(dtype=float)
    is_a = (per_subject[factor] == level_a).to_numpy()
    for name, index in per_subject.groupby(stratum).indices.items():
        n_a, n_b = int(is_a[index].sum()), int((~is_a[index]).sum())
        if n_a >= MIN_SUBJECTS and n_b >= MIN_SUBJECTS:
            used.append(str(name))
            strata.append(index)
            weights.append(n_a * n_b / (n_a + n_b))
    nan = float("nan")
    if not strata:
        return {
            "effect": nan,
            "p_permutation": nan,
            "subjects_a": 0,
            "subjects_b": 0,
            "strata_used": "",
            "note": f"{factor} does not vary within any {stratum} "
            f"({MIN_SUBJECTS}+ subjects per level needed): not separable",
        }
    w = np.asarray(weights) / np.sum(weights)
    rng = np.random.default_rng(seed)
    observed = 0.0
    permuted = np.zeros(permutations)
    for weight, index in zip(w, strata, strict=True):
        labels = is_a[index]
        observed += weight * float(_stratum_differences(value_array[index], labels))
        shuffled = rng.permuted(np.tile(labels, (permutations, 1)), axis=1)
        permuted += weight * _stratum_differences(value_array[index], shuffled)
    exceed = int((np.abs(permuted) >= abs(observed) - 1e-12).sum())
    members = np.concatenate(strata)
    return {
        "effect": float(observed),
        "p_permutation": (1 + exceed) / (1 + permutations),
        "subjects_a": int(is_a[members].sum()),
        "subjects_b": int((~is_a[members]).sum()),
        "strata_used": ",".join(used),
        "note": "",
    }
