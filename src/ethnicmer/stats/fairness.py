"""Group fairness of a benchmark row: per-group recall and macro-F1, and the gaps.

For each grouping (ethnicity group; dataset × ethnicity cell) and each emotion
class k, one-vs-rest:

- per group: the recall of k (true-positive rate, TPR) and the macro-F1;
- the **equal-opportunity gap** of k: max − min of the groups' TPR;
- the **equalized-odds difference** of k: the larger of the TPR gap and the
  false-positive-rate gap (fairlearn's ``equalized_odds_difference`` on
  ``y == k``).

Point estimates come from fairlearn's ``MetricFrame`` (per-group recall, false
positive rate and macro-F1 of each seed; the gaps are its ``difference()``
between groups, groups without a positive of the class left out); 95 % intervals
from the same quantities recomputed on per-subject confusion counts under a
two-level bootstrap (seeds, then subjects within each group), so the subject
stays the unit. Values are means over seeds. ``tests/test_stats.py`` checks the
gaps against fairlearn's own ``equalized_odds_difference``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.stats.classification import macro_f1_from_counts, subject_confusions
from ethnicmer.stats.resampling import (
    bootstrap_weights,
    percentile_interval,
    seed_weights,
    subjects_of,
)


def _rates(counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """TPR and FPR of class k (one-vs-rest) of confusion counts ``(..., K, K)``."""
    truth = counts.sum(axis=-1)
    positives = truth[..., k]
    negatives = truth.sum(axis=-1) - positives
    tp = counts[..., k, k]
    fp = counts[..., :, k].sum(axis=-1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(positives > 0, tp / np.where(positives > 0, positives, 1), np.nan)
        fpr = np.where(negatives > 0, fp / np.where(negatives > 0, negatives, 1), np.nan)
    return tpr, fpr


def _metrics(
    group_counts: np.ndarray, classes: list[str]
) -> dict[tuple[str, str, str], np.ndarray]:
    """Every metric from group counts ``(..., H, K, K)`` (H groups): key (group index or
    "gap", metric, class) → values ``(...)`` (group entries ``(..., H)``)."""
    out: dict[tuple[str, str, str], np.ndarray] = {}
    out[("groups", "macro_f1", "")] = macro_f1_from_counts(group_counts)
    for k, name in enumerate(classes):
        tpr, fpr = _rates(group_counts, k)
        out[("groups", "recall", name)] = tpr
        with np.errstate(invalid="ignore"):
            tpr_gap = np.nanmax(tpr, axis=-1) - np.nanmin(tpr, axis=-1)
            fpr_gap = np.nanmax(fpr, axis=-1) - np.nanmin(fpr, axis=-1)
        out[("gap", "equal_opportunity_gap", name)] = tpr_gap
        out[("gap", "equalized_odds_difference", name)] = np.fmax(tpr_gap, fpr_gap)
    return out


def _recall(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    positives = np.asarray(y_true) == k
    if not positives.any():
        return float("nan")
    return float((np.asarray(y_pred)[positives] == k).mean())


def _false_positive_rate(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    negatives = np.asarray(y_true) != k
    if not negatives.any():
        return float("nan")
    return float((np.asarray(y_pred)[negatives] == k).mean())


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return float(macro_f1_from_counts(counts))


def metric_frame_point(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    names: np.ndarray,
    classes: list[str],
) -> dict[tuple[str, str, str], np.ndarray]:
    """One seed's point estimates from fairlearn's ``MetricFrame``.

    Args:
        y_true, y_pred: ``(N,)`` int labels and predictions; groups: ``(N,)`` group names.
        names: the group names in output order.

    Returns:
        As :func:`_metrics` for one seed: key → ``(H,)`` per group or a scalar gap.
    """
    from functools import partial

    from fairlearn.metrics import MetricFrame

    metrics = {"macro_f1": partial(_macro_f1, n_classes=len(classes))}
    for k, name in enumerate(classes):
        metrics[f"recall {name}"] = partial(_recall, k=k)
        metrics[f"fpr {name}"] = partial(_false_positive_rate, k=k)
    frame = MetricFrame(
        metrics=metrics,
        y_true=np.asarray(y_true),
        y_pred=np.asarray(y_pred),
        sensitive_features=np.asarray(groups).astype(str),
    )
    by_group = frame.by_group.reindex(list(names))
    gaps = frame.difference(method="between_groups")
    out: dict[tuple[str, str, str], np.ndarray] = {
        ("groups", "macro_f1", ""): by_group["macro_f1"].to_numpy(dtype=float)
    }
    for name in classes:
        out[("groups", "recall", name)] = by_group[f"recall {name}"].to_numpy(dtype=float)
        tpr_gap, fpr_gap = float(gaps[f"recall {name}"]), float(gaps[f"fpr {name}"])
        out[("gap", "equal_opportunity_gap", name)] = np.array(tpr_gap)
        out[("gap", "equalized_odds_difference", name)] = np.fmax(tpr_gap, fpr_gap)
    return out


def fairlearn_check(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, classes: list[str]
) -> dict[str, float]:
    """fairlearn's per-class equal-opportunity gap and equalized-odds difference (one seed)."""
    from fairlearn.metrics import (
        MetricFrame,
        equalized_odds_difference,
        true_positive_rate,
    )

    out = {}
    for k, name in enumerate(classes):
        truth, pred = (np.asarray(y_true) == k).astype(int), (np.asarray(y_pred) == k).astype(int)
        if truth.sum() == 0:
            continue
        frame = MetricFrame(
            metrics=true_positive_rate, y_true=truth, y_pred=pred, sensitive_features=groups
        )
        out[f"equal_opportunity_gap_{name}"] = float(frame.difference(method="between_groups"))
        out[f"equalized_odds_difference_{name}"] = float(
            equalized_odds_difference(truth, pred, sensitive_features=groups)
        )
    return out


