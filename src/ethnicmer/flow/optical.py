"""Optical flow and optical strain (paper Eq. 5–6).

Flow is computed on grayscale frames from onset to apex: ``u`` is the horizontal
and ``v`` the vertical displacement of each onset pixel, in **pixels per
onset→apex interval** (of the frames as given, i.e. of the aligned crop). Methods:
TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``, default; the paper's authors used
MATLAB Classic+NL-fast instead), Farneback and DIS as cheaper options.

Optical strain (Shreve et al., 2009): the strain tensor ε = ½(∇u + (∇u)ᵀ) of the
displacement field (u, v), with spatial derivatives by central differences
(``np.gradient``), and its per-pixel magnitude
√(ε_xx² + ε_yy² + ε_xy² + ε_yx²), where ε_xy = ε_yx = ½(∂u/∂y + ∂v/∂x).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ethnicmer.errors import ConfigError

FLOW_METHODS = ("tvl1", "farneback", "dis")

_FARNEBACK_DEFAULTS = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
_TVL1_PARAMS = (
    "tau",
    "lambda_",
    "theta",
    "nscales",
    "warps",
    "epsilon",
    "innnerIterations",
    "outerIterations",
    "scaleStep",
    "gamma",
    "medianFiltering",
    "useInitialFlow",
)


def check_flow_params(method: str, params: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming any parameter ``method`` does not take."""
    allowed: tuple[str, ...]
    if method == "tvl1":
        allowed = _TVL1_PARAMS
    elif method == "farneback":
        allowed = tuple(_FARNEBACK_DEFAULTS)
    elif method == "dis":
        allowed = ("preset",)
    else:
        raise ConfigError(f"unknown flow method {method!r}; available: {list(FLOW_METHODS)}")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"flow.params: {unknown} not accepted by {method}; accepted: {list(allowed)}"
        )
    if method == "dis" and "preset" in params and params["preset"] not in _DIS_PRESETS:
        raise ConfigError(f"flow.params.preset must be one of {list(_DIS_PRESETS)}")


def compute_flow(
    onset: np.ndarray, apex: np.ndarray, method: str = "tvl1", params: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dense optical flow from ``onset`` to ``apex``.

    Args:
        onset, apex: ``(H, W)`` uint8 grayscale frames of the same size.
        method: ``"tvl1"``, ``"farneback"`` or ``"dis"``.
        params: method parameters (TV-L1: ``tau, lambda_, theta, nscales, warps,
            epsilon, innnerIterations, outerIterations, scaleStep, gamma,
            medianFiltering, useInitialFlow``; Farneback: ``pyr_scale, levels,
            winsize, iterations, poly_n, poly_sigma, flags``; DIS: ``preset``).

    Returns:
        ``(u, v)``: ``(H, W)`` float32 displacements in pixels.

    Raises:
        ConfigError: unknown method or parameter.
        ValueError: the frames differ in shape or are not 2-D uint8.
    """
    import cv2  # here, so that checking a config's flow parameters needs no OpenCV

    params = dict(params or {})
    check_flow_params(method, params)
    if (
        onset.shape != apex.shape
        or onset.ndim != 2
        or onset.dtype != np.uint8
        or apex.dtype != np.uint8
    ):
        raise ValueError(
            f"onset {onset.shape} {onset.dtype} and apex {apex.shape} {apex.dtype} "
            "must be equal-sized uint8 grayscale"
        )
    if method == "tvl1":
        solver = cv2.optflow.DualTVL1OpticalFlow_create(**params)
        flow = solver.calc(onset, apex, None)
    elif method == "farneback":
        settings = {**_FARNEBACK_DEFAULTS, **params}
        flow = cv2.calcOpticalFlowFarneback(onset, apex, None, **settings)
    else:
        solver = cv2.DISOpticalFlow_create(_DIS_PRESETS[params.get("preset", "medium")])
        flow = solver.calc(onset, apex, None)
    return flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)


def optical_strain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical strain magnitude (paper Eq. 6) of the displacement field ``(u, v)``.

    Args:
        u, v: ``(H, W)`` float displacements in pixels.

    Returns:
        ``(H, W)`` float32 strain magnitude (dimensionless: pixels per pixel).
    """
    du_dy, du_dx = np.gradient(u.astype(np.float64))
    dv_dy, dv_dx = np.gradient(v.astype(np.float64))
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2 * shear**2).astype(np.float32)
