"""Model inputs: flow images and RGB apex crops as float32 tensors, cached on disk.

Flow images (paper Eq. 7) are read as RGB = (u, v, optical strain), scaled to
[0, 1] and resized to ``size × size`` with bicubic interpolation (antialiased),
clamped to [0, 1]. Apex crops are RGB in [0, 1], resized the same way. Arrays are
cached as ``.npy`` under ``runs/<study>/inputs/`` keyed by kind, size and the
sample keys; a cache whose key list does not match is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.nn import functional as F

from ethnicmer.data.subjects import KEY_COLUMNS, format_key
from ethnicmer.errors import DataError
from ethnicmer.progress import progress

INPUT_COLUMNS = {"flow": "flow_path", "apex_rgb": "apex_crop_path"}


def _resize(batch: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(batch)
    if tensor.shape[-1] != size or tensor.shape[-2] != size:
        tensor = F.interpolate(
            tensor, size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
    return tensor.clamp_(0.0, 1.0).numpy()


def _read_chw(path: str) -> np.ndarray:
    """One image as ``(3, H, W)`` float32 in [0, 1]: an 8-bit RGB file or a flow ``.npy``."""
    try:
        if path.endswith(".npy"):
            return np.load(path).astype(np.float32)
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    except Exception as exc:  # Pillow/numpy raise several types
        raise DataError(f"{path}: cannot read image ({exc})") from exc


def read_images(paths: list[str], size: int, description: str) -> np.ndarray:
    """Read RGB images into a ``(N, 3, size, size)`` float32 array in [0, 1].

    Raises:
        DataError: a path is empty or the image cannot be read.
    """
    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    for i, path in enumerate(progress(paths, description)):
        if not path:
            raise DataError(f"sample {i} has no image for this input")
        out[i] = _resize(_read_chw(path)[None], size)[0]
    return out


def _keys_digest(samples: pd.DataFrame, column: str) -> str:
    rows = samples[[*KEY_COLUMNS, column]].astype(str).agg("\t".join, axis=1)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def load_inputs(samples: pd.DataFrame, kind: str, size: int, cache_dir: Path) -> np.ndarray:
    """The ``kind`` input (``"flow"`` or ``"apex_rgb"``) of every sample, in table order.

    Args:
        samples: the samples table (rows in the order wanted).
        kind: ``"flow"`` (u, v, strain) or ``"apex_rgb"``.
        size: output side in pixels.
        cache_dir: where ``<kind>_<size>.npy`` and its key file are kept.

    Returns:
        ``(N, 3, size, size)`` float32 array in [0, 1].

    Raises:
        DataError: a sample lacks this input; the message names the sample.
    """
    column = INPUT_COLUMNS[kind]
    missing = samples[samples[column].fillna("") == ""]
    if not missing.empty:
        first = missing.iloc[0]
        hint = (
            "add a stages.flow section to compute flow images from the raw frames"
            if kind == "flow"
            else "this source has no RGB apex crops; use a megc2019_flow source "
            "or context_input: flow"
        )
        raise DataError(
            f"{len(missing)} sample(s) have no {kind} input, e.g. "
            f"{format_key(first['dataset'], first['subject'], first['filename'])} ({hint})"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path = cache_dir / f"{kind}_{size}.npy"
    meta_path = cache_dir / f"{kind}_{size}.json"
    digest = _keys_digest(samples, column)
    if array_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            array = np.load(array_path)
            if meta.get("digest") == digest and array.shape == (len(samples), 3, size, size):
                return array
        except (OSError, ValueError, json.JSONDecodeError):
            pass
    array = read_images(samples[column].tolist(), size, f"reading {kind} images at {size} px")
    tmp = array_path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, array_path)
    meta_path.write_text(json.dumps({"digest": digest, "n": len(samples), "size": size}))
    return array
