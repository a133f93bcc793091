"""Evaluation protocols: leave-one-subject-out (LOSO) on the composite database.

Composite database evaluation (CDE, paper IV): CASME II and SAMM samples are
pooled and every subject is held out once. A subject is identified by
``(dataset, subject)`` since subject numbers repeat across datasets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut

from ethnicmer.errors import ConfigError, DataError


def subject_ids(samples: pd.DataFrame) -> np.ndarray:
    """``"dataset/subject"`` per sample: the LOSO group of each row."""
    return (samples["dataset"].astype(str) + "/" + samples["subject"].astype(str)).to_numpy()


@dataclass(frozen=True)
class Fold:
    """One LOSO fold.

    Attributes:
        test_subject: ``"dataset/subject"`` held out.
        train: row positions of the training samples (int64).
        test: row positions of the test samples (int64).
    """

    test_subject: str
    train: np.ndarray
    test: np.ndarray

    @property
    def slug(self) -> str:
        """File-name-safe fold name, e.g. ``casme2_sub01``."""
        return self.test_subject.replace("/", "_")


def loso_folds(
    samples: pd.DataFrame, test_subjects: list[str] | None = None, max_folds: int | None = None
) -> list[Fold]:
    """LOSO folds in sorted subject order, checked for leakage.

    Args:
        samples: the samples table.
        test_subjects: keep only the folds of these subjects (``dataset/subject``).
        max_folds: keep only the first N folds (for smoke tests; not a full LOSO).

    Raises:
        ConfigError: a requested test subject is not in the samples.
        DataError: a fold's test subject appears in its training set (leakage).
    """
    groups = subject_ids(samples)
    folds = []
    for train, test in LeaveOneGroupOut().split(np.zeros(len(groups)), groups=groups):
        held_out = set(groups[test])
        (subject,) = held_out
        if subject in set(groups[train]):
            raise DataError(f"leakage: test subject {subject} appears in the training set")
        folds.append(Fold(subject, train.astype(np.int64), test.astype(np.int64)))
    folds.sort(key=lambda f: f.test_subject)
    if test_subjects is not None:
        known = {f.test_subject for f in folds}
        unknown = sorted(set(test_subjects) - known)
        if unknown:
            raise ConfigError(f"benchmark.test_subjects not in the samples: {unknown}")
        folds = [f for f in folds if f.test_subject in set(test_subjects)]
    if max_folds is not None:
        folds = folds[:max_folds]
    return folds


def context_labels(samples: pd.DataFrame, context: str, seed: int) -> tuple[np.ndarray, list[str]]:
    """Per-sample context labels for the dual-context network's second branch.

    Args:
        samples: the samples table.
        context: ``ethnicity``, ``dataset``, ``gender``, ``age_bin`` or
            ``permuted_ethnicity`` (ethnicity groups shuffled across subjects within
            each dataset with ``seed``: a control with the same group sizes).
        seed: seed of the permutation.

    Returns:
        ``(labels, classes)``: int64 labels ``(N,)`` and the class names in index order.
    """
    if context == "permuted_ethnicity":
        rng = np.random.default_rng(seed)
        per_subject = samples.drop_duplicates(["dataset", "subject"])[
            ["dataset", "subject", "ethnicity"]
        ]
        shuffled = []
        for _, group in per_subject.groupby("dataset", sort=True):
            group = group.sort_values("subject")
            shuffled.append(group.assign(ethnicity=rng.permutation(group["ethnicity"].to_numpy())))
        mapping = pd.concat(shuffled).set_index(["dataset", "subject"])["ethnicity"]
        values = [
            mapping[(d, s)] for d, s in zip(samples["dataset"], samples["subject"], strict=True)
        ]
        values = pd.Series(values, index=samples.index)
    elif context in ("ethnicity", "dataset", "gender", "age_bin"):
        values = samples[context].astype(str)
    else:
        raise ConfigError(f"unknown context attribute {context!r}")
    classes = sorted(set(values))
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64), classes


def fold_seed(seed: int, test_subject: str, model: str) -> int:
    """A 31-bit seed for one (run seed, fold, model): the same on every executor."""
    blob = f"{seed}|{test_subject}|{model}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF
