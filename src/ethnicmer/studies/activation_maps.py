"""Activation maps per ethnicity group (paper IV-C, Figures 3–4) as measured statistics.

The paper reads Grad-CAM maps by eye. Here every test sample of the benchmark is
explained by the model of its own LOSO fold (:mod:`ethnicmer.explain.maps`), with
Grad-CAM (the paper's) and, as configured, Integrated Gradients from a
motion-free baseline (on the simulator Grad-CAM at 28 px misses the planted
styles and Integrated Gradients finds them); the map's mass is measured in
action-unit regions (:mod:`ethnicmer.explain.au_regions`, regions from
:mod:`ethnicmer.explain.landmarks`); per emotion the groups are compared over
subjects, overall and within each dataset, and the paper's four claims are
tested with their families (:mod:`ethnicmer.explain.claims`). The coders'
action units from the sheets are counted beside them, over subjects
(:mod:`ethnicmer.studies.action_units`).

Outputs under ``runs/<study>/cam/`` (``<tag>`` = ``<row>_<branch>`` for Grad-CAM,
``<row>_<branch>_ig`` for Integrated Gradients): ``maps_<tag>.npz`` (sample keys,
maps, targets), ``regions_<tag>.csv`` (per-sample measures),
``landmarks.csv``, ``statistics.{csv,md,tex}``, ``claims.{csv,md,tex}``,
``attribution.{csv,md,tex}``, ``coded_aus.{csv,md,tex}``, ``montage_<tag>.png``,
``regions.png``, ``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ethnicmer.config import CamConfig, ModelConfig, StudyConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.evaluation.protocols import unlabelled_counts
from ethnicmer.explain.attribution import attribute
from ethnicmer.explain.au_regions import MEASURES, region_measures
from ethnicmer.explain.au_regions import template_regions as template_masks
from ethnicmer.explain.claims import (
    ALPHA,
    CLAIMS,
    claim_attribution,
    claim_groups,
    claims_table,
    group_order,
    region_statistics,
    statistics_table,
)
from ethnicmer.explain.figures import montage, region_legend
from ethnicmer.explain.landmarks import REGION_SIDE, region_masks_of, sample_landmarks
from ethnicmer.explain.maps import RowMaps, explain_row
from ethnicmer.io import save_npz_atomic, write_csv_atomic, write_json_atomic
from ethnicmer.progress import log
from ethnicmer.report.tables import write_table
from ethnicmer.studies.action_units import au_feature_table


def _rows(cfg: StudyConfig, cam: CamConfig) -> list[ModelConfig]:
    """The benchmark rows to explain (the config validator checked names and checkpoints)."""
    bench = cfg.stages.benchmark
    assert bench is not None
    by_name = {m.name: m for m in bench.models}
    return [by_name[n] for n in cam.models or list(by_name)]


def _measure(maps: np.ndarray, landmarks: pd.DataFrame) -> pd.DataFrame:
    template = template_masks(REGION_SIDE)
    rows = []
    for i in range(len(maps)):
        if np.isnan(maps[i]).all():
            rows.append({m: float("nan") for m in MEASURES} | {"cam_mass": float("nan")})
            continue
        big = cv2.resize(maps[i], (REGION_SIDE, REGION_SIDE), interpolation=cv2.INTER_LINEAR)
        big = np.clip(big, 0, None)
        rows.append(
            region_measures(big, region_masks_of(landmarks, i, template)) | {"cam_mass": big.sum()}
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
    npz = save_npz_atomic(
        out_dir / f"maps_{tag}.npz",
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
    # -1 marks a sample no fold explained (a partial LOSO): it has no target, not "Surprise"
    measures["target"] = [EMOTION_CLASSES[t] if t >= 0 else pd.NA for t in measures["target"]]
    measures["predicted"] = [EMOTION_CLASSES[t] if t >= 0 else pd.NA for t in measures["predicted"]]
    regions = write_csv_atomic(measures, out_dir / f"regions_{tag}.csv")
    return [npz, regions], measures


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
    groups = group_order(list(claim_groups(cfg)), claim_groups(cfg)[1])
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


@dataclass(frozen=True)
class _MapSet:
    """What one (row, branch, method) set of maps gave: its files, layer info, region
    statistics and claim attribution."""

    tag: str
    files: list[Path]
    info: dict[str, Any]
    statistics: list[dict[str, Any]]
    attribution: pd.DataFrame


def _one_map_set(
    cfg: StudyConfig,
    samples: pd.DataFrame,
    landmarks: pd.DataFrame,
    explained: RowMaps,
    maps: np.ndarray,
    row: str,
    branch: str,
    method: str,
    out_dir: Path,
) -> _MapSet:
    """Measure, test and draw one set of maps (``maps_<tag>.npz``, ``regions_<tag>.csv``,
    ``montage_<tag>.png``)."""
    cam = cfg.stages.cam
    assert cam is not None
    tag = f"{row}_{branch}" + METHOD_SUFFIX[method]
    info = {"method": method, **explained.info}
    if method == "integrated_gradients":
        info.update(layer="input pixels", feature_side=info["input_side"])
        info["steps"] = cam.ig_steps
    files, measures = _write_maps(samples, landmarks, explained, maps, tag, out_dir)
    info["samples_without_positive_evidence"] = int((measures["cam_mass"].fillna(0) <= 0).sum())
    attributed = attribute(
        measures[measures["label"].isin(cam.emotions)],
        sorted({claim["measure"] for claim in CLAIMS}),
        "label",
        cam.permutations,
        cfg.seed,
        ALPHA,
        groups=claim_groups(cfg),
        bootstrap=cam.bootstrap,
    )
    title = (
        f"Grad-CAM at {info['layer']} ({info['feature_side']} px map)"
        if method == "gradcam"
        else f"Integrated Gradients ({cam.ig_steps} steps, motion-free baseline)"
    )
    files.append(
        _montage(
            cfg,
            samples,
            maps,
            explained.flow,
            f"{row}, {branch} branch, {title}, target {cam.target}",
            out_dir / f"montage_{tag}.png",
        )
    )
    return _MapSet(
        tag,
        files,
        info,
        region_statistics(cfg, measures, row, branch, method),
        attributed.assign(model=row, branch=branch, method=method),
    )


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
    absent = [g for g in claim_groups(cfg) if g not in set(samples["ethnicity"])]
    groups_note = (
        f"no subject of group(s) {absent} (data.demographics.paper_groups): the group "
        "comparisons and the paper's claims cannot be tested"
        if absent
        else ""
    )
    if groups_note:
        log(f"cam: {groups_note}")
    landmarks = sample_landmarks(samples, cam.landmarks)
    written = [write_csv_atomic(landmarks, out_dir / "landmarks.csv")]
    stats_rows: list[dict[str, Any]] = []
    attribution_parts: list[pd.DataFrame] = []
    layers: dict[str, Any] = {}
    for model in rows:
        for branch in cam.branches:
            if branch == "context" and model.context == "none":
                continue
            explained = explain_row(cfg, model, branch, samples, bench_dir)
            for method, maps in explained.maps.items():
                result = _one_map_set(
                    cfg, samples, landmarks, explained, maps, model.name, branch, method, out_dir
                )
                written += result.files
                layers[result.tag] = result.info
                stats_rows += result.statistics
                attribution_parts.append(result.attribution)
    stats = statistics_table(stats_rows)
    written += write_table(
        stats,
        out_dir / "statistics",
        "Activation-map region measures between ethnicity groups (A - B), permutation over "
        "subjects; exploratory family (Benjamini-Hochberg)",
    )
    claims = (
        claims_table(stats, dict(cfg.data.demographics.paper_groups))
        if not stats.empty
        else pd.DataFrame()
    )
    written += write_table(
        claims,
        out_dir / "claims",
        "The paper's visual claims (IV-C), measured: Holm over the claims on all samples, "
        "Benjamini-Hochberg within datasets; verdicts on the adjusted p",
    )
    attribution = claim_attribution(pd.concat(attribution_parts, ignore_index=True))
    written += write_table(
        attribution,
        out_dir / "attribution",
        "Ethnicity within dataset vs dataset within ethnicity, per claim measure "
        "(stratified permutation over subjects)",
    )
    coded = au_feature_table(samples[samples["action_units"].fillna("") != ""], claim_groups(cfg))
    written += write_table(
        coded,
        out_dir / "coded_aus",
        "Coded action units per ethnicity group: subjects showing each feature (Fisher's "
        "exact test over subjects, Benjamini-Hochberg)",
    )
    written.append(region_legend(out_dir / "regions.png"))
    summary = out_dir / "summary.json"
    write_json_atomic(
        summary,
        {
            "layers": layers,
            "groups": list(claim_groups(cfg)),
            "groups_note": groups_note,
            "left_out_of_group_statistics": unlabelled_counts(samples),
            "target": cam.target,
            "region_sources": landmarks["region_source"].value_counts().to_dict(),
            "claims": json.loads(claims.to_json(orient="records")),
            "attribution": json.loads(attribution.to_json(orient="records")),
            "coded_aus": json.loads(coded.to_json(orient="records")),
        },
    )
    written.append(summary)
    if cam.when == "after" and not cam.keep_checkpoints:
        remove_checkpoints(bench_dir, [model.name for model in rows])
    return written


REMOVED = "REMOVED.txt"
"""Left in a row's ``checkpoints/`` by :func:`remove_checkpoints`, so a later run says why
the checkpoints are gone and what to do."""


def remove_checkpoints(bench_dir: Path, rows: list[str]) -> int:
    """Delete the explained rows' fold checkpoints (``cam.keep_checkpoints: false``), every
    seed, once the maps are written; return the bytes freed (logged)."""
    freed = 0
    for row in rows:
        for folder in sorted((bench_dir / "models" / row).glob("seed-*/checkpoints")):
            for checkpoint in folder.glob("*.pt"):
                freed += checkpoint.stat().st_size
                checkpoint.unlink()
            (folder / REMOVED).write_text(
                "The activation-map stage deleted these fold checkpoints after making its maps "
                "(cam.keep_checkpoints: false). To make maps again, delete this row's folder "
                f"({folder.parent.parent}) and re-run the benchmark, or use cam.when: fold.\n"
            )
    log(f"cam: deleted the explained rows' fold checkpoints ({freed / 1e6:.0f} MB)")
    return freed
