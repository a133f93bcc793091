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

from ethnicmer.config import ModelConfig, StudyConfig, candidate_config
from ethnicmer.devices import resolve_compute
from ethnicmer.errors import ModelError
from ethnicmer.evaluation.inputs import load_inputs
from ethnicmer.evaluation.protocols import Fold, context_labels
from ethnicmer.evaluation.training import build_model, predict
from ethnicmer.explain.fold_maps import MapRequest, explain_fold, load_fold_maps
from ethnicmer.pipeline import MANIFEST, read_manifest
from ethnicmer.progress import log, progress
from ethnicmer.studies.benchmark import context_kind, fold_spec, recorded_spec, row_folds


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
    check_spec(model_dir, fold_spec(cfg, model, seed, samples, with_compute=False))
    side = flow.shape[-1] if branch == "emotion" else context_input.shape[-1]  # type: ignore[union-attr]
    maps = {m: np.full((len(samples), side, side), np.nan, np.float32) for m in cam.methods}
    targets = np.full(len(samples), -1, dtype=np.int64)
    predicted = np.full(len(samples), -1, dtype=np.int64)
    layer_info: dict[str, Any] = {}
    mismatched = 0
    request = MapRequest.from_config(cam, model.context != "none")
    compute = resolve_compute(cam.device)
    device = torch.device(compute.device)
    for fold in progress(folds, f"activation maps {model.name} ({branch})", every=1):
        if cam.when == "fold":  # made inside the fold right after training
            made = load_fold_maps(model_dir / "maps" / f"{fold.slug}.npz", branch, cam.methods)
            fold_maps, target, pred, info = (
                made["maps"],
                made["targets"],
                made["predicted"],
                made["info"],
            )
        else:
            fold_maps, target, pred, info = _from_checkpoint(
                model,
                len(classes),
                model_dir,
                fold,
                flow,
                context_input,
                labels,
                branch,
                request,
                device,
            )
        layer_info = layer_info or info
        fold_file = model_dir / "folds" / f"{fold.slug}.csv"
        if fold_file.is_file():
            saved = pd.read_csv(fold_file, dtype={"subject": str})["y_pred"].to_numpy()
            mismatched += int((saved != pred).sum())
        for method in cam.methods:
            maps[method][fold.test] = fold_maps[method]
        targets[fold.test] = target
        predicted[fold.test] = pred
    layer_info["predictions_differing_from_benchmark"] = mismatched
    if mismatched:
        log(
            f"{model.name}: {mismatched} prediction(s) from the loaded fold models differ from the "
            "benchmark's fold files (thread count or library version changed)"
        )
    return RowMaps(maps, targets, predicted, flow.numpy(), layer_info)


def _from_checkpoint(
    model: ModelConfig,
    n_classes: int,
    model_dir: Path,
    fold: Fold,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
    labels: np.ndarray,
    branch: str,
    request: MapRequest,
    device: torch.device,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    """One fold's maps from its saved checkpoint (``cam.when: after``).

    Raises:
        ModelError: the checkpoint is missing or does not load into the row's network.
    """
    checkpoint = model_dir / "checkpoints" / f"{fold.slug}.pt"
    removed = model_dir / "checkpoints" / "REMOVED.txt"
    if not checkpoint.is_file() and removed.is_file():
        raise ModelError(f"{checkpoint}: {removed.read_text().strip()}")
    if not checkpoint.is_file():
        raise ModelError(
            f"{checkpoint}: fold model missing for {fold.test_subject}; re-run the benchmark "
            "with stages.benchmark.save_checkpoints: true (or use cam.when: fold)"
        )
    torch.manual_seed(0)
    if model.selection is not None:  # the network the fold's nested selection chose
        record = model_dir / "selection" / f"{fold.slug}.json"
        try:
            model = candidate_config(model, json.loads(record.read_text())["chosen"])
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{record}: the fold's selection record is missing ({exc})") from None
    net = build_model(model, max(n_classes, 2))
    try:
        net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"{checkpoint}: cannot load the fold model ({exc})") from exc
    net.eval().to(device)
    rows = torch.from_numpy(fold.test)
    test_flow = flow[rows].to(device)
    test_ctx = None if context_input is None else context_input[rows].to(device)
    # the fold's own prediction (with the row's test-time mirroring, if any)
    logits, _ = predict(
        net,
        test_flow,
        test_ctx,
        options=model.training,
        context_is_flow=context_kind(model) == "flow",
    )
    pred = torch.from_numpy(logits.argmax(axis=1)).to(device)
    truth = torch.from_numpy(labels[fold.test]).to(device)
    maps, target, info = explain_fold(net, test_flow, test_ctx, truth, pred, branch, request)
    return maps, target, pred.cpu().numpy(), info


def _benchmark_manifest(model_dir: Path) -> tuple[dict[str, Any], str]:
    """The manifest of the benchmark stage that trained (or last kept) the folds in
    ``model_dir`` (``<run>/benchmark/models/<row>/seed-<s>``), ``{}`` where missing or
    unreadable, and its path for the log."""
    path = model_dir.parents[2] / MANIFEST
    return read_manifest(path), str(path)


def check_spec(model_dir: Path, expected: dict[str, Any]) -> None:
    """The fold models must have been trained on exactly these inputs and settings.

    Raises:
        ModelError: the row's ``spec.json`` is missing or differs (names the keys).
    """
    spec_file = model_dir / "spec.json"
    try:
        found = recorded_spec(model_dir, *_benchmark_manifest(model_dir))
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
