"""Activation maps of one benchmark row, each test sample by its own fold's model.

Grad-CAM (captum ``LayerGradCam``, the paper's maps) and Integrated Gradients
from a motion-free baseline (:mod:`ethnicmer.explain.saliency`), computed with the
fold model that never saw the sample's subject. The fold models are checked
against the benchmark's fold spec first: checkpoints trained on other inputs or
settings are an error, never explained on new inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ethnicmer.config import ModelConfig, StudyConfig
from ethnicmer.devices import resolve_compute
from ethnicmer.errors import ModelError
from ethnicmer.evaluation.inputs import load_inputs
from ethnicmer.evaluation.protocols import context_labels
from ethnicmer.evaluation.training import build_model
from ethnicmer.explain.gradcam import choose_layer, grad_cam
from ethnicmer.explain.saliency import integrated_gradients
from ethnicmer.progress import log, progress
from ethnicmer.studies.benchmark import context_kind, fold_spec, row_folds, upgrade_spec


@dataclass(frozen=True)
class RowMaps:
    """Activation maps of one row and branch over every sample (rows in samples order).

    Attributes:
        maps: method (``gradcam``, ``integrated_gradients``) → ``(N, S, S)`` float32
            non-negative maps at the branch's input side S.
        targets: ``(N,)`` int64 class explained; predicted: ``(N,)`` int64 prediction.
        flow: ``(N, 3, H, W)`` float32 flow images the row reads (figure backgrounds).
        info: target layer, its feature-map side, input side, checks.
    """

    maps: dict[str, np.ndarray]
    targets: np.ndarray
    predicted: np.ndarray
    flow: np.ndarray
    info: dict[str, Any]


def explain_row(
    cfg: StudyConfig,
    model: ModelConfig,
    branch: str,
    samples: pd.DataFrame,
    bench_dir: Path,
) -> RowMaps:
    """Every configured map (Grad-CAM, Integrated Gradients) of one row and branch,
    each test sample by the model of its own fold."""
    bench = cfg.stages.benchmark
    cam = cfg.stages.cam
    assert bench is not None and cam is not None
    seed = (bench.seeds or [cfg.seed])[0]
    size = model.input_size or bench.input_size
    inputs_dir = cfg.run_dir / "inputs"
    flow = torch.from_numpy(load_inputs(samples, "flow", size, inputs_dir))
    context_input = None
    classes: list[str] = []
    if model.context != "none":
        kind = context_kind(model)
        if kind == "flow":
            context_input = flow
        else:
            rgb = model.rgb_size or bench.rgb_size
            context_input = torch.from_numpy(load_inputs(samples, kind, rgb, inputs_dir))
        _, classes = context_labels(samples, model.context, seed)
    labels = samples["label_id"].to_numpy(dtype=np.int64)
    folds = row_folds(samples, bench, model)
    model_dir = bench_dir / "models" / model.name / f"seed-{seed}"
    check_spec(model_dir, fold_spec(cfg, model, seed, samples))
    side = flow.shape[-1] if branch == "emotion" else context_input.shape[-1]  # type: ignore[union-attr]
    maps = {m: np.full((len(samples), side, side), np.nan, np.float32) for m in cam.methods}
    targets = np.full(len(samples), -1, dtype=np.int64)
    predicted = np.full(len(samples), -1, dtype=np.int64)
    layer_info: dict[str, Any] = {}
    mismatched = 0
    compute = resolve_compute(cam.device)
    device = torch.device(compute.device)
    for fold in progress(folds, f"activation maps {model.name} ({branch})", every=1):
        checkpoint = model_dir / "checkpoints" / f"{fold.slug}.pt"
        if not checkpoint.is_file():
            raise ModelError(
                f"{checkpoint}: fold model missing for {fold.test_subject}; re-run the benchmark "
                "with stages.benchmark.save_checkpoints: true"
            )
        torch.manual_seed(0)
        net = build_model(model, max(len(classes), 2))
        try:
            net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError) as exc:
            raise ModelError(f"{checkpoint}: cannot load the fold model ({exc})") from exc
        net.eval().to(device)
        if not layer_info:
            name, layer_side = choose_layer(net, branch, side, cam.layer, cam.min_cam_side)
            layer_info = {"layer": name, "feature_side": layer_side, "input_side": side}
        rows = torch.from_numpy(fold.test)
        test_flow = flow[rows].to(device)
        test_ctx = None if context_input is None else context_input[rows].to(device)
        with torch.no_grad():
            logits = net.prediction_logits(net(test_flow, test_ctx))
        pred = logits.argmax(dim=1).cpu()
        fold_file = model_dir / "folds" / f"{fold.slug}.csv"
        if fold_file.is_file():
            saved = pd.read_csv(fold_file, dtype={"subject": str})["y_pred"].to_numpy()
            mismatched += int((saved != pred.numpy()).sum())
        target = (torch.from_numpy(labels[fold.test]) if cam.target == "truth" else pred).to(
            device
        )
        for method in cam.methods:
            maps[method][fold.test] = (
                grad_cam(net, test_flow, test_ctx, target, branch, layer_info["layer"])
                if method == "gradcam"
                else integrated_gradients(net, test_flow, test_ctx, target, branch, cam.ig_steps)
            )
        targets[fold.test] = target.cpu().numpy()
        predicted[fold.test] = pred.numpy()
    layer_info["predictions_differing_from_benchmark"] = mismatched
    if mismatched:
        log(
            f"{model.name}: {mismatched} prediction(s) from the loaded fold models differ from the "
            "benchmark's fold files (thread count or library version changed)"
        )
    return RowMaps(maps, targets, predicted, flow.numpy(), layer_info)


def check_spec(model_dir: Path, expected: dict[str, Any]) -> None:
    """The fold models must have been trained on exactly these inputs and settings.

    Raises:
        ModelError: the row's ``spec.json`` is missing or differs (names the keys).
    """
    spec_file = model_dir / "spec.json"
    try:
        found = upgrade_spec(json.loads(spec_file.read_text()))
    except (OSError, json.JSONDecodeError):
        raise ModelError(
            f"{spec_file}: missing or unreadable; re-run the benchmark stage"
        ) from None
    # where the models trained (CPU or GPU) does not matter for explaining them
    found, expected = (
        {k: v for k, v in spec.items() if k != "compute"} for spec in (found, expected)
    )
    if found != expected:
        changed = sorted(
            k for k in found.keys() | expected.keys() if found.get(k) != expected.get(k)
        )
        raise ModelError(
            f"{model_dir}: its fold models were trained with other {', '.join(changed)} than the "
            "current samples and settings; re-run the benchmark stage (`ethnicmer benchmark "
            "CONFIG`) before the maps"
        )
