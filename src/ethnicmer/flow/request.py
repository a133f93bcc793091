"""Checks of a one-clip flow request (``ethnicmer flow-video``) before anything is read.

Kept free of OpenCV and torch so the command line answers a bad request at once.
"""

from __future__ import annotations

from pathlib import Path

from ethnicmer.errors import ConfigError


def check_clip_request(
    onset: int, apex: int, output: Path, size: int, crop_size: int, align: str, method: str
) -> None:
    """Check a one-clip request before any frame is read.

    Raises:
        ConfigError: ``onset < 0``; ``apex <= onset`` (a reversed flow, or an
            all-zero one for the same frame); ``output`` not a ``.png`` path (JPEG
            would store the flow lossy) or an existing folder; ``size < 8``;
            ``crop_size < 32``; unknown ``align`` or ``method``.
    """
    if onset < 0:
        raise ConfigError(f"--onset {onset}: frame numbers start at 0")
    if apex == onset:
        raise ConfigError(
            f"--onset {onset} and --apex {apex} are the same frame: the flow would be all zero"
        )
    if apex < onset:
        raise ConfigError(
            f"--apex {apex} comes before --onset {onset}: the flow would run backwards "
            "(apex to onset); give the onset first"
        )
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"-o {output}: is a folder; give the flow image's file name (.png)")
    if output.suffix.lower() != ".png":
        got = f"a {output.suffix} file" if output.suffix else "a name without an extension"
        raise ConfigError(
            f"-o {output}: {got}; the flow image is written as PNG (lossless: JPEG would "
            "change the flow values), so name it .png"
        )
    if size < 8:
        raise ConfigError(f"--size {size}: the flow image side must be at least 8 pixels")
    if crop_size < 32:
        raise ConfigError(f"--crop-size {crop_size}: the aligned crop must be at least 32 pixels")
    if align not in ("dlib", "none"):
        raise ConfigError(f"--align {align}: must be dlib or none")
    if method not in ("tvl1", "farneback", "dis"):
        raise ConfigError(f"--method {method}: must be tvl1, farneback or dis")
