"""Nested selection: a row's settings chosen on each outer fold's training subjects only.

For one outer LOSO fold (:class:`~ethnicmer.evaluation.training.FoldTask`) and a row
with ``selection`` (:class:`ethnicmer.config.SelectionConfig`): the candidates of the
search space are each trained and scored on ``inner_folds`` grouped splits
(scikit-learn ``GroupKFold``, by subject) of the fold's *training* rows; the candidate
with the best pooled inner score (macro-F1 or UAR; ties to the earlier candidate) is
returned. The outer test subject is never in any inner split (asserted). The record
written beside the fold's predictions holds every candidate's inner score, the
choice, and the inner splits' subjects, so a reader can check it.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ethnicmer.config import ModelConfig, SelectionConfig, candidate_config
from ethnicmer.data.emotions import EMOTION_CLASSES

if TYPE_CHECKING:
    from ethnicmer.evaluation.training import FoldTask, TrainSettings


def candidates(selection: SelectionConfig, seed: int) -> list[dict[str, Any]]:
    """The grid of ``selection.space`` in order, or ``max_candidates`` of it drawn with ``seed``."""
    keys = list(selection.space)
    grid = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*selection.space.values())
    ]
    if selection.max_candidates is not None and selection.max_candidates < len(grid):
        picked = np.random.default_rng(seed).choice(
            len(grid), selection.max_candidates, replace=False
        )
        grid = [grid[i] for i in sorted(picked)]
    return grid


def _seed(*parts: object) -> int:
    blob = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


def settings_of(model: ModelConfig, base: TrainSettings) -> TrainSettings:
    """``base`` with the candidate row's own epochs, lr and batch size where it sets them."""
    return replace(
        base,
        epochs=model.epochs or base.epochs,
        lr=model.lr or base.lr,
        batch_size=model.batch_size or base.batch_size,
    )


def select(task: FoldTask, score: Any) -> tuple[ModelConfig, dict[str, Any]]:
    """Choose the row's settings for ``task``'s outer fold on its training subjects.

    Args:
        task: the outer fold (``task.model.selection`` set, ``task.groups`` given).
        score: ``score(model, settings, train_rows, test_rows, seed) -> predictions`` of
            ``test_rows`` (the fold runner's training and prediction, injected).

    Returns:
        ``(chosen row, record)``; the record lists each candidate's inner score.

    Raises:
        AssertionError: an inner split holds the outer test subject (never happens
            when the outer fold is a proper LOSO fold; checked all the same).
    """
    from sklearn.model_selection import GroupKFold

    from ethnicmer.evaluation.metrics import classification_scores

    selection = task.model.selection
    assert selection is not None and task.groups is not None
    train_groups = task.groups[task.train]
    test_subjects = set(task.groups[task.test])
    n_groups = len(set(train_groups))
    splits = list(
        GroupKFold(min(selection.inner_folds, n_groups)).split(task.train, groups=train_groups)
    )
    inner = []
    for inner_train, inner_val in splits:
        seen = set(train_groups[inner_train]) | set(train_groups[inner_val])
        assert not seen & test_subjects, f"outer test subject {test_subjects} in the inner split"
        inner.append((task.train[inner_train], task.train[inner_val]))
    tried = []
    for j, values in enumerate(candidates(selection, task.run_seed)):
        model = candidate_config(task.model, values)
        settings = settings_of(model, task.settings)
        truth, predicted = [], []
        for k, (rows, held) in enumerate(inner):
            predicted.append(score(model, settings, rows, held, _seed(task.seed, "inner", k, j)))
            truth.append(task.labels[held])
        scores = classification_scores(
            np.concatenate(truth), np.concatenate(predicted), list(EMOTION_CLASSES)
        )
        tried.append({"values": values, "score": float(scores[selection.metric])})
    best = max(range(len(tried)), key=lambda i: (tried[i]["score"], -i))
    chosen = candidate_config(task.model, tried[best]["values"])
    record = {
        "fold": task.test_subject,
        "metric": selection.metric,
        "chosen": tried[best]["values"],
        "candidates": tried,
        "inner_folds": [
            {
                "train_subjects": sorted(set(task.groups[rows])),
                "validation_subjects": sorted(set(task.groups[held])),
            }
            for rows, held in inner
        ],
        "outer_test_subjects": sorted(test_subjects),
    }
    return chosen, record
