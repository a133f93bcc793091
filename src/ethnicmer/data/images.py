"""Strict checks of the images a study reads, at ``db build`` time.

``Image.verify()`` neither decodes JPEG data nor looks at the mode or size, so a
truncated apex JPEG, a greyscale flow PNG or a 64×48 flow PNG used to pass and
were then silently stretched or replicated into (u, v, strain). Here every image
is decoded in full and flow images must be what the MEGC2019 layout promises:
3 channels (R = u, G = v, B = optical strain), square, with channels that are
not copies of one another; their side is recorded so that a set mixing sizes is
caught (:func:`check_flow_sizes`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ethnicmer.errors import DataError


@dataclass(frozen=True)
class ImageInfo:
    """What a full decode of one image found.

    Attributes:
        width, height: pixels.
        mode: Pillow mode of the file (``RGB``, ``L``, ...).
    """

    width: int
    height: int
    mode: str


def decode_image(path: Path | str, what: str) -> tuple[ImageInfo, Image.Image]:
    """Open and fully decode an image file (truncated data is an error).

    Args:
        path: the image file.
        what: the input's name for messages (``flow image``, ``apex crop``...).

    Returns:
        ``(info, image)``; the image is loaded in memory.

    Raises:
        DataError: the file is missing, not an image, or truncated/corrupt; the
            message names the file and what the decoder said.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                loaded = image.copy()
                info = ImageInfo(image.width, image.height, image.mode)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise DataError(
            f"{what} {path} cannot be decoded ({type(exc).__name__}: {exc}); "
            "the file is truncated, corrupt or not an image"
        ) from exc
    return info, loaded


def check_flow_image(path: Path | str) -> ImageInfo:
    """Decode a MEGC2019 flow PNG and check it is a (u, v, strain) image.

    Raises:
        DataError: not decodable; not 3-channel RGB (a greyscale, palette or
            4-channel file); not square; or its three channels are identical
            (a greyscale image saved as RGB carries no separate u, v and strain).
    """
    info, image = decode_image(path, "flow image")
    if info.mode != "RGB":
        channels = len(image.getbands())
        raise DataError(
            f"flow image {path} is a {info.mode} image with {channels} channel(s); a flow "
            "image has 3 channels (R = horizontal flow u, G = vertical flow v, B = optical strain)"
        )
    if info.width != info.height:
        raise DataError(
            f"flow image {path} is {info.width}×{info.height} px; flow images are square "
            "(MEGC2019: 28×28); it would be stretched"
        )
    pixels = np.asarray(image)
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
        raise DataError(
            f"flow image {path} has three identical channels (a greyscale image saved as RGB?): "
            "u, v and optical strain cannot all be the same"
        )
    return info


def check_flow_sizes(sides: dict[str, int]) -> dict[str, str]:
    """Flow images whose side differs from the set's most common side.

    Args:
        sides: flow image path → side in pixels (all images of one set).

    Returns:
        path → reason, for every image whose side is not the set's.
    """
    if not sides:
        return {}
    common, _ = Counter(sides.values()).most_common(1)[0]
    return {
        path: (
            f"flow image {path} is {side}×{side} px, but the other flow images of this set are "
            f"{common}×{common} px"
        )
        for path, side in sides.items()
        if side != common
    }
