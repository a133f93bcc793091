"""Stronger honest models (issue 18): small-input backbones, flow-aware augmentation,
training options, ensembles and nested selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ethnicmer.config import AugmentConfig, ModelConfig, TrainingOptions, load_config
from ethnicmer.evaluation.augment import augment_flow, draw_transforms, mirror_flow, mix_batch
from ethnicmer.evaluation.training import TrainSettings, build_model, predict, train_model
from ethnicmer.pipeline import library_versions, run_stage
from ethnicmer.stages import BENCHMARK, DATABASE
from tests.conftest import tiny_benchmark_config


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one torch thread (no oversubscription on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "name", ["ststnet", "off_apexnet", "resnet_small_w16", "resnet18_small", "timm:resnet10t"]
)
def test_small_input_backbones_give_features_at_28_and_64_px(name: str):
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="m", emotion_backbone=name), 2)
    for side in (28, 64):
        logits = net(torch.rand(4, 3, side, side))["emotion"]
        assert logits.shape == (4, 3) and torch.isfinite(logits).all()


def _field(size: int = 33) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(
        torch.arange(size).float() - size // 2,
        torch.arange(size).float() - size // 2,
        indexing="ij",
    )
    flow = torch.zeros(1, 3, size, size)
    flow[0, 0] = 1.0  # a uniform rightward motion
    flow[0, 2] = torch.exp(-((xx - 8) ** 2 + yy**2) / 4)  # a strain blob right of centre
    return flow, xx, yy


def _where(image: torch.Tensor) -> tuple[int, int]:
    size = image.shape[-1]
    iy, ix = divmod(int(image.argmax()), size)
    return ix - size // 2, iy - size // 2


def test_flow_aware_transforms_move_pixels_and_vectors_together():
    flow, _, _ = _field()
    none = {"flip": torch.tensor([False]), "scale": torch.ones(1), "angle": torch.zeros(1)}
    rotated = augment_flow(
        flow, {**none, "angle": torch.tensor([math.pi / 2]), "shift": torch.zeros(1, 2)}, "signed"
    )
    assert _where(rotated[0, 2]) == (0, 8)  # content turned by 90° (y down) ...
    assert rotated[0, 1].mean() == pytest.approx(1.0, abs=1e-4)  # ... and u → v
    assert rotated[0, 0].abs().max() < 1e-4
    mirrored = augment_flow(
        flow, {**none, "flip": torch.tensor([True]), "shift": torch.zeros(1, 2)}, "signed"
    )
    assert _where(mirrored[0, 2]) == (-8, 0) and mirrored[0, 0].mean() == pytest.approx(-1.0)
    minmax = flow.clone()
    minmax[0, 0] = 0.7
    flipped = augment_flow(
        minmax, {**none, "flip": torch.tensor([True]), "shift": torch.zeros(1, 2)}, "minmax"
    )
    assert flipped[0, 0].mean() == pytest.approx(0.3)  # u_norm → 1 − u_norm
    shifted = augment_flow(flow, {**none, "shift": torch.tensor([[3.0 / 33, 0.0]])}, "signed")
    assert _where(shifted[0, 2]) == (11, 0)
    with pytest.raises(ValueError, match="rotate_degrees needs flows in pixels"):
        AugmentConfig(rotate_degrees=10)
    draws = draw_transforms(
        64, AugmentConfig(hflip=True, scale=0.1, translate=2), torch.Generator().manual_seed(0), 28
    )
    assert 0.3 < draws["flip"].float().mean() < 0.7 and draws["scale"].min() >= 0.9


def test_test_time_mirror_averages_the_image_and_its_mirror():
    flow, _, _ = _field()
    minmax = flow.clone()
    minmax[0, 0] = 0.7
    mirrored = mirror_flow(minmax, "minmax")
    assert mirrored[0, 0].mean() == pytest.approx(0.3)  # u_norm → 1 − u_norm
    assert _where(mirrored[0, 2]) == (-8, 0)  # the strain blob moves to the left
    assert torch.equal(mirror_flow(mirrored, "minmax"), minmax)  # exact: no resampling
    assert mirror_flow(flow, "signed")[0, 0].mean() == pytest.approx(-1.0)
    # the same pixels as the training augmentation's mirror
    none = {"scale": torch.ones(1), "angle": torch.zeros(1), "shift": torch.zeros(1, 2)}
    trained = augment_flow(minmax, {**none, "flip": torch.tensor([True])}, "minmax")
    assert torch.allclose(trained, mirrored, atol=1e-5)

    torch.manual_seed(0)
    net = build_model(ModelConfig(name="m", emotion_backbone="ststnet"), 2)
    x = torch.rand(6, 3, 28, 28)
    options = TrainingOptions(augment=AugmentConfig(hflip=True), test_flip=True)
    both, _ = predict(net, x, None, options=options)
    plain, _ = predict(net, x, None)
    mirror, _ = predict(net, mirror_flow(x, "minmax"), None)
    assert np.allclose(both, (plain + mirror) / 2, atol=1e-6)
    assert not np.allclose(both, plain)
    with pytest.raises(ValueError, match=r"test_flip .* needs a model trained on mirrored"):
        TrainingOptions(test_flip=True)


def test_mixing_keeps_labels_accountable():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.rand(8, 3, 28, 28)
    (mixed, _), partner, lam = mix_batch([x, None], "mixup", 0.4, generator)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])
    rgb = torch.rand(8, 3, 56, 56)  # a context input of another size: the same region
    (cut, cut_rgb), partner, lam = mix_batch([x, rgb], "cutmix", 1.0, generator)
    changed = (cut != x).any(dim=1).float().mean(dim=(1, 2))
    changed_rgb = (cut_rgb != rgb).any(dim=1).float().mean(dim=(1, 2))
    assert 0 <= lam <= 1 and changed.max() <= 1 - lam + 1e-6
    assert float(changed_rgb.max()) == pytest.approx(float(changed.max()), abs=0.05)


@pytest.mark.parametrize(
    "options",
    [
        {"augment": {"hflip": True, "scale": 0.1, "translate": 2}},
        {"mixup_alpha": 0.4},
        {"cutmix_alpha": 1.0},
        {"label_smoothing": 0.1, "class_balance": "loss"},
        {"class_balance": "sampler"},
        {"optimizer": "adamw", "weight_decay": 0.05, "schedule": "cosine"},
        {"schedule": "onecycle", "ema_decay": 0.9},
    ],
    ids=[
        "augment",
        "mixup",
        "cutmix",
        "smoothing+balanced-loss",
        "sampler",
        "adamw+cosine",
        "onecycle+ema",
    ],
)
def test_every_training_option_trains_and_is_seeded(options: dict):
    opts = TrainingOptions.model_validate(options)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((40, 3, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 3, 40))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = build_model(ModelConfig(name="m", emotion_backbone="ststnet"), 2)
        losses = train_model(
            net, x, None, y, None, TrainSettings(epochs=2, batch_size=8), 3, options=opts
        )
        runs.append((losses, predict(net, x[:8], None)[0]))
    assert all(np.isfinite(runs[0][0]))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])


def test_ensembles_and_nested_selection_on_a_tiny_benchmark(tiny_megc: Path, tmp_path: Path):
    motion = {
        "name": "ststnet",
        "emotion_backbone": "ststnet",
        "epochs": 2,
        "training": {"augment": {"hflip": True}, "label_smoothing": 0.1},
    }
    nested = {
        "name": "nested",
        "emotion_backbone": "ststnet",
        "selection": {
            "inner_folds": 2,
            "space": {"epochs": [1, 2], "training.label_smoothing": [0.0, 0.1]},
        },
    }
    path = tiny_benchmark_config(
        tmp_path,
        tiny_megc,
        [motion, nested],
        seeds=[0, 1],
        max_folds=3,
        save_checkpoints=False,
        ensembles=[{"name": "ststnet-x2", "members": ["ststnet"]}],
        compare=[["nested", "ststnet"]],
    )
    cfg = load_config(path)
    run_stage(DATABASE, cfg)
    run_stage(BENCHMARK, cfg)
    out = cfg.run_dir / "benchmark"
    table = pd.read_csv(out / "table5.csv").set_index("model")
    assert table.loc["ststnet-x2", "seeds"] == 1 and table.loc["ststnet", "seeds"] == 2
    assert table.loc["ststnet-x2", "context_input"] == "ensemble of ststnet"
    # the ensemble predicts the class of the mean logits over the member's seeds
    predictions = pd.read_csv(out / "predictions.csv", dtype={"subject": str})
    member = predictions[predictions["model"] == "ststnet"]
    logits = member.groupby(["dataset", "subject", "filename"])[
        ["logit_0", "logit_1", "logit_2"]
    ].mean()
    ensemble = pd.read_csv(out / "ensembles.csv", dtype={"subject": str}).set_index(
        ["dataset", "subject", "filename"]
    )
    assert (
        ensemble.loc[logits.index, "y_pred"].to_numpy() == logits.to_numpy().argmax(axis=1)
    ).all()
    # nested selection: every outer fold chose on its training subjects only
    records = sorted((out / "models" / "nested").glob("seed-*/selection/*.json"))
    assert len(records) == 2 * 3
    for record in (json.loads(p.read_text()) for p in records):
        assert len(record["candidates"]) == 4 and record["chosen"] in [
            c["values"] for c in record["candidates"]
        ]
        for split in record["inner_folds"]:
            seen = set(split["train_subjects"]) | set(split["validation_subjects"])
            assert record["fold"] not in seen and not seen & set(record["outer_test_subjects"])


RECIPE_CONFIGS = ("megc2019-best.yaml", "megc2019-best-v2.yaml", "megc2019-best-v3.yaml")


def test_real_data_recipe_configs_on_two_folds(real_data: Path, tmp_path: Path):
    """Every row, ensemble and pair of the shipped recipe configs on 2 real LOSO folds,
    2 epochs, in one study (a row both configs hold is the same row)."""
    import yaml

    configs = [
        yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / name).read_text())
        for name in RECIPE_CONFIGS
    ]
    config = configs[0]
    bench = config["stages"]["benchmark"]
    shared = ("models", "ensembles", "compare")
    for other in configs[1:]:
        extra = other["stages"]["benchmark"]
        # the rows of both run under one study's data and settings: the configs must agree
        assert other["data"] == config["data"]
        assert {k: v for k, v in extra.items() if k not in shared} == {
            k: v for k, v in bench.items() if k not in shared
        }
        assert not {e["name"] for e in extra["ensembles"]} & {e["name"] for e in bench["ensembles"]}
        names = {row["name"]: row for row in bench["models"]}
        for row in extra["models"]:
            assert names.get(row["name"], row) == row  # one name, one row
        bench["models"] += [row for row in extra["models"] if row["name"] not in names]
        bench["ensembles"] += extra["ensembles"]
        bench["compare"] += extra["compare"]
    config["runs_dir"] = str(tmp_path / "runs")
    config["stages"].pop("report")
    bench.update({"max_folds": 2, "bootstrap": 20, "seeds": [0]})
    for row in bench["models"]:
        row["epochs"] = 2
    path = tmp_path / "recipes.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)
    run_stage(DATABASE, cfg)
    run_stage(BENCHMARK, cfg)
    out = cfg.run_dir / "benchmark"
    table = pd.read_csv(out / "table5.csv").set_index("model")
    rows = [row["name"] for row in bench["models"]]
    ensembles = [e["name"] for e in bench["ensembles"]]
    assert list(table.index) == rows + ensembles
    assert {
        "ststnet-dual-apex",
        "ststnet-recipe2",
        "off_apexnet-recipe2",
        "off_apexnet-recipe",
    } <= set(rows)
    assert table["macro_f1"].between(0, 1).all()
    for ensemble in bench["ensembles"]:
        members = ", ".join(ensemble["members"])
        assert table.loc[ensemble["name"], "context_input"] == f"ensemble of {members}"
    predictions = pd.read_csv(out / "predictions.csv", dtype={"subject": str})
    assert set(predictions["fold"]) == {"casme2/sub01", "casme2/sub02"}
    assert predictions.groupby("model").size().nunique() == 1  # every row, every sample
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert len(comparisons) == len(bench["compare"])
    assert comparisons["evidence"].str.startswith("single seed").all()
    for row in bench["models"]:  # each fold spec records the row's options and libraries
        spec = json.loads((out / "models" / row["name"] / "seed-0" / "spec.json").read_text())
        assert spec["model"]["training"]["test_flip"] == row["training"].get("test_flip", False)
        assert spec["libraries"]["torch"] == library_versions(("torch",))["torch"]
