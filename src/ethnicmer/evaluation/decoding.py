"""Does the context branch read its attribute from subjects it never saw? (issues 4, 7, 9).

A dual-context model's second head predicts the subject's context attribute
(ethnicity group, dataset, permuted ethnicity, ...). Under LOSO each test subject
is unseen, so the head's accuracy on the test predictions measures whether the
attribute is *decodable* from the context input (flow image or RGB apex crop)
of a new subject. Over all samples, ethnicity may be decoded through the dataset
(CASME II is all Asian); within one dataset it cannot. So the balanced accuracy is
reported over all samples and within each dataset, with a permutation test over
subjects: the attribute labels are shuffled across the scope's subjects (each
subject keeps one label), the predictions stay, and the balanced accuracy is
recomputed; ``p = (1 + #{perm ≥ observed}) / (1 + B)`` (one-sided: above chance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from ethnicmer.evaluation.protocols import subject_ids


def _balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(balanced_accuracy_score(true, pred))


def decoding_scores(frame: pd.DataFrame, permutations: int, seed: int) -> dict[str, Any]:
    """Balanced accuracy of the context head over subjects and its permutation p-value.

    Args:
        frame: test predictions, one row per sample, with ``subject_id``,
            ``context_true`` and ``context_pred`` (int; one true label per subject).
        permutations: Monte Carlo resamples of the subject labels; seed: seeds them.

    Returns:
        ``subjects``, ``samples``, ``classes`` (true labels present),
        ``balanced_accuracy``, ``chance`` (1 / classes), ``p_permutation`` and
        ``note`` (why no test ran: one class only, or fewer than 2 subjects in a class).
    """
    subjects = frame.groupby("subject_id")["context_true"].first()
    classes = int(subjects.nunique())
    out: dict[str, Any] = {
        "subjects": len(subjects),
        "samples": len(frame),
        "classes": classes,
        "balanced_accuracy": float("nan"),
        "chance": 1.0 / classes if classes else float("nan"),
        "p_permutation": float("nan"),
        "note": "",
    }
    if classes < 2:
        out["note"] = "one class only: not testable"
        return out
    out["balanced_accuracy"] = _balanced_accuracy(
        frame["context_true"].to_numpy(), frame["context_pred"].to_numpy()
    )
    if subjects.value_counts().min() < 2:
        out["note"] = "fewer than 2 subjects in a class: no test"
        return out
    position = subjects.index.get_indexer(frame["subject_id"])
    labels = subjects.to_numpy()
    predicted = frame["context_pred"].to_numpy()
    rng = np.random.default_rng(seed)
    exceed = sum(
        _balanced_accuracy(rng.permutation(labels)[position], predicted)
        >= out["balanced_accuracy"] - 1e-12
        for _ in range(permutations)
    )
    out["p_permutation"] = (1 + exceed) / (1 + permutations)
    return out


def context_decoding(
    predictions: pd.DataFrame, context: dict[str, str], permutations: int, seed: int
) -> pd.DataFrame:
    """Context-head decoding per dual row and seed, over all samples and within datasets.

    Args:
        predictions: the benchmark's ``predictions.csv`` (``model``, ``seed``,
            ``dataset``, ``subject``, ``context_true``, ``context_pred``).
        context: row name → its context attribute, for the dual rows only.
        permutations: resamples per test; seed: seeds them.

    Returns:
        One row per (model, seed, scope ∈ {all, within <dataset>}) with the
        :func:`decoding_scores` columns; empty when no row has a context head.
    """
    rows = []
    for (model, run_seed), part in predictions.groupby(["model", "seed"], sort=False):
        if model not in context:
            continue
        part = part.assign(subject_id=subject_ids(part))
        scopes = {"all": part} | {f"within {d}": g for d, g in part.groupby("dataset")}
        for scope, sub in scopes.items():
            scores = decoding_scores(sub, permutations, seed)
            rows.append(
                {"model": model, "context": context[model], "seed": run_seed, "scope": scope}
                | scores
            )
    return pd.DataFrame(rows)
