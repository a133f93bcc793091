"""Metrics of micro-expression recognition and their uncertainty.

- Per-class F1 and macro-F1 on predictions concatenated over all LOSO folds (the
  paper's figure, MEGC convention). Over concatenated predictions UF1 (MEGC's
  unweighted F1: per-class F1 from TP/FP/FN summed over folds, averaged) equals
  macro-F1; both are reported under their names. UAR is the mean per-class recall.
- Macro averages run over the classes present in the ground truth of the rows
  scored (a group with no Surprise sample is not charged an F1 of 0 for it); the
  classes used are reported.
- 95 % confidence intervals by bootstrap over subjects (whole subjects are
  resampled, since samples of a subject are not independent).
- Paired comparison of two configurations on the same samples: bootstrap CI of
  the difference and a permutation test that swaps the two configurations'
  predictions subject by subject; with several seeds both are paired by seed and
  sample (the statistic is the mean over seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score, recall_score


def classification_scores(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]
) -> dict[str, float]:
    """Per-class F1, macro-F1, UF1, UAR and accuracy.

    Args:
        y_true, y_pred: ``(N,)`` int labels indexing ``classes``.
        classes: class names.

    Returns:
        ``{"f1_<class>": ..., "macro_f1", "uf1", "uar", "accuracy", "n", "classes_scored"}``;
        per-class F1 of a class absent from ``y_true`` is NaN.
    """
    present = sorted(set(np.asarray(y_true).tolist()))
    out: dict[str, float] = {}
    per_class = f1_score(
        y_true, y_pred, labels=list(range(len(classes))), average=None, zero_division=0
    )
    for k, name in enumerate(classes):
        out[f"f1_{name}"] = float(per_class[k]) if k in present else float("nan")
    out["macro_f1"] = float(np.mean([per_class[k] for k in present])) if present else float("nan")
    out["uf1"] = out["macro_f1"]
    out["uar"] = (
        float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        if present
        else float("nan")
    )
    out["accuracy"] = (
        float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")
    )
    out["n"] = float(len(y_true))
    out["classes_scored"] = "+".join(classes[k] for k in present)  # type: ignore[assignment]
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in ``y_true`` (fast path for resampling)."""
    present = np.unique(y_true)
    if len(present) == 0:
        return float("nan")
    scores = []
    for k in present:
        tp = np.sum((y_true == k) & (y_pred == k))
        fp = np.sum((y_true != k) & (y_pred == k))
        fn = np.sum((y_true == k) & (y_pred != k))
        scores.append(2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 0.0)
    return float(np.mean(scores))


def _subject_index(subjects: np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(subjects, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]


def _bootstrap_rows(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Row positions of one resample of whole subjects (with replacement)."""
    pick = rng.integers(0, len(groups), size=len(groups))
    return np.concatenate([groups[g] for g in pick])


def _mean_mf1(y_true: np.ndarray, preds: np.ndarray, rows: np.ndarray, n_classes: int) -> float:
    """Mean over seeds of the macro-F1 of ``rows``; ``preds`` is ``(S, N)``."""
    return float(np.mean([macro_f1(y_true[rows], p[rows], n_classes) for p in preds]))


def bootstrap_ci(
    y_true: np.ndarray,
    preds: np.ndarray,
    subjects: np.ndarray,
    n_classes: int,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of macro-F1 (mean over seeds) by resampling whole subjects.

    Args:
        y_true: ``(N,)`` labels; preds: ``(S, N)`` predictions of S seeds.
        subjects: ``(N,)`` subject ids (``dataset/subject``).
        n_boot: resamples (0 gives NaNs).
    """
    if n_boot == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    groups = _subject_index(subjects)
    stats = []
    for _ in range(n_boot):
        stats.append(_mean_mf1(y_true, preds, _bootstrap_rows(groups, rng), n_classes))
    alpha = (1 - level) / 2
    return float(np.nanquantile(stats, alpha)), float(np.nanquantile(stats, 1 - alpha))


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of configuration A against B on the same samples and seeds."""

    mf1_a: float
    mf1_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_seeds: int


def paired_test(
    y_true: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    subjects: np.ndarray,
    n_classes: int,
    n_resamples: int,
    seed: int,
) -> PairedResult:
    """Difference in macro-F1 (A − B), its bootstrap CI over subjects, and a permutation p.

    ``preds_a`` and ``preds_b`` are ``(S, N)``: the same S seeds, the same N samples.
    The permutation test swaps A's and B's predictions for a random half of the
    subjects (all seeds together) and counts how often |Δ| reaches the observed
    |Δ| (two-sided, with the +1 correction).
    """
    everything = np.arange(len(y_true))
    a = _mean_mf1(y_true, preds_a, everything, n_classes)
    b = _mean_mf1(y_true, preds_b, everything, n_classes)
    observed = a - b
    rng = np.random.default_rng(seed)
    groups = _subject_index(subjects)
    diffs = []
    for _ in range(n_resamples):
        rows = _bootstrap_rows(groups, rng)
        diffs.append(
            _mean_mf1(y_true, preds_a, rows, n_classes)
            - _mean_mf1(y_true, preds_b, rows, n_classes)
        )
    extreme = 0
    for _ in range(n_resamples):
        swap = np.zeros(len(y_true), dtype=bool)
        for g in np.flatnonzero(rng.random(len(groups)) < 0.5):
            swap[groups[g]] = True
        pa = np.where(swap, preds_b, preds_a)
        pb = np.where(swap, preds_a, preds_b)
        delta = _mean_mf1(y_true, pa, everything, n_classes) - _mean_mf1(
            y_true, pb, everything, n_classes
        )
        extreme += abs(delta) >= abs(observed) - 1e-12
    low, high = (
        (np.nanquantile(diffs, 0.025), np.nanquantile(diffs, 0.975)) if diffs else (np.nan, np.nan)
    )
    p_value = (extreme + 1) / (n_resamples + 1) if n_resamples else float("nan")
    return PairedResult(a, b, observed, float(low), float(high), float(p_value), preds_a.shape[0])
