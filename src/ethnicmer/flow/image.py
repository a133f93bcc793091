"""The optical-flow image (paper Eq. 7) and its MEGC PNG form.

I_OF = (u, v, ε) stacked as a float32 ``(3, H, W)`` array, resized to the
configured side with bicubic interpolation, then (by default) min–max normalised
per channel to [0, 1] — the published pipeline's order: compute at the crop's
resolution, resize, normalise. A constant channel becomes zeros.

The common MEGC2019 PNG layout stores the same image as 8-bit RGB with
R = u, G = v, B = strain, each channel scaled to 0..255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from ethnicmer.io import atomic_path


def flow_image(
    u: np.ndarray,
    v: np.ndarray,
    strain: np.ndarray,
    size: int,
    normalise: Literal["minmax", "none"] = "minmax",
) -> np.ndarray:
    """Stack, resize and normalise (u, v, ε) into a ``(3, size, size)`` float32 array.

    Args:
        u, v: ``(H, W)`` float displacements (pixels); strain: ``(H, W)`` magnitude.
        size: output side in pixels (bicubic resize).
        normalise: ``"minmax"`` per channel to [0, 1], or ``"none"`` (raw units).
    """
    channels = []
    for channel in (u, v, strain):
        resized = cv2.resize(
            channel.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
        )
        if normalise == "minmax":
            low, high = float(resized.min()), float(resized.max())
            resized = (resized - low) / (high - low) if high > low else np.zeros_like(resized)
        channels.append(resized)
    return np.stack(channels).astype(np.float32)


def save_megc_png(image: np.ndarray, path: Path) -> Path:
    """Write a ``(3, H, W)`` image in [0, 1] as an 8-bit RGB PNG (R = u, G = v, B = strain)."""
    array = np.clip(np.rint(image.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(array, mode="RGB").save(tmp, format="PNG")
    return Path(path)


def flow_colour(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Colour-coded flow ``(H, W, 3)`` uint8 RGB: hue = direction, value = magnitude."""
    magnitude, angle = cv2.cartToPolar(u.astype(np.float32), v.astype(np.float32))
    hsv = np.zeros((*u.shape, 3), dtype=np.uint8)
    hsv[..., 0] = (angle * 90 / np.pi).astype(np.uint8)
    hsv[..., 1] = 255
    top = float(np.percentile(magnitude, 99)) or 1.0
    hsv[..., 2] = np.clip(magnitude / top * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
