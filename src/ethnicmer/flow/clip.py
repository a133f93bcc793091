"""One clip → one flow image: the ``ethnicmer flow-video`` command's library side.

Frames come from a video file (0-based frame indices, read sequentially with
OpenCV) or a folder of frames (frame numbers as in the file names, e.g.
``img46.jpg``). The preview figure shows the aligned apex crop, u, v, optical
strain and the colour-coded flow; the strain mass per facial region is returned.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ethnicmer.data.frames import index_frames
from ethnicmer.errors import DataError
from ethnicmer.flow.compute import FlowResult, FlowSettings, flow_from_frames, read_gray
from ethnicmer.flow.image import flow_colour, save_megc_png
from ethnicmer.flow.regions import region_masks, region_shares
from ethnicmer.flow.request import check_clip_request
from ethnicmer.io import save_figure_atomic


def read_clip_frames(source: Path, onset: int, apex: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The onset and apex frames of a video file or frame folder as ``(H, W)`` uint8.

    Returns:
        ``(onset_frame, apex_frame, description)``.

    Raises:
        DataError: the source is missing/unreadable or a frame index is out of range.
    """
    source = Path(source)
    if source.is_dir():
        index_frames.cache_clear()
        frames = index_frames(source)
        for name, number in (("onset", onset), ("apex", apex)):
            if number not in frames:
                raise DataError(f"{source}: no image for --{name} frame {number}")
        return read_gray(frames[onset]), read_gray(frames[apex]), f"{source} frames {onset}->{apex}"
    if not source.is_file():
        raise DataError(f"{source}: no such video file or frame folder")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise DataError(f"{source}: cannot open the video")
    wanted = {onset: None, apex: None}
    index = 0
    try:
        while index <= max(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                wanted[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            index += 1
    finally:
        capture.release()
    for name, number in (("onset", onset), ("apex", apex)):
        if wanted[number] is None:
            raise DataError(
                f"{source}: --{name} {number} is past the end of the video ({index} frames)"
            )
    return wanted[onset], wanted[apex], f"{source} frames {onset}->{apex}"


def preview_figure(result: FlowResult, title: str, path: Path) -> Path:
    """Save the five-panel preview: apex crop, u, v, strain, colour-coded flow."""
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.4), dpi=100)
    panels = [
        (result.apex_crop, "apex (aligned)", "gray"),
        (result.u, "u (px, horizontal)", "coolwarm"),
        (result.v, "v (px, vertical)", "coolwarm"),
        (result.strain, "optical strain", "magma"),
        (flow_colour(result.u, result.v), "flow (hue = direction)", None),
    ]
    for ax, (image, label, cmap) in zip(axes, panels, strict=True):
        if cmap in ("coolwarm",):
            bound = float(np.percentile(np.abs(image), 99)) or 1.0
            shown = ax.imshow(image, cmap=cmap, vmin=-bound, vmax=bound)
            fig.colorbar(shown, ax=ax, fraction=0.046)
        elif cmap is not None:
            shown = ax.imshow(image, cmap=cmap)
            if cmap != "gray":
                fig.colorbar(shown, ax=ax, fraction=0.046)
        else:
            ax.imshow(image)
        if result.landmarks is not None:
            ax.scatter(result.landmarks[:, 0], result.landmarks[:, 1], s=2, c="lime")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def flow_for_clip(
    source: Path, onset: int, apex: int, out: Path, settings: FlowSettings
) -> dict[str, object]:
    """Compute the clip's flow image, write ``out`` (MEGC PNG) and ``out``'s preview.

    Returns:
        ``{"flow_image", "preview", "max_displacement_px", "strain_share"}``; the strain
        shares per region exist when landmarks were found (``align: dlib``).

    Raises:
        ConfigError: a bad request (see :func:`check_clip_request`).
        DataError: the source or a frame cannot be read, or no face is found.
    """
    check_clip_request(
        onset, apex, out, settings.size, settings.crop_size, settings.align, settings.method
    )
    onset_frame, apex_frame, where = read_clip_frames(source, onset, apex)
    result = flow_from_frames(onset_frame, apex_frame, settings, where)
    out = Path(out)
    save_megc_png(result.image, out)
    preview = preview_figure(result, where, out.with_name(out.stem + ".preview.png"))
    shares = (
        region_shares(result.strain, region_masks(result.landmarks, settings.crop_size))
        if result.landmarks is not None
        else {}
    )
    return {
        "flow_image": str(out),
        "preview": str(preview),
        "max_displacement_px": float(np.hypot(result.u, result.v).max()),
        "strain_share": shares,
    }
