"""Activation maps per ethnicity group (paper IV-C, Figures 3–4) as measured statistics.

The paper reads Grad-CAM maps by eye. Here every test sample of the benchmark is
explained by the model of its own LOSO fold (the model that never saw its
subject) with Grad-CAM (``methods: [gradcam]``, the paper's) and, as configured,
Integrated Gradients from a motion-free baseline (:mod:`ethnicmer.explain.saliency`;
on the simulator Grad-CAM at 28 px misses the planted styles and Integrated
Gradients finds them), the map's mass is measured in action-unit regions
(:mod:`ethnicmer.explain.au_regions`), and per emotion the groups are compared
over subjects (:mod:`ethnicmer.explain.statistics`), over all samples and within
each dataset (ethnicity and dataset are confounded in CASME II + SAMM). The
measures of one (row, branch, method, emotion, scope) are a family: ``p_holm`` adjusts
their p-values (Holm); the four claims below were stated before looking and are
judged on their own permutation p-values. The
coders' action units from the sheets are counted beside them
(:mod:`ethnicmer.studies.action_units`).

The paper's four visual claims, each mapped to one measure and direction:

- Positive: Asians show larger AU6/AU12 activation → ``au6_au12_share`` Asian > Non-Asian;
- Positive: non-Asians one-sided → ``lip_asymmetry_abs`` Non-Asian > Asian;
- Surprise: non-Asians activate AU26 → ``mouth_jaw_share`` Non-Asian > Asian;
- Surprise: Asians the upper face (AU1/2/5) → ``upper_face_share`` Asian > Non-Asian.

Outputs under ``runs/<study>/cam/`` (``<tag>`` = ``<row>_<branch>`` for Grad-CAM,
``<row>_<branch>_ig`` for Integrated Gradients): ``maps_<tag>.npz`` (sample keys,
maps, targets), ``regions_<tag>.csv`` (per-sample measures),
``landmarks.csv``, ``statistics.{csv,md,tex}``, ``claims.{csv,md,tex}``,
``attribution.{csv,md,tex}`` (per claim measure: the ethnicity effect within
dataset and the dataset effect within ethnicity, :mod:`ethnicmer.explain.attribution`),
``coded_aus.{csv,md,tex}``, ``montage_<tag>.png``, ``regions.png``,
``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from ethnicmer.config import CamConfig, ModelConfig, StudyConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.data.subjects import format_key
from ethnicmer.errors import ModelError
from ethnicmer.evaluation.inputs import load_inputs
from ethnicmer.evaluation.protocols import context_labels, loso_folds, subject_ids
from ethnicmer.evaluation.training import build_model
from ethnicmer.explain.attribution import attribute, attribution_verdict
from ethnicmer.explain.au_regions import MEASURES, landmark_regions, region_measures
from ethnicmer.explain.au_regions import template_regions as template_masks
from ethnicmer.explain.figures import montage, region_legend
from ethnicmer.explain.gradcam import choose_layer, grad_cam
from ethnicmer.explain.saliency import integrated_gradients
from ethnicmer.explain.statistics import compare_groups
from ethnicmer.flow.align import crop_landmarks
from ethnicmer.pipeline import write_json_atomic
from ethnicmer.progress import log, progress
from ethnicmer.report.tables import write_table
from ethnicmer.studies.action_units import au_feature_table

REGION_SIDE = 112
"""Maps are upsampled to this side (pixels) before measuring region shares."""

CLAIMS: list[dict[str, str]] = [
    {
        "claim": "Positive: Asians show larger AU6/AU12 activation",
        "emotion": "Positive",
        "measure": "au6_au12_share",
        "higher": "Asian",
    },
    {
        "claim": "Positive: non-Asians activate one side (AU12 asymmetry)",
        "emotion": "Positive",
        "measure": "lip_asymmetry_abs",
        "higher": "Non-Asian",
    },
    {
        "claim": "Surprise: non-Asians activate AU26 (jaw drop)",
        "emotion": "Surprise",
        "measure": "mouth_jaw_share",
        "higher": "Non-Asian",
    },
    {
        "claim": "Surprise: Asians activate the upper face (AU1/AU2/AU5)",
        "emotion": "Surprise",
        "measure": "upper_face_share",
        "higher": "Asian",
    },
]
"""The paper's visual claims (IV-C) as (emotion, measure, group expected higher)."""

ALPHA = 0.05


