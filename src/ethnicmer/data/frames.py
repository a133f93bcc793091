"""Frame folders of the raw releases: find the image of a frame number.

Layouts (dataset documentation):
- CASME II raw: ``<root>/sub01/EP02_01f/img46.jpg``; cropped release:
  ``<root>/sub01/EP02_01f/reg_img46.jpg``.
- SAMM: ``<root>/006/006_1_2/006_05562.jpg`` (subject prefix, zero-padded frame).
- SMIC-E-HS: ``<root>/s20/s20_ne_01/image17581039.jpg``.

Frame numbers are matched exactly as integers (frame 46 never matches ``img460``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from ethnicmer.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_FRAME_STEM = re.compile(r"^(?:reg_)?(?:image|img)?(?:\d+_)?0*(\d+)$")


def frame_folder(root: Path, subject: str, filename: str) -> Path:
    """The folder holding one sample's frames: ``root / subject / filename``."""
    return Path(root) / subject / filename


@lru_cache(maxsize=4096)
def index_frames(folder: Path) -> dict[int, Path]:
    """Map frame number → image path for every frame image in ``folder``.

    Recognised names: ``img46.jpg``, ``reg_img46.jpg`` (CASME II raw/cropped) and
    ``006_05562.jpg`` (SAMM). Other files are ignored.

    Raises:
        DataError: the folder does not exist, or two images carry the same frame
            number (e.g. ``img46.jpg`` beside ``reg_img46.jpg``).
    """
    if not folder.is_dir():
        raise DataError(f"frame folder {folder} does not exist")
    frames: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _FRAME_STEM.match(path.stem)
        if match is None:
            continue
        number = int(match.group(1))
        if number in frames:
            raise DataError(
                f"frame folder {folder}: frame {number} appears twice "
                f"({frames[number].name} and {path.name}); keep one release layout per folder"
            )
        frames[number] = path
    return frames


def find_frame(root: Path, subject: str, filename: str, number: int) -> Path:
    """Path of frame ``number`` of sample ``(subject, filename)`` under ``root``.

    Raises:
        DataError: the sample's folder or the frame image is missing.
    """
    folder = frame_folder(root, subject, filename)
    frames = index_frames(folder)
    if number not in frames:
        span = f"{min(frames)}..{max(frames)}" if frames else "none"
        raise DataError(
            f"frame folder {folder}: no image for frame {number} (frames present: {span})"
        )
    return frames[number]
