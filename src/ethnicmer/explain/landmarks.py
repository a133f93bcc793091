"""Where the action-unit regions are on each sample: 68 landmarks per sample.

``auto``: the flow stage's landmarks of the aligned crop (the face exactly as the
flow image frames it), else dlib's landmarks on the apex crop, else the
documented template (:mod:`ethnicmer.explain.au_regions`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pandas as pd

from ethnicmer.data.subjects import format_key
from ethnicmer.explain.au_regions import landmark_regions
from ethnicmer.flow.align import crop_landmarks
from ethnicmer.progress import progress

REGION_SIDE = 112
"""Maps are upsampled to this side (pixels) before measuring region shares."""


def sample_landmarks(samples: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Normalised landmarks (x/W, y/H in [0, 1]) per sample, with their source.

    ``auto``: the flow stage's landmarks of the aligned crop (the face exactly as
    the flow image frames it), else dlib on the apex crop, else the template.
    """
    rows = []
    crops = samples["apex_crop_path"].fillna("") if "apex_crop_path" in samples else None
    aligned = samples["landmarks_path"].fillna("") if "landmarks_path" in samples else None
    for i in progress(range(len(samples)), "landmarks on apex crops"):
        row = samples.iloc[i]
        record: dict[str, Any] = {
            "dataset": row["dataset"],
            "subject": row["subject"],
            "filename": row["filename"],
        }
        path = "" if crops is None else crops.iloc[i]
        if mode != "template" and aligned is not None and aligned.iloc[i]:
            points = np.load(aligned.iloc[i])
            record["region_source"] = "landmarks (flow stage, onset)"
            for k in range(68):
                record[f"x{k}"], record[f"y{k}"] = points[k]
            rows.append(record)
            continue
        if mode == "template" or not path:
            record["region_source"] = "template"
            rows.append(record)
            continue
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if gray is None:
            record["region_source"] = "template (apex crop unreadable)"
            rows.append(record)
            continue
        where = format_key(row["dataset"], row["subject"], row["filename"])
        points, source = crop_landmarks(gray, f"{where} ({path})")
        record["region_source"] = f"landmarks ({source})"
        height, width = gray.shape
        for k in range(68):
            record[f"x{k}"] = points[k, 0] / width
            record[f"y{k}"] = points[k, 1] / height
        rows.append(record)
    return pd.DataFrame(rows)


def region_masks_of(landmarks: pd.DataFrame, i: int, template: dict[str, np.ndarray]) -> dict:
    row = landmarks.iloc[i]
    if not str(row["region_source"]).startswith("landmarks"):
        return template
    points = np.array([[row[f"x{k}"], row[f"y{k}"]] for k in range(68)]) * REGION_SIDE
    return landmark_regions(points, REGION_SIDE)
