"""Model inputs: flow images and RGB apex crops as float32 tensors, cached on disk.

Flow images (paper Eq. 7) are read as (u, v, optical strain) and resized to
``size × size`` with bicubic interpolation (antialiased). 8-bit files (the
MEGC2019 PNGs, apex crops) are scaled to [0, 1] and clamped there after the
resize (bicubic overshoot has no meaning for an 8-bit image). Flow images of the
flow stage (``.npy``) keep their values: with ``flow.normalise: minmax`` they are
in [0, 1] already; with ``normalise: none`` they are pixels of displacement and
strain, which a clamp would destroy.

Arrays are cached as ``.npy`` under ``runs/<study>/inputs/`` and keyed by
:func:`input_digest`: the kind, size, reading rules and every sample's key and
**file content digest** (``<input>_sha256`` of the samples table), so a file
replaced at the same path is read again, never served from the cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.nn import functional as F

from ethnicmer.data.subjects import KEY_COLUMNS, format_key
from ethnicmer.digests import DigestCache, digest_strings
from ethnicmer.errors import DataError
from ethnicmer.io import save_npy_atomic, write_json_atomic
from ethnicmer.progress import progress

INPUT_COLUMNS = {"flow": "flow_path", "apex_rgb": "apex_crop_path", "apex_grey": "apex_crop_path"}
DIGEST_COLUMNS = {
    "flow": "flow_sha256",
    "apex_rgb": "apex_crop_sha256",
    "apex_grey": "apex_crop_sha256",
}
READER_VERSION = 2
"""Bumped whenever the reading rules change (v2: ``.npy`` flows are not clamped)."""


def _resize(batch: np.ndarray, size: int, clamp: bool) -> np.ndarray:
    tensor = torch.from_numpy(batch)
    if tensor.shape[-1] != size or tensor.shape[-2] != size:
        tensor = F.interpolate(
            tensor, size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
    if clamp:
        tensor = tensor.clamp_(0.0, 1.0)
    return tensor.numpy()


def _read_chw(path: str, grey: bool = False) -> np.ndarray:
    """One image as ``(3, H, W)`` float32: an 8-bit file in [0, 1] (``grey``: its
    luminance, ITU-R 601, in all three channels) or a flow ``.npy``."""
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False).astype(np.float32)
        with Image.open(path) as image:
            rgb = image.convert("L").convert("RGB") if grey else image.convert("RGB")
            return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    except Exception as exc:  # Pillow/numpy raise several types
        raise DataError(f"{path}: cannot read image ({exc})") from exc


def read_images(paths: list[str], size: int, description: str, grey: bool = False) -> np.ndarray:
    """Read images into a ``(N, 3, size, size)`` float32 array (``grey``: luminance x3).

    8-bit files come out in [0, 1]; ``.npy`` flow images keep their values (see
    the module doc).

    Raises:
        DataError: a path is empty or the image cannot be read.
    """
    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    for i, path in enumerate(progress(paths, description)):
        if not path:
            raise DataError(f"sample {i} has no image for this input")
        image = _read_chw(path, grey)[None]
        out[i] = _resize(image, size, clamp=not path.endswith(".npy"))[0]
    return out


def _content_digests(samples: pd.DataFrame, kind: str) -> list[str]:
    """Each sample's file digest for ``kind``: the samples table's, else read now."""
    column = DIGEST_COLUMNS[kind]
    given = (
        samples[column].fillna("").astype(str).tolist()
        if column in samples
        else [""] * len(samples)
    )
    if all(given):
        return given
    cache = DigestCache()
    paths = samples[INPUT_COLUMNS[kind]].astype(str).tolist()
    return [g or cache.digest(p) for g, p in zip(given, paths, strict=True)]


def input_digest(samples: pd.DataFrame, kind: str, size: int) -> str:
    """The identity of one input array: kind, size, reading rules, keys and file contents.

    Two arrays with the same digest hold the same numbers. The benchmark writes it
    into each fold's spec, so a fold trained on other pixels is never reused.
    """
    keys = samples[KEY_COLUMNS].astype(str).agg("/".join, axis=1).tolist()
    contents = _content_digests(samples, kind)
    header = json.dumps({"kind": kind, "size": size, "reader": READER_VERSION}, sort_keys=True)
    return digest_strings([header, *(f"{k}\t{c}" for k, c in zip(keys, contents, strict=True))])


def _check_present(samples: pd.DataFrame, kind: str) -> None:
    column = INPUT_COLUMNS[kind]
    missing = samples[samples[column].fillna("") == ""]
    if missing.empty:
        return
    first = missing.iloc[0]
    hint = (
        "add a stages.flow section to compute flow images from the raw frames"
        if kind == "flow"
        else "this source has no RGB apex crops; use a megc2019_flow source or context_input: flow"
    )
    what = "flow image" if kind == "flow" else f"apex crop ({kind})"
    raise DataError(
        f"{len(missing)} sample(s) have no {what}, e.g. "
        f"{format_key(first['dataset'], first['subject'], first['filename'])} ({hint})"
    )


def cached_input_file(samples: pd.DataFrame, kind: str, size: int, cache_dir: Path) -> Path:
    """Build (or reuse) the cached input array of ``samples``; return its ``.npy`` path.

    The file is named by :func:`input_digest`, so arrays of different contents
    never share a file and a reused file always holds the wanted numbers.

    Raises:
        DataError: a sample lacks this input; the message names the sample.
    """
    _check_present(samples, kind)
    digest = input_digest(samples, kind, size)
    array_path = Path(cache_dir) / f"{kind}_{size}_{digest[:16]}.npy"
    meta_path = array_path.with_suffix(".json")
    if array_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            shape = np.load(array_path, mmap_mode="r").shape
            if meta.get("digest") == digest and shape == (len(samples), 3, size, size):
                return array_path
        except (OSError, ValueError, json.JSONDecodeError):
            pass
    array = read_images(
        samples[INPUT_COLUMNS[kind]].tolist(),
        size,
        f"reading {kind} images at {size} px",
        grey=kind == "apex_grey",
    )
    for stale in Path(cache_dir).glob(f"{kind}_{size}_*.*"):  # other contents, same kind/size
        if stale.suffix in (".npy", ".json") and stale.stem != array_path.stem:
            stale.unlink(missing_ok=True)
    save_npy_atomic(array_path, array)
    write_json_atomic(meta_path, {"digest": digest, "n": len(samples), "size": size})
    return array_path


def load_inputs(samples: pd.DataFrame, kind: str, size: int, cache_dir: Path) -> np.ndarray:
    """The ``kind`` input of every sample, in table order.

    Args:
        samples: the samples table (rows in the order wanted).
        kind: ``"flow"`` (u, v, strain), ``"apex_rgb"`` or ``"apex_grey"`` (the
            crop's luminance in all three channels).
        size: output side in pixels.
        cache_dir: where the cached arrays are kept (see :func:`cached_input_file`).

    Returns:
        ``(N, 3, size, size)`` float32 array (8-bit sources in [0, 1]).

    Raises:
        DataError: a sample lacks this input; the message names the sample.
    """
    return np.load(cached_input_file(samples, kind, size, cache_dir))
