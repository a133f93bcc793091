"""Activation-map figures: paper-style montages and group-mean maps (Figures 3–4)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ethnicmer.explain.au_regions import REGIONS, template_regions
from ethnicmer.io import save_figure_atomic

DISPLAY_SIDE = 112
"""Side (pixels) at which overlays are drawn."""


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return cv2.resize(image.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)


def _normalised(cam: np.ndarray) -> np.ndarray:
    top = float(cam.max())
    return cam / top if top > 0 else cam


def montage(
    cells: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, str]]],
    means: dict[tuple[str, str], np.ndarray],
    groups: list[str],
    emotions: list[str],
    title: str,
    path: Path,
) -> Path:
    """Rows = groups (in the order given), columns = per emotion the examples and the mean.

    Args:
        cells: (group, emotion) → list of (background ``(H, W)`` or ``(H, W, 3)`` in
            [0, 1], map ``(h, w)`` ≥ 0, caption).
        means: (group, emotion) → mean of the sum-normalised maps ``(h, w)``.
        groups: row order (the paper: non-Asian on top, Asian below).
        emotions: column blocks.
    """
    per_block = max((len(v) for v in cells.values()), default=0) + 1
    columns = per_block * len(emotions)
    fig, axes = plt.subplots(
        len(groups),
        columns,
        figsize=(1.6 * columns, 1.8 * len(groups)),
        dpi=110,
        squeeze=False,
    )
    for r, group in enumerate(groups):
        for e, emotion in enumerate(emotions):
            items = cells.get((group, emotion), [])
            for k in range(per_block):
                ax = axes[r][e * per_block + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if k < len(items):
                    background, cam, caption = items[k]
                    ax.imshow(_resize(background, DISPLAY_SIDE), cmap="gray", vmin=0, vmax=1)
                    ax.imshow(
                        _normalised(_resize(cam, DISPLAY_SIDE)),
                        cmap="jet",
                        alpha=0.45,
                        vmin=0,
                        vmax=1,
                    )
                    ax.set_title(caption, fontsize=5)
                elif k == per_block - 1 and (group, emotion) in means:
                    mean = _resize(means[(group, emotion)], DISPLAY_SIDE)
                    ax.imshow(_normalised(mean), cmap="jet", vmin=0, vmax=1)
                    for mask in template_regions(DISPLAY_SIDE).values():
                        ax.contour(mask, levels=[0.5], colors="white", linewidths=0.4)
                    ax.set_title(f"{emotion}: mean", fontsize=6)
                else:
                    ax.axis("off")
                if e == 0 and k == 0:
                    ax.set_ylabel(group, fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def region_legend(path: Path, side: int = DISPLAY_SIDE) -> Path:
    """A figure of the canonical template regions (for the report)."""
    masks = template_regions(side)
    fig, ax = plt.subplots(figsize=(3, 3), dpi=110)
    label = np.zeros((side, side))
    for k, name in enumerate(REGIONS, start=1):
        label[masks[name]] = k
    ax.imshow(label, cmap="tab10", vmin=0, vmax=10)
    for k, name in enumerate(REGIONS, start=1):
        ys, xs = np.nonzero(label == k)
        if len(xs):
            ax.text(xs.mean(), ys.mean(), name.replace("_", "\n"), fontsize=5, ha="center")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("AU regions (template; subject's left = image right)", fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
