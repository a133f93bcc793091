"""Backbones for small (28–112 px) optical-flow images, written for ethnicmer.

Each is a :class:`~ethnicmer.models.backbones.Backbone`: ``(N, 3, H, W)`` float32
flow images (u, v, strain) → ``(N, D)`` float32 features; the dual-context network
adds its heads. Sources:

- :class:`STSTNet` — Liong, Gan, See, Khor, Huang, *Shallow Triple Stream
  Three-dimensional CNN (STSTNet) for Micro-expression Recognition*, FG 2019: three
  parallel shallow streams (3×3 convolutions with 3, 5 and 8 filters over the
  u, v, strain image, ReLU, batch norm, 3×3 max-pool of stride 3, dropout 0.5),
  concatenated (16 maps), 2×2 average-pooled to 5×5: D = 400 at 28 px (any side is
  pooled to 5×5).
- :class:`OffApexNet` — Gan, Liong, Yau, Huang, Tan, *OFF-ApexNet on
  micro-expression recognition system*, Signal Processing: Image Communication
  2019: two streams over the horizontal and vertical flow (u, v; no strain), each
  5×5 conv (6) → 2×2 max-pool → 5×5 conv (16) → 2×2 max-pool (adaptively pooled to
  7×7, the paper's size at 28 px, so other sides work), concatenated and passed
  through two fully connected layers of 1024 (ReLU, dropout 0.5): D = 1024.
- :func:`resnet18_small` — torchvision's ResNet-18 with the stem used for 32 px
  images (He et al., 2016, CIFAR experiments): a 3×3 stride-1 first convolution and
  no max-pool, so a 28 px input keeps 28×28 maps in the first stage: D = 512.
- :class:`SmallResNet` (``resnet_small_w<W>``) — the same shape (3×3 stem, no
  max-pool, four stages of basic blocks, strides 1, 2, 2, 2) with widths W, 2W, 4W,
  8W and one block per stage: a CPU-sized ResNet (W = 16: 0.31 M weights, about 0.4×
  the paper ResNet-18's multiply-adds at 28 px and 1/35 of ``resnet18_small``'s):
  D = 8W, for any width W (``resnet_small_w8``, ``_w16``, ``_w32``, ...).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ethnicmer.models.backbones import Backbone


class STSTNet(nn.Module):
    """The three shallow streams of STSTNet, up to its 400 pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3, width, kernel_size=3, padding=2),
                nn.ReLU(),
                nn.BatchNorm2d(width),
                nn.MaxPool2d(kernel_size=3, stride=3, padding=1),
                nn.Dropout(0.5),
            )
            for width in (3, 5, 8)
        )
        self.merged = nn.Identity()  # the 16 concatenated maps (a Grad-CAM target)
        self.pool = nn.AdaptiveAvgPool2d(5)  # 2×2 average pool at 28 px (10 → 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, 400)``."""
        merged = self.merged(torch.cat([stream(images) for stream in self.streams], dim=1))
        return self.pool(merged).flatten(1)


class OffApexNet(nn.Module):
    """OFF-ApexNet's two flow streams (u, v) and its two 1024-unit layers."""

    def __init__(self, hidden: int = 1024) -> None:
        super().__init__()

        def stream() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(1, 6, kernel_size=5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(6, 16, kernel_size=5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.AdaptiveAvgPool2d(7),  # 7×7 at 28 px
                nn.Flatten(),
            )

        self.u, self.v = stream(), stream()
        self.fc = nn.Sequential(
            nn.Linear(2 * 16 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` (u, v, strain; strain unused) → ``(N, 1024)``."""
        return self.fc(torch.cat([self.u(images[:, :1]), self.v(images[:, 1:2])], dim=1))


class _Block(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
            nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
        )
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.skip = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class SmallResNet(nn.Module):
    """A narrow ResNet for small flow images (see the module doc)."""

    def __init__(self, width: int = 16, blocks: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        inputs = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            outputs = width * 2**stage
            for b in range(blocks):
                layers.append(_Block(inputs, outputs, stride if b == 0 else 1))
                inputs = outputs
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = inputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, 8·width)``."""
        return self.pool(self.features(images)).flatten(1)


def resnet18_small() -> nn.Module:
    """torchvision ResNet-18 with a 3×3 stride-1 stem and no max-pool (features, D = 512)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


SMALL_BACKBONES = (
    "ststnet",
    "off_apexnet",
    "resnet18_small",
    "resnet_small_w16",
    "resnet_small_w32",
)
"""The small-input backbones of this module (trained from scratch: ``weights: none``);
``resnet_small_w<W>`` is accepted for any width W (:func:`is_small`)."""

_SMALL_NAME = re.compile(r"ststnet|off_apexnet|resnet18_small|resnet_small_w\d+")


def is_small(name: str) -> bool:
    """Whether ``name`` is a backbone :func:`create_small` builds (any ``resnet_small_w<W>``)."""
    return _SMALL_NAME.fullmatch(name) is not None


def create_small(name: str) -> Backbone:
    """Build one of :data:`SMALL_BACKBONES` (or any name :func:`is_small` accepts).

    Raises:
        KeyError: an unknown name (the caller names the options).
    """
    if name == "ststnet":
        return Backbone(name, STSTNet(), 400)
    if name == "off_apexnet":
        return Backbone(name, OffApexNet(), 1024)
    if name == "resnet18_small":
        return Backbone(name, resnet18_small(), 512)
    if name.startswith("resnet_small_w"):
        body = SmallResNet(width=int(name.removeprefix("resnet_small_w")))
        return Backbone(name, body, body.feature_dim)
    raise KeyError(name)
