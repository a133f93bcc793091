"""Facial regions from 68-point landmarks, for locating motion and activation.

Each pixel inside the landmarks' convex hull is assigned to the region of its
nearest landmark: ``brows`` (17–26), ``eyes`` (36–47), ``nose`` (27–35),
``mouth`` (48–67), ``cheeks`` (side contour 0–5 and 11–16) and ``chin`` (6–10).
This is an approximation documented as such: a pixel on the cheek between the
nose and the contour goes to whichever landmark is closer.
"""

from __future__ import annotations

import cv2
import numpy as np

REGION_LANDMARKS: dict[str, list[int]] = {
    "brows": list(range(17, 27)),
    "eyes": list(range(36, 48)),
    "nose": list(range(27, 36)),
    "mouth": list(range(48, 68)),
    "cheeks": [*range(0, 6), *range(11, 17)],
    "chin": list(range(6, 11)),
}


def region_masks(landmarks: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Boolean ``(size, size)`` masks per region (see module doc) inside the face hull.

    Args:
        landmarks: ``(68, 2)`` (x, y) in the crop's pixel coordinates.
        size: crop side in pixels.
    """
    hull = cv2.convexHull(landmarks.astype(np.float32)).astype(np.int32)
    inside = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    yy, xx = np.mgrid[0:size, 0:size]
    owner = np.full((size, size), -1)
    best = np.full((size, size), np.inf)
    names = list(REGION_LANDMARKS)
    for k, name in enumerate(names):
        for index in REGION_LANDMARKS[name]:
            x, y = landmarks[index]
            distance = (xx - x) ** 2 + (yy - y) ** 2
            closer = distance < best
            best[closer] = distance[closer]
            owner[closer] = k
    return {name: (owner == k) & inside.astype(bool) for k, name in enumerate(names)}


def region_shares(values: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of the non-negative ``values`` mass (e.g. strain) falling in each region."""
    total = float(sum(values[m].sum() for m in masks.values()))
    return {
        name: (float(values[m].sum()) / total if total > 0 else 0.0) for name, m in masks.items()
    }
