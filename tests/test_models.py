"""Backbones and the dual-context network (paper III-C, Eq. 1-4, 8)."""

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from ethnicmer.errors import ModelError
from ethnicmer.models.backbones import create_backbone
from ethnicmer.models.dual import DualContextNet


@pytest.mark.parametrize(
    ("name", "size", "dim"),
    [("resnet18", 28, 512), ("resnet18", 64, 512), ("tiny_vit_5m_224", 32, 320)],
)
def test_backbone_features(name, size, dim):
    backbone = create_backbone(name, "none")
    assert backbone.feature_dim == dim
    assert backbone(torch.zeros(2, 3, size, size)).shape == (2, dim)


def test_unknown_backbone():
    with pytest.raises(ModelError, match="unknown backbone 'vgg'"):
        create_backbone("vgg")


@pytest.mark.parametrize("name", ["resnet18", "tiny_vit_5m_224"])
def test_imagenet_weights_offline_is_a_clear_error(
    name, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    with pytest.raises(ModelError) as info:
        create_backbone(name, "imagenet")
    message = str(info.value)
    assert f"cannot load ImageNet weights for {name}" in message
    assert "'none'" in message and "local state-dict file" in message


def test_weights_from_local_file(tmp_path: Path):
    torch.manual_seed(1)
    source = create_backbone("resnet18", "none")
    path = tmp_path / "resnet18.pth"
    torch.save(source.body.state_dict(), path)
    torch.manual_seed(2)
    loaded = create_backbone("resnet18", str(path))
    for a, b in zip(
        source.body.state_dict().values(), loaded.body.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    with pytest.raises(ModelError, match="does not exist"):
        create_backbone("resnet18", str(tmp_path / "missing.pth"))
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot read weights file"):
        create_backbone("resnet18", str(tmp_path / "bad.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "small.pth")
    with pytest.raises(ModelError, match="does not fit"):
        create_backbone("resnet18", str(tmp_path / "small.pth"))


def test_dual_model_has_two_backbones_without_weight_sharing():
    emotion, context = create_backbone("resnet18"), create_backbone("resnet18")
    net = DualContextNet(emotion, context)
    assert net.has_context
    emotion_ids = {id(p) for p in net.emotion_backbone.parameters()}
    assert emotion_ids.isdisjoint({id(p) for p in net.context_backbone.parameters()})
    with pytest.raises(ValueError, match="must not share weights"):
        DualContextNet(emotion, emotion)


def test_dual_forward_and_loss_eq4():
    torch.manual_seed(0)
    net = DualContextNet(
        create_backbone("resnet18"), create_backbone("tiny_vit_5m_224"), fusion="concat"
    )
    flow, rgb = torch.rand(4, 3, 28, 28), torch.rand(4, 3, 32, 32)
    out = net(flow, rgb)
    assert (
        out["emotion"].shape == (4, 3)
        and out["context"].shape == (4, 2)
        and out["fusion"].shape == (4, 3)
    )
    assert net.fusion_head.in_features == 512 + 320  # concat(f_emo, f_eth)
    y, c = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 1, 0])
    expected = (
        F.cross_entropy(out["emotion"], y)
        + F.cross_entropy(out["context"], c)
        + F.cross_entropy(out["fusion"], y)
    )
    assert torch.allclose(net.loss(out, y, c), expected)
    weighted = net.loss(out, y, c, (1.0, 0.0, 2.0))
    assert torch.allclose(
        weighted, F.cross_entropy(out["emotion"], y) + 2 * F.cross_entropy(out["fusion"], y)
    )
    assert torch.equal(net.prediction_logits(out), out["fusion"])


def test_mean_fusion_projects_mismatched_features():
    net = DualContextNet(
        create_backbone("resnet18"), create_backbone("tiny_vit_5m_224"), fusion="mean"
    )
    out = net(torch.rand(2, 3, 28, 28), torch.rand(2, 3, 32, 32))
    assert out["fusion"].shape == (2, 3) and net.fusion_head.in_features == 512


def test_motion_only_baseline():
    net = DualContextNet(create_backbone("resnet18"))
    out = net(torch.rand(2, 3, 28, 28))
    assert set(out) == {"emotion"} and not net.has_context
    assert torch.equal(net.prediction_logits(out), out["emotion"])