def fairness_table(
    y_true: np.ndarray,
    preds: np.ndarray,
    subject_ids: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Per-group recall and macro-F1 and the per-class gaps of one row, with intervals.

    Args:
        y_true: ``(N,)`` int labels; preds: ``(S, N)`` predictions of S seeds.
        subject_ids: ``(N,)`` ``dataset/subject``; groups: ``(N,)`` group of each
            sample (constant within a subject).
        classes: class names in label order.
        resamples: bootstrap resamples (0: no intervals).
        seed: seeds them.

    Returns:
        Long table: ``group`` (a group name or ``(gap)``), ``metric``, ``class``,
        ``value``, ``ci_low``, ``ci_high``, ``subjects``, ``samples``.
    """
    subjects = subjects_of(subject_ids, groups)
    names = np.unique(np.asarray(groups).astype(str))
    n_classes = len(classes)
    confusions = np.stack(
        [subject_confusions(y_true, p, subjects, n_classes) for p in preds]
    )  # (S, G, K, K)
    member = np.zeros((subjects.count, len(names)))
    member[np.arange(subjects.count), subjects.strata] = 1.0  # subject → group (stratum)
    per_seed = [metric_frame_point(y_true, p, groups, names, classes) for p in preds]
    with np.errstate(invalid="ignore"):
        point = {
            key: np.nanmean(np.stack([seed[key] for seed in per_seed]), axis=0)
            for key in per_seed[0]
        }
    draws: dict[tuple[str, str, str], np.ndarray] = {}
    if resamples:
        weights = bootstrap_weights(subjects, resamples, seed)  # within each group
        seeds = seed_weights(len(preds), resamples, seed)  # (B, S)
        resampled = np.einsum("bg,gh,sgkl->bshkl", weights, member, confusions)
        for key, values in _metrics(resampled, classes).items():  # (B, S[, H])
            w = seeds if values.ndim == 2 else seeds[:, :, None]
            valid = np.isfinite(values)
            with np.errstate(invalid="ignore", divide="ignore"):
                draws[key] = np.nansum(values * w, axis=1) / np.sum(w * valid, axis=1)
    counts = pd.Series(subject_ids).groupby(np.asarray(groups).astype(str)).agg(["nunique", "size"])
    rows: list[dict[str, Any]] = []
    for (kind, metric, name), value in point.items():
        entries = list(enumerate(names)) if kind == "groups" else [(None, "(gap)")]
        for h, group in entries:
            estimate = float(value[h]) if h is not None else float(value)
            low = high = float("nan")
            if resamples:
                sample = draws[(kind, metric, name)]
                low, high = percentile_interval(sample[:, h] if h is not None else sample)
            rows.append(
                {
                    "group": group,
                    "metric": metric,
                    "class": name,
                    "value": estimate,
                    "ci_low": low,
                    "ci_high": high,
                    "subjects": int(counts.loc[group, "nunique"])
                    if h is not None
                    else len(subjects.names),
                    "samples": int(counts.loc[group, "size"]) if h is not None else len(y_true),
                }
            )
    return pd.DataFrame(rows)
