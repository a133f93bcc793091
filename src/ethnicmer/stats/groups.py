"""A per-sample measure between groups of subjects, with the subject as the unit.

Each subject contributes the mean of its samples (samples of one face are not
independent), then:

- :func:`compare_groups`: difference of group means of subject means (A − B),
  two-sided permutation p (group labels permuted across subjects), percentile
  bootstrap interval (subjects resampled within each group), Cohen's d, the
  bootstrap standard error and the minimum detectable effect.
- :func:`stratified_effect`: the effect of a factor (A − B) holding a stratum
  fixed (ethnicity within dataset, dataset within ethnicity): within-stratum
  differences of subject means combined with Mantel–Haenszel weights
  ``n_a n_b / (n_a + n_b)``; p from permuting the factor across subjects within
  each stratum; interval and standard error from resampling subjects within each
  (stratum, level) cell. Strata where a level has fewer than
  :data:`MIN_SUBJECTS` subjects cannot inform the effect and are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.stats.power import minimum_detectable_effect
from ethnicmer.stats.resampling import (
    Subjects,
    bootstrap_weights,
    p_value,
    percentile_interval,
    permuted_labels,
    standard_error,
)

MIN_SUBJECTS = 2
"""A comparison needs at least this many subjects with a value in each group."""


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d of two samples with the pooled standard deviation (NaN if undefined)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    return float((np.mean(a) - np.mean(b)) / pooled) if pooled > 0 else float("nan")


def _differences(
    values: np.ndarray, is_a: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Mean of A − mean of B for each row of ``is_a`` ``(B, G)`` (and of ``weights``)."""
    w = np.ones_like(is_a, dtype=float) if weights is None else weights
    wa, wb = w * is_a, w * ~is_a
    with np.errstate(invalid="ignore", divide="ignore"):
        return (wa @ values) / wa.sum(axis=1) - (wb @ values) / wb.sum(axis=1)


