"""Macro-F1 and UAR with the subject as the unit of resampling, seeds as a second level.

Macro-F1 (MEGC's UF1 on concatenated predictions) and UAR are functions of the
confusion counts pooled over the scored samples, and pooling is a sum over
subjects. So each subject's confusion counts (per seed) are computed once and a
resample of subjects is a weighted sum of them: every bootstrap or permutation
resample costs one matrix product, not a pass over the samples.

Macro averages run over the classes present in the ground truth of the rows
scored (a group with no Surprise sample is not charged an F1 of 0 for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ethnicmer.stats.power import minimum_detectable_effect
from ethnicmer.stats.resampling import (
    Subjects,
    bootstrap_weights,
    p_value,
    percentile_interval,
    random_swaps,
    seed_weights,
    standard_error,
)


def subject_confusions(
    y_true: np.ndarray, y_pred: np.ndarray, subjects: Subjects, n_classes: int
) -> np.ndarray:
    """``(G, K, K)`` float64 confusion counts per subject (rows: truth, columns: prediction)."""
    counts = np.zeros((subjects.count, n_classes, n_classes))
    np.add.at(counts, (subjects.index, np.asarray(y_true), np.asarray(y_pred)), 1.0)
    return counts


def macro_f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion counts ``(..., K, K)`` over the classes present in the truth.

    Returns:
        ``(...)`` float64; NaN where no class is present.
    """
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    truth = counts.sum(axis=-1)
    predicted = counts.sum(axis=-2)
    denominator = truth + predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)
    present = truth > 0
    n_present = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, (f1 * present).sum(axis=-1) / n_present, np.nan)


