"""LOSO protocol, metrics and their uncertainty."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from ethnicmer.data.composite import build_composite
from ethnicmer.errors import ConfigError
from ethnicmer.evaluation.metrics import classification_scores
from ethnicmer.evaluation.protocols import context_labels, fold_seed, loso_folds, subject_ids
from ethnicmer.evaluation.training import _batches

CLASSES = ["Negative", "Positive", "Surprise"]


@pytest.fixture
def tiny_samples(tiny_megc: Path, make_config):
    return build_composite(
        make_config({"sources": [{"kind": "megc2019_flow", "root": str(tiny_megc)}]}).data
    ).samples


def test_loso_holds_out_each_subject_once(tiny_samples):
    folds = loso_folds(tiny_samples)
    groups = subject_ids(tiny_samples)
    assert [f.test_subject for f in folds] == sorted(set(groups))
    for fold in folds:
        assert set(groups[fold.test]) == {fold.test_subject}
        assert fold.test_subject not in set(groups[fold.train])
        assert len(fold.train) + len(fold.test) == len(tiny_samples)
    # samm/006 and casme2/sub01... are different subjects even where numbers repeat
    assert "samm/006" in {f.test_subject for f in folds}


def test_loso_subsets(tiny_samples):
    assert [f.test_subject for f in loso_folds(tiny_samples, max_folds=2)] == [
        "casme2/sub01",
        "casme2/sub02",
    ]
    assert [f.slug for f in loso_folds(tiny_samples, test_subjects=["samm/012"])] == ["samm_012"]
    with pytest.raises(ConfigError, match="samm/099"):
        loso_folds(tiny_samples, test_subjects=["samm/099"])


def test_context_labels(tiny_samples):
    labels, classes = context_labels(tiny_samples, "ethnicity", 0)
    assert classes == ["Asian", "Non-Asian"]
    assert (np.array(classes)[labels] == tiny_samples["ethnicity"].to_numpy()).all()
    _, dataset_classes = context_labels(tiny_samples, "dataset", 0)
    assert dataset_classes == ["casme2", "samm"]
    permuted, _ = context_labels(tiny_samples, "permuted_ethnicity", 3)
    again, _ = context_labels(tiny_samples, "permuted_ethnicity", 3)
    assert (permuted == again).all()  # seeded
    # keeps each dataset's group sizes (per subject); constant within a subject
    frame = tiny_samples.assign(p=permuted)
    assert (frame.groupby(["dataset", "subject"])["p"].nunique() == 1).all()
    per_subject = frame.drop_duplicates(["dataset", "subject"])
    original = per_subject.groupby("dataset")["ethnicity"].apply(lambda s: sorted(s == "Non-Asian"))
    shuffled = per_subject.groupby("dataset")["p"].apply(lambda s: sorted(s == 1))
    assert original.to_dict() == shuffled.to_dict()


def test_fold_seed_is_stable():
    assert fold_seed(0, "casme2/sub01", "m") == fold_seed(0, "casme2/sub01", "m")
    assert fold_seed(0, "casme2/sub01", "m") != fold_seed(1, "casme2/sub01", "m")


def test_batches_never_leave_a_single_sample():
    import torch

    sizes = [len(b) for b in _batches(torch.arange(65), 32)]
    assert sizes == [32, 33]
    assert [len(b) for b in _batches(torch.arange(64), 32)] == [32, 32]


def test_scores_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    scores = classification_scores(y, p, CLASSES)
    assert scores["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert scores["uar"] == pytest.approx(recall_score(y, p, average="macro"))
    assert scores["f1_Positive"] == pytest.approx(f1_score(y, p, average=None)[1])


def test_absent_class_is_not_scored():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 2, 1, 1])
    scores = classification_scores(y, p, CLASSES)
    assert np.isnan(scores["f1_Surprise"])
    assert scores["classes_scored"] == "Negative+Positive"
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
