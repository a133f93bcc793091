"""Grad-CAM of the dual-context network with captum (paper IV-C, Figures 3–4).

Grad-CAM (Selvaraju et al., ICCV 2017) weights a layer's feature maps by the
spatially averaged gradient of the target logit and keeps the positive part. We
use captum's ``LayerGradCam`` on a backbone stage and upsample the map
bilinearly to the branch's input size. The target logit is the predicting head
(fusion head of dual models, emotion head of the motion-only baseline), so a
map answers "where in this branch's input did the evidence for the class come
from".

At the small inputs a CPU allows, the last stage has almost no spatial extent
(ResNet-18 ``layer4`` is 1×1 at 28 px), which makes Grad-CAM uniform. ``layer:
auto`` therefore takes the deepest stage whose feature map is at least
``min_cam_side`` pixels on a side (the paper's 224 px inputs give ``layer4`` at
7×7, the same rule); the chosen layer and its side are written beside the maps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ethnicmer.errors import ConfigError
from ethnicmer.models.dual import DualContextNet

CANDIDATE_LAYERS: dict[str, list[str]] = {
    "resnet18": ["layer1", "layer2", "layer3", "layer4"],
    "resnet18_small": ["layer1", "layer2", "layer3", "layer4"],
    "tiny_vit_5m_224": ["stages.0", "stages.1", "stages.2", "stages.3"],
    "tiny_vit_21m_224": ["stages.0", "stages.1", "stages.2", "stages.3"],
    "efficientnet_lite0": [f"blocks.{i}" for i in range(7)],
    "ststnet": ["merged"],
    "off_apexnet": ["u.3", "v.3"],
}
"""Stages of each backbone's body that Grad-CAM may target, shallow to deep. Other
backbones (``resnet_small_w<W>``, ``timm:<name>``) offer every module whose output is a
4-D feature map (:func:`candidate_layers`)."""


def candidate_layers(backbone: torch.nn.Module, input_size: int) -> dict[str, int]:
    """Grad-CAM targets of a backbone and their feature-map sides at ``input_size``:
    its listed stages, else every named module with a 4-D output, in forward order."""
    body = backbone.body  # type: ignore[attr-defined]
    listed = CANDIDATE_LAYERS.get(backbone.name)  # type: ignore[arg-type]
    names = listed if listed is not None else [n for n, _ in body.named_modules() if n]
    sides: dict[str, int] = {}
    handles = []
    for name in names:
        module = body.get_submodule(name)

        def hook(_m: torch.nn.Module, _i: object, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and name not in sides:
                sides[name] = int(min(out.shape[-2:]))

        handles.append(module.register_forward_hook(hook))
    parameter = next(body.parameters())
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():  # a dummy input on the backbone's device and dtype
            backbone(
                torch.zeros(
                    1, 3, input_size, input_size, device=parameter.device, dtype=parameter.dtype
                )
            )
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    return sides


def _branch(net: DualContextNet, branch: str) -> torch.nn.Module:
    if branch == "emotion":
        return net.emotion_backbone
    if net.context_backbone is None:
        raise ConfigError("branch 'context' needs a dual-context row (context is not 'none')")
    return net.context_backbone


def layer_sides(net: DualContextNet, branch: str, input_size: int) -> dict[str, int]:
    """Feature-map side (pixels) of each candidate layer of ``branch`` at ``input_size``."""
    return candidate_layers(_branch(net, branch), input_size)


def choose_layer(
    net: DualContextNet, branch: str, input_size: int, layer: str, min_side: int
) -> tuple[str, int]:
    """The target layer name (relative to the backbone body) and its feature-map side.

    Args:
        layer: a name from :data:`CANDIDATE_LAYERS` or ``"auto"`` (the deepest layer
            with a side of at least ``min_side``; the largest map if none is).

    Raises:
        ConfigError: ``layer`` is not a candidate of the branch's backbone.
    """
    sides = layer_sides(net, branch, input_size)
    if layer == "auto":
        wide = [name for name, side in sides.items() if side >= min_side]
        name = wide[-1] if wide else max(sides, key=lambda n: sides[n])
        return name, sides[name]
    if layer not in sides:
        backbone = _branch(net, branch).name
        raise ConfigError(
            f"stages.cam.layer {layer!r} is not a layer of {backbone}; choose 'auto' or one of "
            f"{list(sides)}"
        )
    return layer, sides[layer]


def branch_forward(
    net: DualContextNet,
    branch: str,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
) -> tuple[Callable[..., torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """The predicting head as a function of one branch's input, the other held fixed.

    Returns:
        ``(forward, primary, secondary)``: ``forward(primary, secondary)`` gives the
        ``(N, 3)`` emotion logits; ``primary`` is the explained input (the flow image
        for ``"emotion"``, the context input for ``"context"``).
    """
    if branch == "emotion":

        def forward(x: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
            return net.prediction_logits(net(x, ctx))

        return forward, flow, context_input
    if context_input is None:
        raise ConfigError("branch 'context' needs a dual row (this row has no context input)")

    def forward_context(x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        return net.prediction_logits(net(other, x))

    return forward_context, context_input, flow


def grad_cam(
    net: DualContextNet,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
    targets: torch.Tensor,
    branch: str,
    layer: str,
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM maps of the predicting head for one branch, at the branch's input size.

    Args:
        net: a trained network (put in eval mode here).
        flow: ``(N, 3, H, W)`` float32 flow images.
        context_input: ``(N, 3, H', W')`` float32 context inputs (dual rows) or ``None``.
        targets: ``(N,)`` int64 emotion class to explain per sample.
        branch: ``"emotion"`` (maps on the flow image, ``(N, H, W)``) or ``"context"``
            (maps on the context input, ``(N, H', W')``).
        layer: target layer inside the branch's backbone body (see :func:`choose_layer`).

    Returns:
        ``(N, side, side)`` float32 non-negative maps (ReLU of Grad-CAM, bilinear
        upsampling; unnormalised: a map of zeros means no positive evidence).

    Raises:
        ConfigError: ``branch="context"`` on a motion-only row.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    module = _branch(net, branch).body.get_submodule(layer)
    net.eval()
    forward, primary, secondary = branch_forward(net, branch, flow, context_input)
    explainer = LayerGradCam(forward, module)
    side = primary.shape[-1]
    maps = []
    with torch.enable_grad():
        for start in range(0, len(primary), batch_size):
            part = slice(start, start + batch_size)
            extra = None if secondary is None else secondary[part]
            attribution = explainer.attribute(
                primary[part].clone(),
                target=targets[part],
                additional_forward_args=(extra,),
                relu_attributions=True,
            )
            upsampled = LayerAttribution.interpolate(
                attribution.detach(), (side, side), interpolate_mode="bilinear"
            )
            maps.append(upsampled[:, 0].clamp_min(0.0))
    return torch.cat(maps).detach().cpu().numpy().astype(np.float32)
