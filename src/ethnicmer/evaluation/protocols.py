"""Evaluation protocols: LOSO on the composite database and cross-dataset protocols.

- ``loso``: composite database evaluation (CDE, paper IV; MEGC2019): the datasets'
  samples are pooled and every subject is held out once. A subject is identified by
  ``(dataset, subject)`` since subject numbers repeat across datasets.
- ``leave_one_dataset_out``: every dataset is held out once, trained on the others.
- ``train_test``: one fold: train on ``train_datasets``, test on ``test_datasets``
  (e.g. composite → SMIC, CASME II → SAMM).

Every fold is checked for leakage: no test subject may be in its training set.
A row whose context needs a per-subject label (ethnicity, gender, age) trains and
tests on the subjects that have it (:func:`row_samples`); its folds are the same
folds restricted to those samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut

from ethnicmer.config import BenchmarkConfig
from ethnicmer.data.names import UNKNOWN
from ethnicmer.errors import ConfigError, DataError


def subject_ids(samples: pd.DataFrame) -> np.ndarray:
    """``"dataset/subject"`` per sample: the LOSO group of each row."""
    return (samples["dataset"].astype(str) + "/" + samples["subject"].astype(str)).to_numpy()


@dataclass(frozen=True)
class Fold:
    """One fold of a protocol.

    Attributes:
        test_subject: what is held out: ``"dataset/subject"`` (LOSO),
            ``"dataset smic"`` (leave one dataset out) or ``"casme2+samm -> smic"``
            (train/test); the ``fold`` column of the predictions.
        train: row positions of the training samples (int64).
        test: row positions of the test samples (int64).
    """

    test_subject: str
    train: np.ndarray
    test: np.ndarray

    @property
    def slug(self) -> str:
        """File-name-safe fold name, e.g. ``casme2_sub01``, ``dataset_smic``,
        ``casme2+samm_to_smic``."""
        return self.test_subject.replace("/", "_").replace(" -> ", "_to_").replace(" ", "_")


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


def _checked(name: str, train: np.ndarray, test: np.ndarray, groups: np.ndarray) -> Fold:
    leaked = sorted(set(groups[test]) & set(groups[train]))
    if leaked:
        raise DataError(
            f"leakage: test subject(s) {leaked[:5]} of fold {name} are in its training set"
        )
    return Fold(name, train.astype(np.int64), test.astype(np.int64))


def protocol_folds(samples: pd.DataFrame, bench: BenchmarkConfig, limit: bool = True) -> list[Fold]:
    """The folds of ``bench.protocol`` over ``samples`` (positions into ``samples``);
    ``limit``: keep only the first ``bench.max_folds``.

    Raises:
        ConfigError: a requested test subject or dataset is not in the samples, or a
            train/test protocol leaves no training or test sample.
        DataError: a fold's test subject appears in its training set (leakage).
    """
    if bench.protocol == "loso":
        return loso_folds(samples, bench.test_subjects, bench.max_folds if limit else None)
    groups = subject_ids(samples)
    datasets = samples["dataset"].astype(str).to_numpy()
    present = sorted(set(datasets))
    if bench.protocol == "leave_one_dataset_out":
        if len(present) < 2:
            raise ConfigError(
                f"protocol leave_one_dataset_out needs two or more datasets; the samples hold "
                f"{present}"
            )
        folds = [
            _checked(
                f"dataset {d}", np.flatnonzero(datasets != d), np.flatnonzero(datasets == d), groups
            )
            for d in present
        ]
    else:
        train_sets, test_sets = bench.train_datasets or [], bench.test_datasets or []
        unknown = sorted(set(train_sets + test_sets) - set(present))
        if unknown:
            raise ConfigError(
                f"benchmark train_datasets/test_datasets {unknown} are not in the samples "
                f"(datasets present: {present})"
            )
        name = f"{'+'.join(train_sets)} -> {'+'.join(test_sets)}"
        folds = [
            _checked(
                name,
                np.flatnonzero(np.isin(datasets, train_sets)),
                np.flatnonzero(np.isin(datasets, test_sets)),
                groups,
            )
        ]
    return folds[: bench.max_folds] if limit and bench.max_folds is not None else folds


LABELLED_CONTEXTS = {
    "ethnicity": "ethnicity",
    "permuted_ethnicity": "ethnicity",
    "gender": "gender",
    "age_bin": "age_bin",
}
"""Context attribute → the sample column a subject must have for the row to use it."""


def labelled(samples: pd.DataFrame, column: str = "ethnicity") -> np.ndarray:
    """``(N,)`` bool: the sample's subject has ``column`` (not NA; ethnicity not Unknown)."""
    values = samples[column]
    known = values.notna().to_numpy()
    if column == "ethnicity":
        known = known & (values.astype(str) != UNKNOWN).to_numpy()
    return known