def _sample_landmarks(samples: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Normalised landmarks (x/W, y/H in [0, 1]) per sample, with their source.

    ``auto``: the flow stage's landmarks of the aligned crop (the face exactly as
    the flow image frames it), else dlib on the apex crop, else the template.
    """
    rows = []
    crops = samples["apex_crop_path"].fillna("") if "apex_crop_path" in samples else None
    aligned = samples["landmarks_path"].fillna("") if "landmarks_path" in samples else None
    for i in progress(range(len(samples)), "landmarks on apex crops"):
        row = samples.iloc[i]
        record: dict[str, Any] = {
            "dataset": row["dataset"],
            "subject": row["subject"],
            "filename": row["filename"],
        }
        path = "" if crops is None else crops.iloc[i]
        if mode != "template" and aligned is not None and aligned.iloc[i]:
            points = np.load(aligned.iloc[i])
            record["region_source"] = "landmarks (flow stage, onset)"
            for k in range(68):
                record[f"x{k}"], record[f"y{k}"] = points[k]
            rows.append(record)
            continue
        if mode == "template" or not path:
            record["region_source"] = "template"
            rows.append(record)
            continue
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if gray is None:
            record["region_source"] = "template (apex crop unreadable)"
            rows.append(record)
            continue
        where = format_key(row["dataset"], row["subject"], row["filename"])
        points, source = crop_landmarks(gray, f"{where} ({path})")
        record["region_source"] = f"landmarks ({source})"
        height, width = gray.shape
        for k in range(68):
            record[f"x{k}"] = points[k, 0] / width
            record[f"y{k}"] = points[k, 1] / height
        rows.append(record)
    return pd.DataFrame(rows)


def _masks(landmarks: pd.DataFrame, i: int, template: dict[str, np.ndarray]) -> dict:
    row = landmarks.iloc[i]
    if not str(row["region_source"]).startswith("landmarks"):
        return template
    points = np.array([[row[f"x{k}"], row[f"y{k}"]] for k in range(68)]) * REGION_SIDE
    return landmark_regions(points, REGION_SIDE)


def _rows(cfg: StudyConfig, cam: CamConfig) -> list[ModelConfig]:
    """The benchmark rows to explain (the config validator checked names and checkpoints)."""
    bench = cfg.stages.benchmark
    assert bench is not None
    by_name = {m.name: m for m in bench.models}
    return [by_name[n] for n in cam.models or list(by_name)]


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


def _explain_row(
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
        if model.context_input == "flow":
            context_input = flow
        else:
            rgb = model.rgb_size or bench.rgb_size
            context_input = torch.from_numpy(load_inputs(samples, "apex_rgb", rgb, inputs_dir))
        _, classes = context_labels(samples, model.context, seed)
    labels = samples["label_id"].to_numpy(dtype=np.int64)
    folds = loso_folds(samples, bench.test_subjects, bench.max_folds)
    model_dir = bench_dir / "models" / model.name / f"seed-{seed}"
    side = flow.shape[-1] if branch == "emotion" else context_input.shape[-1]  # type: ignore[union-attr]
    maps = {m: np.full((len(samples), side, side), np.nan, np.float32) for m in cam.methods}
    targets = np.full(len(samples), -1, dtype=np.int64)
    predicted = np.full(len(samples), -1, dtype=np.int64)
    layer_info: dict[str, Any] = {}
    mismatched = 0
    for fold in progress(folds, f"activation maps {model.name} ({branch})"):
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
        net.eval()
        if not layer_info:
            name, layer_side = choose_layer(net, branch, side, cam.layer, cam.min_cam_side)
            layer_info = {"layer": name, "feature_side": layer_side, "input_side": side}
        rows = torch.from_numpy(fold.test)
        test_flow = flow[rows]
        test_ctx = None if context_input is None else context_input[rows]
        with torch.no_grad():
            logits = net.prediction_logits(net(test_flow, test_ctx))
        pred = logits.argmax(dim=1)
        fold_file = model_dir / "folds" / f"{fold.slug}.csv"
        if fold_file.is_file():
            saved = pd.read_csv(fold_file, dtype={"subject": str})["y_pred"].to_numpy()
            mismatched += int((saved != pred.numpy()).sum())
        target = torch.from_numpy(labels[fold.test]) if cam.target == "truth" else pred
        for method in cam.methods:
            maps[method][fold.test] = (
                grad_cam(net, test_flow, test_ctx, target, branch, layer_info["layer"])
                if method == "gradcam"
                else integrated_gradients(net, test_flow, test_ctx, target, branch, cam.ig_steps)
            )
        targets[fold.test] = target.numpy()
        predicted[fold.test] = pred.numpy()
    layer_info["predictions_differing_from_benchmark"] = mismatched
    if mismatched:
        log(
            f"{model.name}: {mismatched} prediction(s) from the loaded fold models differ from the "
            "benchmark's fold files (thread count or library version changed)"
        )
    return RowMaps(maps, targets, predicted, flow.numpy(), layer_info)


def _measure(maps: np.ndarray, landmarks: pd.DataFrame) -> pd.DataFrame:
    template = template_masks(REGION_SIDE)
    rows = []
    for i in range(len(maps)):
        if np.isnan(maps[i]).all():
            rows.append({m: float("nan") for m in MEASURES} | {"cam_mass": float("nan")})
            continue
        big = cv2.resize(maps[i], (REGION_SIDE, REGION_SIDE), interpolation=cv2.INTER_LINEAR)
        big = np.clip(big, 0, None)
        rows.append(region_measures(big, _masks(landmarks, i, template)) | {"cam_mass": big.sum()})
    return pd.DataFrame(rows)


def _group_order(groups: list[str]) -> list[str]:
    """Non-Asian above Asian (the paper's figures); otherwise sorted."""
    return sorted(groups, key=lambda g: (g != "Non-Asian", g))


def _statistics(
    cfg: StudyConfig, measures: pd.DataFrame, row: str, branch: str, method: str
) -> list[dict[str, Any]]:
    cam = cfg.stages.cam
    assert cam is not None
    groups = sorted(measures["ethnicity"].unique())
    if len(groups) != 2:
        return []
    group_a, group_b = groups
    scopes = {"all": measures}
    for dataset in sorted(measures["dataset"].unique()):
        scopes[f"within {dataset}"] = measures[measures["dataset"] == dataset]
    out = []
    for emotion in cam.emotions:
        for scope, part in scopes.items():
            rows = part[part["label"] == emotion]
            for measure in MEASURES:
                values = pd.DataFrame(
                    {
                        "subject_id": subject_ids(rows),
                        "group": rows["ethnicity"].to_numpy(),
                        "value": rows[measure].to_numpy(),
                    }
                )
                result = compare_groups(
                    values, group_a, group_b, cam.permutations, cam.bootstrap, cfg.seed
                )
                out.append(
                    {
                        "model": row,
                        "branch": branch,
                        "method": method,
                        "emotion": emotion,
                        "scope": scope,
                        "measure": measure,
                        "group_a": group_a,
                        "group_b": group_b,
                        **result,
                    }
                )
    return out


def _holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values of one family (NaN entries left out and kept NaN)."""
    valid = p_values.dropna().sort_values()
    m = len(valid)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * valid.to_numpy()))
    return pd.Series(adjusted, index=valid.index).reindex(p_values.index)


def _claims(stats: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for claim in CLAIMS:
        for (model, branch, method), part in stats.groupby(
            ["model", "branch", "method"], sort=False
        ):
            for scope in part["scope"].unique():
                match = part[
                    (part["emotion"] == claim["emotion"])
                    & (part["measure"] == claim["measure"])
                    & (part["scope"] == scope)
                ]
                if match.empty:
                    continue
                r = match.iloc[0]
                if claim["higher"] not in (r["group_a"], r["group_b"]):
                    continue
                sign = 1.0 if claim["higher"] == r["group_a"] else -1.0
                diff = sign * r["difference"]
                if np.isnan(diff):
                    verdict = "not testable (" + str(r["note"]) + ")"
                elif r["p_permutation"] < ALPHA and diff > 0:
                    verdict = "supported"
                elif r["p_permutation"] < ALPHA:
                    verdict = "contradicted (significant, opposite direction)"
                else:
                    verdict = f"not supported (p >= {ALPHA})"
                rows.append(
                    {
                        "claim": claim["claim"],
                        "model": model,
                        "branch": branch,
                        "method": method,
                        "scope": scope,
                        "measure": claim["measure"],
                        "expected_higher": claim["higher"],
                        "difference_expected_direction": diff,
                        "ci_low": sign * (r["ci_low"] if sign > 0 else r["ci_high"]),
                        "ci_high": sign * (r["ci_high"] if sign > 0 else r["ci_low"]),
                        "p_permutation": r["p_permutation"],
                        "subjects": f"{r['subjects_a']} vs {r['subjects_b']}",
                        "verdict": verdict,
                    }
                )
    return pd.DataFrame(rows)


METHOD_SUFFIX = {"gradcam": "", "integrated_gradients": "_ig"}
"""File-name suffix of each map method (Grad-CAM files keep the plain name)."""


def _write_maps(
    samples: pd.DataFrame,
    landmarks: pd.DataFrame,
    explained: RowMaps,
    maps: np.ndarray,
    tag: str,
    out_dir: Path,
) -> tuple[list[Path], pd.DataFrame]:
    """Write ``maps_<tag>.npz`` and ``regions_<tag>.csv``; return them and the measures."""
    keys = samples[["dataset", "subject", "filename"]]
    npz = out_dir / f"maps_{tag}.npz"
    np.savez_compressed(
        npz,
        maps=maps,
        targets=explained.targets,
        predicted=explained.predicted,
        keys=keys.to_numpy(dtype=str),
    )
    measures = pd.concat(
        [
            keys,
            samples[["ethnicity", "label"]],
            landmarks[["region_source"]],
            pd.DataFrame({"target": explained.targets, "predicted": explained.predicted}),
            _measure(maps, landmarks),
        ],
        axis=1,
    )
    measures["target"] = [EMOTION_CLASSES[t] for t in measures["target"]]
    measures["predicted"] = [EMOTION_CLASSES[t] for t in measures["predicted"]]
    regions = out_dir / f"regions_{tag}.csv"
    measures.to_csv(regions, index=False)
    return [npz, regions], measures


def _claim_attribution(attribution: pd.DataFrame) -> pd.DataFrame:
    """The attribution rows of the four claims' (emotion, measure), claim named first.

    The four claim measures of one (row, branch, method) are a family: ``p_ethnicity``
    and ``p_dataset`` are Holm-adjusted within it (``*_holm``) and ``attribution``
    is decided on the adjusted values.
    """
    if attribution.empty or "label" not in attribution:
        return pd.DataFrame()
    parts = []
    for claim in CLAIMS:
        match = attribution[
            (attribution["label"] == claim["emotion"])
            & (attribution["measure"] == claim["measure"])
        ]
        parts.append(match.assign(claim=claim["claim"]))
    table = pd.concat(parts, ignore_index=True).rename(columns={"label": "emotion"})
    families = table.groupby(["model", "branch", "method"], sort=False)
    for column in ("p_ethnicity", "p_dataset"):
        table[f"{column}_holm"] = families[column].transform(_holm)
    table["attribution"] = [
        attribution_verdict(e, d, ALPHA)
        for e, d in zip(table["p_ethnicity_holm"], table["p_dataset_holm"], strict=True)
    ]
    first = ["claim", "model", "branch", "method", "emotion", "measure"]
    return table[first + [c for c in table.columns if c not in first]]


def _background(sample: pd.Series, flow: np.ndarray) -> np.ndarray:
    path = sample.get("apex_crop_path") or ""
    if path:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is not None:
            return gray.astype(np.float32) / 255.0
    return flow[2]  # optical-strain channel


def _montage(
    cfg: StudyConfig,
    samples: pd.DataFrame,
    maps: np.ndarray,
    flow: np.ndarray,
    title: str,
    path: Path,
) -> Path:
    cam = cfg.stages.cam
    assert cam is not None
    groups = _group_order(sorted(samples["ethnicity"].unique()))
    cells, means = {}, {}
    for group in groups:
        for emotion in cam.emotions:
            rows = np.flatnonzero(
                ((samples["ethnicity"] == group) & (samples["label"] == emotion)).to_numpy()
            )
            valid = [i for i in rows if np.isfinite(maps[i]).all() and maps[i].sum() > 0]
            if valid:
                means[(group, emotion)] = np.mean([maps[i] / maps[i].sum() for i in valid], axis=0)
            picked, seen = [], set()
            for i in valid:
                subject = (samples["dataset"].iloc[i], samples["subject"].iloc[i])
                if subject in seen:
                    continue
                seen.add(subject)
                picked.append(i)
                if len(picked) == cam.examples:
                    break
            cells[(group, emotion)] = [
                (
                    _background(samples.iloc[i], flow[i]),
                    maps[i],
                    f"{samples['dataset'].iloc[i]} {samples['subject'].iloc[i]} "
                    f"{samples['filename'].iloc[i]}",
                )
                for i in picked
            ]
    return montage(cells, means, groups, cam.emotions, title, path)


def run_activation_maps(cfg: StudyConfig, samples: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Explain every benchmark row's test predictions and test the paper's claims.

    Args:
        cfg: a study config with ``stages.benchmark`` (``save_checkpoints: true``,
            finished) and ``stages.cam``.
        samples: the samples table from the database stage.
        out_dir: ``runs/<study>/cam``.

    Returns:
        The files written (see the module doc).

    Raises:
        ConfigError: no benchmark stage, checkpoints not kept, unknown row or layer.
        ModelError: a fold model is missing or unreadable (the message names it).
    """
    cam = cfg.stages.cam
    assert cam is not None
    rows = _rows(cfg, cam)
    samples = samples.sort_values(["dataset", "subject", "filename"]).reset_index(drop=True)
    bench_dir = cfg.run_dir / "benchmark"
    landmarks = _sample_landmarks(samples, cam.landmarks)
    written = [out_dir / "landmarks.csv"]
    landmarks.to_csv(written[0], index=False)
    stats_rows: list[dict[str, Any]] = []
    attribution_parts: list[pd.DataFrame] = []
    layers: dict[str, Any] = {}
    for model in rows:
        for branch in cam.branches:
            if branch == "context" and model.context == "none":
                continue
            explained = _explain_row(cfg, model, branch, samples, bench_dir)
            for method, maps in explained.maps.items():
                tag = f"{model.name}_{branch}" + METHOD_SUFFIX[method]
                info = {"method": method, **explained.info}
                if method == "integrated_gradients":
                    info.update(layer="input pixels", feature_side=info["input_side"])
                    info["steps"] = cam.ig_steps
                layers[tag] = info
                files, measures = _write_maps(samples, landmarks, explained, maps, tag, out_dir)
                written += files
                no_mass = measures[measures["cam_mass"].fillna(0) <= 0]
                info["samples_without_positive_evidence"] = len(no_mass)
                stats_rows += _statistics(cfg, measures, model.name, branch, method)
                attributed = attribute(
                    measures[measures["label"].isin(cam.emotions)],
                    sorted({claim["measure"] for claim in CLAIMS}),
                    "label",
                    cam.permutations,
                    cfg.seed,
                    ALPHA,
                )
                attribution_parts.append(
                    attributed.assign(model=model.name, branch=branch, method=method)
                )
                title = (
                    f"Grad-CAM at {info['layer']} ({info['feature_side']} px map)"
                    if method == "gradcam"
                    else f"Integrated Gradients ({cam.ig_steps} steps, motion-free baseline)"
                )
                written.append(
                    _montage(
                        cfg,
                        samples,
                        maps,
                        explained.flow,
                        f"{model.name}, {branch} branch, {title}, target {cam.target}",
                        out_dir / f"montage_{tag}.png",
                    )
                )
    stats = pd.DataFrame(stats_rows)
    if not stats.empty:
        # the measures of one (row, branch, method, emotion, scope) form a family
        families = stats.groupby(["model", "branch", "method", "emotion", "scope"], sort=False)
        stats["p_holm"] = families["p_permutation"].transform(_holm)
    written += write_table(
        stats,
        out_dir / "statistics",
        "Activation-map region measures between ethnicity groups (A - B), permutation over "
        "subjects",
    )
    claims = _claims(stats) if not stats.empty else pd.DataFrame()
    written += write_table(claims, out_dir / "claims", "The paper's visual claims (IV-C), measured")
    attribution = _claim_attribution(pd.concat(attribution_parts, ignore_index=True))
    written += write_table(
        attribution,
        out_dir / "attribution",
        "Ethnicity within dataset vs dataset within ethnicity, per claim measure "
        "(stratified permutation over subjects)",
    )
    coded = au_feature_table(samples[samples["action_units"].fillna("") != ""])
    written += write_table(
        coded, out_dir / "coded_aus", "Coded action units per ethnicity group (Fisher's exact test)"
    )
    written.append(region_legend(out_dir / "regions.png"))
    summary = out_dir / "summary.json"
    write_json_atomic(
        summary,
        {
            "layers": layers,
            "target": cam.target,
            "region_sources": landmarks["region_source"].value_counts().to_dict(),
            "claims": json.loads(claims.to_json(orient="records")),
            "attribution": json.loads(attribution.to_json(orient="records")),
            "coded_aus": json.loads(coded.to_json(orient="records")),
        },
    )
    written.append(summary)
    return written
