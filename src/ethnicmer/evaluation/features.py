"""Off-the-shelf features: a frozen ImageNet backbone applied to flow images.

Paper IV-A: the prima facie study uses "ResNet-18 off-the-shelf features" of the
optical-flow images with a random forest. Flow images (u, v, ε in [0, 1]) are
resized to ``size`` (bicubic), normalised with the ImageNet mean and standard
deviation, and passed through the frozen backbone in eval mode; the
global-average-pooled features ``(N, D)`` float32 are cached on disk per
(backbone, weights, size, the samples' keys and flow-image contents).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ethnicmer.devices import resolve_compute
from ethnicmer.digests import sha256_file
from ethnicmer.evaluation.inputs import input_digest, load_inputs
from ethnicmer.io import save_npy_atomic
from ethnicmer.models.backbones import create_backbone
from ethnicmer.progress import progress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@torch.no_grad()
def extract_features(
    samples: pd.DataFrame,
    backbone: str,
    weights: str,
    size: int,
    cache_dir: Path,
    batch_size: int = 32,
    device: str = "auto",
) -> np.ndarray:
    """Frozen-backbone features of every sample's flow image, in table order.

    Args:
        samples: the samples table (needs ``flow_path``).
        backbone: a name from :data:`ethnicmer.models.backbones.BACKBONES`.
        weights: ``imagenet`` or a local file (``none`` gives random features).
        size: input side in pixels.
        cache_dir: where inputs and features are cached.
        device: where the backbone runs (:mod:`ethnicmer.devices`; part of the cache key:
            a GPU's features differ from the CPU's in the last digits).

    Returns:
        ``(N, D)`` float32 features.

    Raises:
        ModelError: the backbone's weights cannot be had.
        DataError: a sample has no flow image.
    """
    inputs = input_digest(samples, "flow", size)
    compute = resolve_compute(device)
    weights_id = sha256_file(weights) if Path(weights).is_file() else weights
    # the CPU keeps the key older caches had
    where = "" if compute.kind == "cpu" else f"|{compute.kind}"
    key = f"{backbone}|{weights_id}|{size}|{inputs}{where}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"features_{backbone}_{size}_{tag}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
            if cached.shape[0] == len(samples):
                return cached
        except (OSError, ValueError):
            pass
    target = torch.device(compute.device)
    images = torch.from_numpy(load_inputs(samples, "flow", size, Path(cache_dir)))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(target)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(target)
    model = create_backbone(backbone, weights).eval().to(target)
    out = []
    starts = range(0, len(images), batch_size)
    for start in progress(starts, f"{backbone} features"):
        batch = images[start : start + batch_size].to(target)
        out.append(model((batch - mean) / std).cpu().numpy())
    features = np.concatenate(out).astype(np.float32)
    save_npy_atomic(path, features)
    return features