def uar_from_counts(counts: np.ndarray) -> np.ndarray:
    """Unweighted average recall of confusion counts ``(..., K, K)`` over present classes."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    truth = counts.sum(axis=-1)
    present = truth > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / np.where(present, truth, 1), 0.0)
        n_present = present.sum(axis=-1)
        return np.where(n_present > 0, recall.sum(axis=-1) / n_present, np.nan)


SCORES = {"macro_f1": macro_f1_from_counts, "uar": uar_from_counts}


def _seed_confusions(
    y_true: np.ndarray, preds: np.ndarray, subjects: Subjects, n_classes: int
) -> np.ndarray:
    """``(S, G, K, K)`` per-seed per-subject confusion counts of ``preds`` ``(S, N)``."""
    return np.stack([subject_confusions(y_true, p, subjects, n_classes) for p in preds])


def _resampled(
    confusions: np.ndarray, weights: np.ndarray, seeds: np.ndarray, score: str
) -> np.ndarray:
    """Score of every resample: subjects weighted by ``weights`` ``(B, G)``, seeds by ``seeds``
    ``(B, S)``; the score of each seed's pooled counts, averaged with the seed weights."""
    per_seed = np.stack(
        [SCORES[score](np.einsum("bg,gkl->bkl", weights, c)) for c in confusions], axis=1
    )
    return np.nansum(per_seed * seeds, axis=1) / np.sum(seeds * np.isfinite(per_seed), axis=1)


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap interval.

    Attributes:
        estimate: the statistic on the data (mean over seeds).
        low, high: percentile interval (``level``) over subject (and seed) resamples.
        se: bootstrap standard error.
        resamples: number of bootstrap resamples.
    """

    estimate: float
    low: float
    high: float
    se: float
    resamples: int


def score_interval(
    y_true: np.ndarray,
    preds: np.ndarray,
    subjects: Subjects,
    n_classes: int,
    resamples: int,
    seed: int,
    score: str = "macro_f1",
    level: float = 0.95,
) -> Interval:
    """Macro-F1 (or UAR) averaged over seeds, with a two-level bootstrap interval.

    Each resample draws the seeds with replacement, then the subjects with
    replacement (within the strata of ``subjects``), and averages the seeds'
    scores on the pooled counts of the drawn subjects.

    Args:
        y_true: ``(N,)`` int labels; preds: ``(S, N)`` int predictions of S seeds.
        subjects: the rows' subjects (:func:`~ethnicmer.stats.resampling.subjects_of`).
        resamples: bootstrap resamples B (0: no interval, NaNs).
        seed: seeds the resamples.
        score: ``macro_f1`` or ``uar``.
    """
    confusions = _seed_confusions(y_true, preds, subjects, n_classes)
    totals = confusions.sum(axis=1)
    estimate = float(np.nanmean(SCORES[score](totals)))
    if resamples == 0:
        return Interval(estimate, float("nan"), float("nan"), float("nan"), 0)
    weights = bootstrap_weights(subjects, resamples, seed)
    seeds = seed_weights(len(preds), resamples, seed)
    draws = _resampled(confusions, weights, seeds, score)
    low, high = percentile_interval(draws, level)
    return Interval(estimate, low, high, standard_error(draws), resamples)


@dataclass(frozen=True)
class PairedComparison:
    """Configuration A against B on the same samples and seeds (A − B).

    Attributes:
        score_a, score_b: the two scores (mean over seeds).
        difference: A − B.
        ci_low, ci_high: two-level bootstrap interval of the difference.
        se: its bootstrap standard error.
        p_value: two-sided randomisation p: A and B swapped per subject (all seeds
            of a subject together), ``(1 + #|Δ*| ≥ |Δ|) / (1 + B)``.
        mde: the smallest |difference| this test detects with 80 % power at α 0.05
            (subject-bootstrap SE with the seeds held fixed, as the swap test holds
            them; t quantiles at subjects − 1 df).
        seed_differences: ``(S,)`` the difference of each seed's own scores.
    """

    score_a: float
    score_b: float
    difference: float
    ci_low: float
    ci_high: float
    se: float
    p_value: float
    mde: float
    seed_differences: np.ndarray

    @property
    def n_seeds(self) -> int:
        """Number of seeds S the comparison is paired over."""
        return len(self.seed_differences)


def paired_comparison(
    y_true: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    subjects: Subjects,
    n_classes: int,
    resamples: int,
    seed: int,
    score: str = "macro_f1",
) -> PairedComparison:
    """Difference of two configurations' scores, paired by seed and sample.

    The interval resamples seeds, then subjects (the same draws for A and B);
    the p-value swaps A's and B's predictions for a random half of the subjects.

    Args:
        y_true: ``(N,)``; preds_a, preds_b: ``(S, N)`` predictions of the same S seeds.
        subjects: the rows' subjects.
        resamples: resamples for both the interval and the p-value.
    """
    conf_a = _seed_confusions(y_true, preds_a, subjects, n_classes)
    conf_b = _seed_confusions(y_true, preds_b, subjects, n_classes)
    total_a, total_b = conf_a.sum(axis=1), conf_b.sum(axis=1)
    per_seed_a = SCORES[score](total_a)
    per_seed_b = SCORES[score](total_b)
    a, b = float(np.nanmean(per_seed_a)), float(np.nanmean(per_seed_b))
    difference = a - b
    nan = float("nan")
    if resamples == 0:
        return PairedComparison(a, b, difference, nan, nan, nan, nan, nan, per_seed_a - per_seed_b)
    weights = bootstrap_weights(subjects, resamples, seed)
    seeds = seed_weights(len(preds_a), resamples, seed)
    draws = _resampled(conf_a, weights, seeds, score) - _resampled(conf_b, weights, seeds, score)
    low, high = percentile_interval(draws)
    se = standard_error(draws)
    # the MDE of the swap test, which holds the seeds fixed: subjects resampled only
    fixed = np.full((resamples, len(preds_a)), 1.0 / len(preds_a))
    held = _resampled(conf_a, weights, fixed, score) - _resampled(conf_b, weights, fixed, score)
    swaps = random_swaps(subjects.count, resamples, seed).astype(float)
    null = np.zeros(resamples)
    for s in range(len(preds_a)):
        shift = np.einsum("bg,gkl->bkl", swaps, conf_b[s] - conf_a[s])
        null += SCORES[score](total_a[s] + shift) - SCORES[score](total_b[s] - shift)
    null /= len(preds_a)
    return PairedComparison(
        a,
        b,
        difference,
        low,
        high,
        se,
        p_value(difference, null),
        minimum_detectable_effect(standard_error(held), df=subjects.count - 1),
        per_seed_a - per_seed_b,
    )
