"""Metrics of micro-expression recognition and their uncertainty.

- Per-class F1 and macro-F1 on predictions concatenated over all LOSO folds (the
  paper's figure, MEGC convention). Over concatenated predictions UF1 (MEGC's
  unweighted F1: per-class F1 from TP/FP/FN summed over folds, averaged) equals
  macro-F1; both are reported under their names. UAR is the mean per-class recall.
- Macro averages run over the classes present in the ground truth of the rows
  scored (a group with no Surprise sample is not charged an F1 of 0 for it); the
  classes used are reported.

Uncertainty (intervals over subjects and seeds, paired comparisons, detectable
effects) lives in :mod:`ethnicmer.stats`, the one statistics layer every study uses.
"""

from __future__ import annotations

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
