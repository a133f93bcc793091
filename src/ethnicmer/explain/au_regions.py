"""Action-unit regions of a face crop and the share of an activation map in each.

Regions (subject's left/right; images are not mirrored, so the subject's left is
the image's right):

=================  =====  ==========================================================
region             AUs    from 68 iBUG landmarks (d = distance between eye centres)
=================  =====  ==========================================================
upper_face         1,2,5  box over brows and eyes: x from point 17 to 26, y from the
                          brow top − 0.25·d to the lowest eye point + 0.1·d
cheek_right        6      polygon 1, 41, 40, 31, 48, 4, 3, 2 (image left)
cheek_left         6      polygon 15, 46, 47, 35, 54, 12, 13, 14 (image right)
lip_corner_right   12     disc of radius 0.25·mouth width at point 48 (image left)
lip_corner_left    12     disc of radius 0.25·mouth width at point 54 (image right)
mouth_jaw          26     polygon of the jaw 4–12 closed by the upper lip 54–48
=================  =====  ==========================================================

Without landmarks, :func:`template_regions` gives the same regions as fixed boxes
and discs in a face crop that spans the face from brows to chin (the framing of the
MEGC2019 crops and of our aligned crops): an approximation, documented as such and
recorded per sample (``region_source``).

Measures of a non-negative map ``m`` (:func:`region_measures`): the share of the
map's mass in each region (regions may overlap), ``au6_au12_share`` (the union of
cheeks and lip corners), ``lip_asymmetry`` = (left − right) / (left + right) of the lip-corner
masses in [−1, 1] and its absolute value, ``cheek_asymmetry`` likewise, and
``upper_share`` = upper / (upper + mouth_jaw), the upper/lower balance in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np

REGIONS = (
    "upper_face",
    "cheek_right",
    "cheek_left",
    "lip_corner_right",
    "lip_corner_left",
    "mouth_jaw",
)

MEASURES = (
    "upper_face_share",
    "mouth_jaw_share",
    "au6_au12_share",
    "lip_asymmetry",
    "lip_asymmetry_abs",
    "cheek_asymmetry",
    "upper_share",
)


def _polygon(points: np.ndarray, side: int) -> np.ndarray:
    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _disc(centre: np.ndarray, radius: float, side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return (xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 <= radius**2


def landmark_regions(landmarks: np.ndarray, side: int) -> dict[str, np.ndarray]:
    """Boolean ``(side, side)`` masks of :data:`REGIONS` from 68 landmarks.

    Args:
        landmarks: ``(68, 2)`` (x, y) in the pixel coordinates of the ``side × side`` map.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    right_eye, left_eye = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    d = float(np.linalg.norm(left_eye - right_eye))
    top = lm[17:27, 1].min() - 0.25 * d
    bottom = lm[36:48, 1].max() + 0.1 * d
    x0, x1 = lm[17, 0], lm[26, 0]
    upper = np.array([[x0, top], [x1, top], [x1, bottom], [x0, bottom]])
    mouth_width = float(np.linalg.norm(lm[54] - lm[48]))
    return {
        "upper_face": _polygon(upper, side),
        "cheek_right": _polygon(lm[[1, 41, 40, 31, 48, 4, 3, 2]], side),
        "cheek_left": _polygon(lm[[15, 46, 47, 35, 54, 12, 13, 14]], side),
        "lip_corner_right": _disc(lm[48], 0.25 * mouth_width, side),
        "lip_corner_left": _disc(lm[54], 0.25 * mouth_width, side),
        "mouth_jaw": _polygon(lm[[*range(4, 13), *range(54, 47, -1)]], side),
    }


def template_regions(side: int) -> dict[str, np.ndarray]:
    """Boolean ``(side, side)`` masks of :data:`REGIONS` from a canonical template.

    Fractions of the crop side (x right, y down): upper face x 0.15–0.85, y
    0.10–0.45; cheeks x 0.08–0.38 (image left = subject's right) and 0.62–0.92,
    y 0.45–0.70; lip-corner discs of radius 0.08 at (0.33, 0.76) and (0.67, 0.76);
    mouth and jaw x 0.25–0.75, y 0.66–1.0.
    """

    def box(xa: float, xb: float, ya: float, yb: float) -> np.ndarray:
        pts = np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]]) * side
        return _polygon(pts, side)

    return {
        "upper_face": box(0.15, 0.85, 0.10, 0.45),
        "cheek_right": box(0.08, 0.38, 0.45, 0.70),
        "cheek_left": box(0.62, 0.92, 0.45, 0.70),
        "lip_corner_right": _disc(np.array([0.33, 0.76]) * side, 0.08 * side, side),
        "lip_corner_left": _disc(np.array([0.67, 0.76]) * side, 0.08 * side, side),
        "mouth_jaw": box(0.25, 0.75, 0.66, 1.0),
    }


def _balance(a: float, b: float) -> float:
    return (a - b) / (a + b) if a + b > 0 else float("nan")


def region_measures(cam: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """The :data:`MEASURES` of one non-negative map (see the module doc).

    Args:
        cam: ``(side, side)`` float map (values ≥ 0), on the same grid as ``masks``.
        masks: from :func:`landmark_regions` or :func:`template_regions`.

    Returns:
        Measure name → value; every value is NaN when the map has no mass.
    """
    total = float(cam.sum())
    if total <= 0:
        return {m: float("nan") for m in MEASURES}
    mass = {name: float(cam[mask].sum()) for name, mask in masks.items()}
    share = {name: value / total for name, value in mass.items()}
    lip = _balance(mass["lip_corner_left"], mass["lip_corner_right"])
    au6_au12 = (
        masks["cheek_right"]
        | masks["cheek_left"]
        | masks["lip_corner_right"]
        | masks["lip_corner_left"]
    )
    return {
        "upper_face_share": share["upper_face"],
        "mouth_jaw_share": share["mouth_jaw"],
        "au6_au12_share": float(cam[au6_au12].sum()) / total,
        "lip_asymmetry": lip,
        "lip_asymmetry_abs": abs(lip),
        "cheek_asymmetry": _balance(mass["cheek_left"], mass["cheek_right"]),
        "upper_share": _balance(mass["upper_face"], mass["mouth_jaw"]) / 2 + 0.5
        if mass["upper_face"] + mass["mouth_jaw"] > 0
        else float("nan"),
    }