def unlabelled_counts(samples: pd.DataFrame) -> dict[str, object]:
    """How many samples and subjects have no ethnicity group, per dataset, and why: the
    per-group analyses leave them out and say so (``data.demographics.missing: unknown``)."""
    unknown = samples[~labelled(samples)]
    return {
        "samples": len(unknown),
        "subjects": int(unknown[["dataset", "subject"]].drop_duplicates().shape[0]),
        "by_dataset": {str(k): int(v) for k, v in unknown["dataset"].value_counts().items()},
        "reason": f"no demographics (data.demographics.missing: unknown; ethnicity {UNKNOWN!r})",
    }


def row_samples(samples: pd.DataFrame, context: str) -> np.ndarray:
    """``(N,)`` bool: the samples a benchmark row trains and tests on.

    Emotion-only rows and the dataset context use every sample; a row whose context
    is a per-subject label (ethnicity, permuted ethnicity, gender, age bin) only the
    subjects that have it (``data.demographics.missing: unknown`` leaves others
    without one).
    """
    if context not in LABELLED_CONTEXTS:
        return np.ones(len(samples), dtype=bool)
    return labelled(samples, LABELLED_CONTEXTS[context])


def restrict(folds: list[Fold], keep: np.ndarray) -> list[Fold]:
    """The same folds over the samples ``keep`` marks (positions stay into the full
    table); folds left without a test or a training sample are dropped."""
    out = []
    for fold in folds:
        train, test = fold.train[keep[fold.train]], fold.test[keep[fold.test]]
        if len(train) and len(test):
            out.append(Fold(fold.test_subject, train, test))
    return out


def context_labels(samples: pd.DataFrame, context: str, seed: int) -> tuple[np.ndarray, list[str]]:
    """Per-sample context labels for the dual-context network's second branch.

    Args:
        samples: the samples table.
        context: ``ethnicity``, ``dataset``, ``gender``, ``age_bin`` or
            ``permuted_ethnicity`` (ethnicity groups shuffled across subjects within
            each dataset with ``seed``: a control with the same group sizes).
        seed: seed of the permutation.

    Returns:
        ``(labels, classes)``: int64 labels ``(N,)`` and the class names in index order;
        ``-1`` for samples whose subject has no such label (never trained on:
        :func:`row_samples`).
    """
    if context == "permuted_ethnicity":
        rng = np.random.default_rng(seed)
        per_subject = samples[labelled(samples)].drop_duplicates(["dataset", "subject"])[
            ["dataset", "subject", "ethnicity"]
        ]
        shuffled = []
        for _, group in per_subject.groupby("dataset", sort=True):
            group = group.sort_values("subject")
            shuffled.append(group.assign(ethnicity=rng.permutation(group["ethnicity"].to_numpy())))
        mapping = pd.concat(shuffled).set_index(["dataset", "subject"])["ethnicity"]
        values = [
            mapping.get((d, s), None)
            for d, s in zip(samples["dataset"], samples["subject"], strict=True)
        ]
        values = pd.Series(values, index=samples.index)
    elif context in ("ethnicity", "dataset", "gender", "age_bin"):
        known = (
            labelled(samples, LABELLED_CONTEXTS[context])
            if context in LABELLED_CONTEXTS
            else np.ones(len(samples), dtype=bool)
        )
        values = [str(v) if k else None for v, k in zip(samples[context], known, strict=True)]
    else:
        raise ConfigError(f"unknown context attribute {context!r}")
    classes = sorted({v for v in values if v is not None})
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index.get(v, -1) for v in values], dtype=np.int64), classes


def fold_seed(seed: int, test_subject: str, model: str) -> int:
    """A 31-bit seed for one (run seed, fold, model): the same on every executor."""
    blob = f"{seed}|{test_subject}|{model}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF
