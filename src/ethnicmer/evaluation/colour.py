"""What colour alone decodes: a baseline beside the context head (issue 16).

In the MEGC2019 set the SAMM apex crops are greyscale and the CASME II crops are
colour, and every CASME II subject is Asian: a head that "recognises ethnicity"
from RGB apex crops may be reading colour. This baseline describes each crop by
colour statistics only (mean and standard deviation of R, G and B, and the mean
HSV saturation: 7 numbers, no face, no shape), fits a logistic regression under
leave-one-subject-out and reports its balanced accuracy with the same
permutation test over subjects as the context head
(:func:`ethnicmer.evaluation.decoding.decoding_scores`). Computed on the crops as
stored (``raw``) and as a benchmark row reads them (``grey`` after the greyscale
default), it shows what colour alone decodes before and after the conversion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from ethnicmer.evaluation.decoding import decoding_scores
from ethnicmer.evaluation.protocols import subject_ids

FEATURES = ["mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "saturation"]


def colour_statistics(path: str, grey: bool) -> np.ndarray:
    """``(7,)`` float64 colour statistics of one image in [0, 1] (see the module doc).

    Args:
        path: an 8-bit image file.
        grey: convert to greyscale first (as a row with ``apex_colour: grey`` reads it).
    """
    with Image.open(path) as image:
        rgb = image.convert("L").convert("RGB") if grey else image.convert("RGB")
        hsv = np.asarray(rgb.convert("HSV"), dtype=np.float64) / 255.0
        pixels = np.asarray(rgb, dtype=np.float64) / 255.0
    flat = pixels.reshape(-1, 3)
    return np.concatenate([flat.mean(axis=0), flat.std(axis=0), [hsv[..., 1].mean()]])


def colour_decoding(
    samples: pd.DataFrame, labels: np.ndarray, grey: bool, permutations: int, seed: int
) -> list[dict[str, object]]:
    """LOSO decoding of ``labels`` from colour statistics, overall and within each dataset.

    Args:
        samples: rows with ``dataset``, ``subject``, ``apex_crop_path``.
        labels: ``(N,)`` int context labels (one per subject).
        grey: read the crops as greyscale.
        permutations: permutation resamples of the subject labels; seed: seeds them.

    Returns:
        One record per scope (``all``, ``within <dataset>``) with the
        :func:`~ethnicmer.evaluation.decoding.decoding_scores` fields.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    groups = subject_ids(samples)
    if len(np.unique(groups)) < 2 or len(np.unique(labels)) < 2:
        return [
            {
                "scope": "all",
                "subjects": len(np.unique(groups)),
                "samples": len(samples),
                "note": "fewer than 2 subjects or one class only: not testable",
            }
        ]
    features = np.stack([colour_statistics(p, grey) for p in samples["apex_crop_path"]])
    predicted = np.empty(len(samples), dtype=np.int64)
    for train, test in LeaveOneGroupOut().split(features, labels, groups):
        if len(np.unique(labels[train])) < 2:
            predicted[test] = labels[train][0]
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        predicted[test] = model.fit(features[train], labels[train]).predict(features[test])
    frame = pd.DataFrame(
        {
            "subject_id": groups,
            "dataset": samples["dataset"].to_numpy(),
            "context_true": labels,
            "context_pred": predicted,
        }
    )
    scopes = {"all": frame} | {f"within {d}": g for d, g in frame.groupby("dataset")}
    return [
        {"scope": scope, **decoding_scores(part, permutations, seed)}
        for scope, part in scopes.items()
    ]
