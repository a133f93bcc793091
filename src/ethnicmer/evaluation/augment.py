"""Flow-aware augmentation and sample mixing for training batches.

A flow image's channels are motion, not colour: u (horizontal), v (vertical) and the
optical-strain magnitude (paper Eq. 5–7). :func:`augment_flow` draws one geometric
transform per image (mirror, scale, shift, rotation; :class:`ethnicmer.config.AugmentConfig`)
and applies it to the pixels *and* to the vectors they hold:

- mirror (x → −x): u → −u, i.e. u_norm → 1 − u_norm for channels min-max normalised
  per image (u_norm = (u − min) / (max − min), and the negated channel has min −max
  and max −min); v and the strain magnitude are only mirrored;
- scale by s and shift: the vectors scale by s (applied to flows in pixels; per-image
  min-max normalisation removes it); strain, a gradient of displacement over distance,
  is unchanged;
- rotation by θ (flows in pixels only): (u, v) rotate with the image; the strain
  magnitude (the Frobenius norm of a symmetric tensor) is invariant.

Pixels are resampled bilinearly with border padding (the border's motion, not a
zero that would read as motion in min-max space). :func:`mix_batch` implements mixup
(Zhang et al., 2018) and cutmix (Yun et al., 2019) with the mixing weight λ returned
for the loss. All randomness comes from the fold's seeded ``torch.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ethnicmer.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def draw_transforms(
    n: int, cfg: AugmentConfig, generator: torch.Generator, side: int
) -> dict[str, torch.Tensor]:
    """``n`` random transforms: ``flip`` (bool), ``scale``, ``angle`` (radians), ``shift``
    ``(n, 2)`` (x and y, as a fraction of the image side; ``cfg.translate`` pixels of a
    ``side``-pixel flow image), drawn on the CPU from ``generator``."""
    flip = (
        torch.rand(n, generator=generator) < 0.5 if cfg.hflip else torch.zeros(n, dtype=torch.bool)
    )
    scale = _uniform(n, 1 - cfg.scale, 1 + cfg.scale, generator) if cfg.scale else torch.ones(n)
    angle = (
        _uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees, generator) * math.pi / 180
        if cfg.rotate_degrees
        else torch.zeros(n)
    )
    shift = (
        torch.randint(-cfg.translate, cfg.translate + 1, (n, 2), generator=generator).float()
        if cfg.translate
        else torch.zeros(n, 2)
    )
    # the shift as a fraction of the flow image's side: an RGB context of another size
    # moves by the same fraction
    return {"flip": flip, "scale": scale, "angle": angle, "shift": shift / side}


def warp(images: torch.Tensor, transforms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Resample ``(n, C, H, W)`` images by the transforms (pixels only, no vector change)."""
    n = images.shape[0]
    device = images.device
    flip = transforms["flip"].to(device)
    scale = transforms["scale"].to(device)
    angle = transforms["angle"].to(device)
    shift = transforms["shift"].to(device)
    # content moves by p → L p + t with L = s R(θ) M (M mirrors x when flipped), in
    # pixel coordinates (x right, y down; square images); the sampling grid maps each
    # output point q back to L⁻¹ (q − t), with L⁻¹ = M R(−θ) / s
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sign = torch.where(flip, -1.0, 1.0)
    inverse = torch.zeros(n, 2, 2, device=device)
    inverse[:, 0, 0] = sign * cos
    inverse[:, 0, 1] = sign * sin
    inverse[:, 1, 0] = -sin
    inverse[:, 1, 1] = cos
    t = shift * 2  # fractions of the side → normalised grid units ([-1, 1] spans it)
    theta = torch.cat([inverse, -(inverse @ t[:, :, None])], dim=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_flow(
    flow: torch.Tensor, transforms: dict[str, torch.Tensor], values: str
) -> torch.Tensor:
    """Transform ``(n, 3, H, W)`` flow images (u, v, strain) and their vectors.

    Args:
        values: ``minmax`` (channels min-max normalised per image) or ``signed`` (pixels).
    """
    out = warp(flow, transforms)
    flip = transforms["flip"].to(flow.device)
    u, v, strain = out[:, 0], out[:, 1], out[:, 2]
    if values == "minmax":
        u = torch.where(flip[:, None, None], 1.0 - u, u)
        return torch.stack([u, v, strain], dim=1)
    # vectors in pixels transform by L = s R(θ) M: mirror u, rotate, scale
    u = torch.where(flip[:, None, None], -u, u)
    angle = transforms["angle"].to(flow.device)[:, None, None]
    scale = transforms["scale"].to(flow.device)[:, None, None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    u, v = scale * (u * cos - v * sin), scale * (u * sin + v * cos)
    return torch.stack([u, v, strain], dim=1)


def mirror_flow(flow: torch.Tensor, values: str) -> torch.Tensor:
    """The left-right mirror of ``(n, 3, H, W)`` flow images (u, v, strain): pixels
    flipped exactly (no resampling) and u negated, as :func:`augment_flow`'s mirror does
    (``minmax``: u_norm → 1 − u_norm; ``signed``: u → −u); v and the strain magnitude
    are only flipped. Used for test-time mirroring (``training.test_flip``)."""
    out = torch.flip(flow, dims=[-1])
    u = 1.0 - out[:, 0] if values == "minmax" else -out[:, 0]
    return torch.cat([u[:, None], out[:, 1:]], dim=1)


def mix_batch(
    images: list[torch.Tensor | None],
    kind: str,
    alpha: float,
    generator: torch.Generator,
) -> tuple[list[torch.Tensor | None], torch.Tensor, float]:
    """Mixup or cutmix of a batch's inputs (the same partner and weight for every input).

    Args:
        images: the batch's input tensors ``(n, C, H, W)`` (``None`` entries pass through).
        kind: ``mixup`` or ``cutmix``.
        alpha: Beta(α, α) concentration of the mixing weight.

    Returns:
        ``(mixed inputs, partner indices (n,), λ)``: the loss is
        λ·CE(labels) + (1 − λ)·CE(labels[partner]).
    """
    n = next(t for t in images if t is not None).shape[0]
    # λ from the fold's generator (via a NumPy stream it seeds), the same on every device
    stream = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    lam = float(stream.beta(alpha, alpha))
    partner = torch.randperm(n, generator=generator)
    out: list[torch.Tensor | None] = []
    if kind == "mixup":
        for t in images:
            out.append(None if t is None else lam * t + (1 - lam) * t[partner.to(t.device)])
        return out, partner, lam
    # one box as fractions of the side, pasted into every input at its own size (an RGB
    # context of another side gets the same region)
    half = math.sqrt(1 - lam) / 2
    cy, cx = (float(v) for v in torch.rand(2, generator=generator))
    y0, y1 = max(cy - half, 0.0), min(cy + half, 1.0)
    x0, x1 = max(cx - half, 0.0), min(cx + half, 1.0)
    area = 0.0
    for t in images:
        if t is None:
            out.append(None)
            continue
        height, width = t.shape[-2:]
        rows = slice(round(y0 * height), round(y1 * height))
        cols = slice(round(x0 * width), round(x1 * width))
        mixed = t.clone()
        mixed[:, :, rows, cols] = t[partner.to(t.device)][:, :, rows, cols]
        out.append(mixed)
        if not area:  # λ from the first input's pasted pixels
            area = (rows.stop - rows.start) * (cols.stop - cols.start) / (height * width)
    return out, partner, 1 - area
