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
The permutation is the shared one of :mod:`ethnicmer.stats.resampling`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.evaluation.protocols import subject_ids
from ethnicmer.stats.power import minimum_detectable_effect
from ethnicmer.stats.resampling import p_value, permuted_labels


def _balanced_accuracies(labels: np.ndarray, counts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Balanced accuracy for each row of subject labels ``(B, G)``.

    ``counts[g, k]`` is how many of subject g's samples were predicted k and
    ``sizes[g]`` its sample count; recall of class k = predicted-k samples of
    subjects labelled k over all samples of subjects labelled k.
    """
    classes = counts.shape[1]
    recalls = []
    for k in range(classes):
        members = labels == k
        hit = members @ counts[:, k]
        total = members @ sizes
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(total > 0, hit / np.where(total > 0, total, 1), np.nan))
    return np.nanmean(np.stack(recalls, axis=1), axis=1)


def decoding_scores(frame: pd.DataFrame, permutations: int, seed: int) -> dict[str, Any]:
    """Balanced accuracy of a context decoder over subjects and its permutation p-value.

    Args:
        frame: test predictions, one row per sample, with ``subject_id``,
            ``context_true`` and ``context_pred`` (int; one true label per subject).
        permutations: resamples of the subject labels (shuffled across subjects,
            each subject keeping one label; :mod:`ethnicmer.stats.resampling`);
            seed: seeds them.

    Returns:
        ``subjects``, ``samples``, ``classes`` (true labels present),
        ``balanced_accuracy``, ``chance`` (1 / classes), ``p_permutation``
        (one-sided: above chance), ``mde_over_chance`` (the smallest rise of the
        balanced accuracy above the permutation null the test detects with 80 %
        power: 2.49 × the null's standard deviation) and ``note`` (why no test ran: one class only,
        or fewer than 2 subjects in a class).
    """
    truth_by_subject = frame.groupby("subject_id")["context_true"].first()
    classes = int(truth_by_subject.nunique())
    out: dict[str, Any] = {
        "subjects": len(truth_by_subject),
        "samples": len(frame),
        "classes": classes,
        "balanced_accuracy": float("nan"),
        "chance": 1.0 / classes if classes else float("nan"),
        "p_permutation": float("nan"),
        "mde_over_chance": float("nan"),
        "note": "",
    }
    if classes < 2:
        out["note"] = "one class only: not testable"
        return out
    codes, labels = np.unique(truth_by_subject.to_numpy(), return_inverse=True)
    predicted = np.searchsorted(codes, frame["context_pred"].to_numpy())
    known = np.isin(frame["context_pred"].to_numpy(), codes)
    position = truth_by_subject.index.get_indexer(frame["subject_id"])
    counts = np.zeros((len(truth_by_subject), len(codes)))
    np.add.at(counts, (position[known], predicted[known]), 1.0)
    sizes = np.bincount(position, minlength=len(truth_by_subject)).astype(float)
    observed = float(_balanced_accuracies(labels[None, :], counts, sizes)[0])
    out["balanced_accuracy"] = observed
    if truth_by_subject.value_counts().min() < 2:
        out["note"] = "fewer than 2 subjects in a class: no test"
        return out
    shuffled = permuted_labels(labels, np.zeros(len(labels)), permutations, seed)
    null = _balanced_accuracies(shuffled, counts, sizes)
    out["p_permutation"] = p_value(observed, null, alternative="greater")
    # one-sided: the smallest balanced accuracy above the null's mean the test detects
    out["mde_over_chance"] = minimum_detectable_effect(float(np.nanstd(null)), sided=1)
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
