"""One fold's activation maps: made from its trained model, in the fold or later.

:func:`explain_fold` makes the configured maps (Grad-CAM, Integrated Gradients) of
one fold's test samples with that fold's model, which never saw their subject. The
activation-map stage calls it on each fold's saved checkpoint (``cam.when: after``);
with ``cam.when: fold`` the benchmark calls it inside the fold right after training
(:func:`save_fold_maps`), writes ``models/<row>/seed-<s>/maps/<fold>.npz`` and needs no
checkpoint at all, and the stage reads those files (:func:`load_fold_maps`). Only
the first benchmark seed's fold models are explained (``benchmark.seeds[0]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ethnicmer.config import CamConfig
    from ethnicmer.models.dual import DualContextNet


@dataclass(frozen=True)
class MapRequest:
    """The maps one fold makes (picklable: it travels with the fold task).

    Attributes:
        branches: ``emotion`` and/or ``context`` (dual rows only).
        methods: ``gradcam`` and/or ``integrated_gradients``.
        layer, min_cam_side: Grad-CAM's target layer (``auto``: the deepest of at
            least ``min_cam_side`` pixels).
        target: ``truth`` or ``predicted``: the class each sample's map explains.
        ig_steps: Integrated Gradients path points.
        out_file: the ``.npz`` written (``None`` when the stage explains checkpoints).
    """

    branches: tuple[str, ...]
    methods: tuple[str, ...]
    layer: str
    min_cam_side: int
    target: str
    ig_steps: int
    out_file: str | None = None

    @classmethod
    def from_config(cls, cam: CamConfig, dual: bool, out_file: str | None = None) -> MapRequest:
        branches = tuple(b for b in cam.branches if dual or b == "emotion")
        return cls(
            branches,
            tuple(cam.methods),
            cam.layer,
            cam.min_cam_side,
            cam.target,
            cam.ig_steps,
            out_file,
        )

    def settings(self) -> dict[str, Any]:
        """The settings that shape the maps (part of the fold spec with ``when: fold``)."""
        return {
            "branches": list(self.branches),
            "methods": list(self.methods),
            "layer": self.layer,
            "min_cam_side": self.min_cam_side,
            "target": self.target,
            "ig_steps": self.ig_steps,
        }


def explain_fold(
    net: DualContextNet,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
    truth: torch.Tensor,
    predicted: torch.Tensor,
    branch: str,
    request: MapRequest,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """The maps of one branch for one fold's test samples.

    Args:
        net: the fold's trained network (eval mode is set here).
        flow: ``(n, 3, H, W)`` float32 test flow images; context_input: ``(n, 3, H', W')``
            or ``None``; truth, predicted: ``(n,)`` int64; all on the network's device.
        branch: ``emotion`` or ``context``.

    Returns:
        ``(maps, targets, info)``: method → ``(n, S, S)`` float32 non-negative maps at
        the branch's input side S; the ``(n,)`` int64 classes explained; the layer
        used, its feature-map side and the input side.
    """
    from ethnicmer.explain.gradcam import choose_layer, grad_cam
    from ethnicmer.explain.saliency import integrated_gradients

    net.eval()
    side = flow.shape[-1] if branch == "emotion" else context_input.shape[-1]  # type: ignore[union-attr]
    name, feature_side = "", side  # Integrated Gradients attributes to input pixels
    if "gradcam" in request.methods:
        name, feature_side = choose_layer(net, branch, side, request.layer, request.min_cam_side)
    target = truth if request.target == "truth" else predicted
    maps = {}
    for method in request.methods:
        maps[method] = (
            grad_cam(net, flow, context_input, target, branch, name)
            if method == "gradcam"
            else integrated_gradients(net, flow, context_input, target, branch, request.ig_steps)
        )
    info = {"layer": name, "feature_side": feature_side, "input_side": side}
    return maps, target.cpu().numpy(), info


def save_fold_maps(
    net: DualContextNet,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
    truth: torch.Tensor,
    predicted: torch.Tensor,
    request: MapRequest,
) -> Path:
    """Make and write every branch's maps of one fold (``cam.when: fold``); the file
    holds ``<branch>/<method>`` maps, ``<branch>/targets``, ``predicted`` and ``info``."""
    from ethnicmer.io import save_npz_atomic

    assert request.out_file is not None
    arrays: dict[str, np.ndarray] = {"predicted": predicted.cpu().numpy()}
    infos = {}
    for branch in request.branches:
        maps, targets, info = explain_fold(
            net, flow, context_input, truth, predicted, branch, request
        )
        for method, values in maps.items():
            arrays[f"{branch}/{method}"] = values
        arrays[f"{branch}/targets"] = targets
        infos[branch] = info
    arrays["info"] = np.array(json.dumps(infos))
    return save_npz_atomic(request.out_file, **arrays)


def load_fold_maps(path: Path, branch: str, methods: list[str]) -> dict[str, Any]:
    """One fold's saved maps of ``branch``: ``maps`` (method → array), ``targets``,
    ``predicted``, ``info``.

    Raises:
        ModelError: the file is missing, unreadable, or lacks the branch or a method.
    """
    from ethnicmer.errors import ModelError

    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{path}: the fold's activation maps are missing or unreadable ({exc}); re-run the "
            "benchmark stage (cam.when: fold makes them while the fold trains)"
        ) from None
    missing = [m for m in methods if f"{branch}/{m}" not in stored]
    if missing or f"{branch}/targets" not in stored:
        raise ModelError(
            f"{path}: no {branch} maps of {missing or methods}; re-run the benchmark stage"
        )
    return {
        "maps": {m: stored[f"{branch}/{m}"] for m in methods},
        "targets": stored[f"{branch}/targets"],
        "predicted": stored["predicted"],
        "info": json.loads(str(stored["info"]))[branch],
    }