def compare_groups(
    values: pd.DataFrame,
    group_a: str,
    group_b: str,
    permutations: int,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Compare a measure between two groups over subjects.

    Args:
        values: one row per sample with ``subject_id``, ``group``, ``value``
            (NaN values are left out and counted).
        group_a, group_b: the two group names; the difference is A − B.
        permutations: permutation resamples; bootstrap: bootstrap resamples.
        seed: seeds both.

    Returns:
        ``subjects_<a|b>``, ``samples_<a|b>``, ``mean_<a|b>`` (means of subject
        means), ``difference``, ``ci_low``, ``ci_high``, ``se``, ``mde``,
        ``p_permutation``, ``cohens_d``, ``missing`` (samples with NaN) and
        ``note`` (why a test was not run).
    """
    valid = values.dropna(subset=["value"])
    valid = valid[valid["group"].isin([group_a, group_b])]
    means = valid.groupby(["subject_id", "group"], sort=True)["value"].mean().reset_index()
    out: dict[str, Any] = {"missing": int(values["value"].isna().sum())}
    for tag, group in (("a", group_a), ("b", group_b)):
        part = means[means["group"] == group]
        out[f"subjects_{tag}"] = len(part)
        out[f"samples_{tag}"] = int((valid["group"] == group).sum())
        out[f"mean_{tag}"] = float(part["value"].mean()) if len(part) else float("nan")
    nan = float("nan")
    if out["subjects_a"] < MIN_SUBJECTS or out["subjects_b"] < MIN_SUBJECTS:
        out.update(difference=nan, ci_low=nan, ci_high=nan, se=nan, mde=nan, p_permutation=nan)
        out.update(cohens_d=nan, note=f"fewer than {MIN_SUBJECTS} subjects in a group: not tested")
        return out
    v = means["value"].to_numpy(dtype=float)
    is_a = (means["group"] == group_a).to_numpy()
    observed = float(v[is_a].mean() - v[~is_a].mean())
    null = _differences(v, permuted_labels(is_a, np.zeros(len(v)), permutations, seed))
    cells = Subjects(means["subject_id"].to_numpy(), np.arange(len(v)), is_a.astype(np.int64))
    weights = bootstrap_weights(cells, bootstrap, seed)
    draws = _differences(v, np.tile(is_a, (bootstrap, 1)), weights)
    low, high = percentile_interval(draws)
    se = standard_error(draws)
    out.update(
        difference=observed,
        ci_low=low,
        ci_high=high,
        se=se,
        mde=minimum_detectable_effect(_difference_se(v, is_a), df=len(v) - 2),
        p_permutation=p_value(observed, null),
        cohens_d=cohens_d(v[is_a], v[~is_a]),
        note="",
    )
    return out


def _difference_se(values: np.ndarray, is_a: np.ndarray) -> float:
    """Standard error of mean(A) − mean(B) over subjects, ``sqrt(s²_A/n_A + s²_B/n_B)``.

    The MDE's scale: unlike the permutation null's spread it does not grow with the
    effect itself, and unlike the bootstrap's it is not biased low by (n − 1)/n.
    """
    a, b = values[is_a], values[~is_a]
    return float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def _stratified(
    values: np.ndarray,
    is_a: np.ndarray,
    strata: list[np.ndarray],
    mh: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Mantel–Haenszel-weighted within-stratum differences for each row of ``is_a``."""
    total = np.zeros(is_a.shape[0])
    for w, index in zip(mh, strata, strict=True):
        sub_w = None if weights is None else weights[:, index]
        total += w * _differences(values[index], is_a[:, index], sub_w)
    return total


def stratified_effect(
    values: pd.DataFrame,
    factor: str,
    stratum: str,
    level_a: str,
    level_b: str,
    permutations: int,
    seed: int,
    bootstrap: int = 0,
) -> dict[str, Any]:
    """The effect of ``factor`` (A − B) on a measure, holding ``stratum`` fixed.

    Ethnicity and dataset are nearly the same variable in the composite database
    (every CASME II subject is Asian), so a group difference over all samples may
    be a dataset difference; this test compares the two levels of ``factor`` only
    inside each level of ``stratum`` (see the module doc for the statistic).

    Args:
        values: one row per sample with ``subject_id``, ``value`` and the two
            per-subject columns ``factor`` and ``stratum`` (NaN values left out).
        factor, stratum: column names, e.g. ``"ethnicity"`` and ``"dataset"``.
        level_a, level_b: the two levels of ``factor``; the effect is A − B.
        permutations: permutation resamples; seed: seeds them.
        bootstrap: resamples for the standard error and interval (0: none).

    Returns:
        ``effect``, ``p_permutation``, ``se``, ``ci_low``, ``ci_high``, ``mde``,
        ``subjects_a``, ``subjects_b`` (in the used strata), ``strata_used``
        (comma-separated) and ``note`` (why no test ran).
    """
    valid = values.dropna(subset=["value"])
    per_subject = valid.groupby(["subject_id", factor, stratum], as_index=False)["value"].mean()
    per_subject = per_subject[per_subject[factor].isin([level_a, level_b])].reset_index(drop=True)
    v = per_subject["value"].to_numpy(dtype=float)
    is_a = (per_subject[factor] == level_a).to_numpy()
    used, strata, mh = [], [], []
    for name, index in per_subject.groupby(stratum, sort=True).indices.items():
        n_a, n_b = int(is_a[index].sum()), int((~is_a[index]).sum())
        if n_a >= MIN_SUBJECTS and n_b >= MIN_SUBJECTS:
            used.append(str(name))
            strata.append(np.asarray(index))
            mh.append(n_a * n_b / (n_a + n_b))
    nan = float("nan")
    if not strata:
        return {
            "effect": nan,
            "p_permutation": nan,
            "se": nan,
            "ci_low": nan,
            "ci_high": nan,
            "mde": nan,
            "subjects_a": 0,
            "subjects_b": 0,
            "strata_used": "",
            "note": f"{factor} does not vary within any {stratum} "
            f"({MIN_SUBJECTS}+ subjects per level needed): not separable",
        }
    weights_mh = np.asarray(mh) / np.sum(mh)
    members = np.concatenate(strata)
    stratum_of = np.full(len(v), -1, np.int64)
    for k, index in enumerate(strata):
        stratum_of[index] = k
    observed = float(_stratified(v, is_a[None, :], strata, weights_mh)[0])
    shuffled = np.tile(is_a, (permutations, 1))
    shuffled[:, members] = permuted_labels(is_a[members], stratum_of[members], permutations, seed)
    null = _stratified(v, shuffled, strata, weights_mh)
    se = low = high = nan
    if bootstrap:
        cells = Subjects(
            per_subject["subject_id"].to_numpy(),
            np.arange(len(v)),
            (stratum_of * 2 + is_a).astype(np.int64),
        )
        draws = _stratified(
            v,
            np.tile(is_a, (bootstrap, 1)),
            strata,
            weights_mh,
            bootstrap_weights(cells, bootstrap, seed),
        )
        low, high = percentile_interval(draws)
        se = standard_error(draws)
    return {
        "effect": observed,
        "p_permutation": p_value(observed, null),
        "se": se,
        "ci_low": low,
        "ci_high": high,
        "mde": minimum_detectable_effect(
            float(
                np.sqrt(
                    sum(
                        w**2 * _difference_se(v[i], is_a[i]) ** 2
                        for w, i in zip(weights_mh, strata, strict=True)
                    )
                )
            ),
            df=len(members) - 2 * len(strata),
        ),
        "subjects_a": int(is_a[members].sum()),
        "subjects_b": int((~is_a[members]).sum()),
        "strata_used": ",".join(used),
        "note": "",
    }
