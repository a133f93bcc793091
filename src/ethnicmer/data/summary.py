"""Summary tables of the composite database (paper Tables I–III).

- Table I: subjects per ethnic label (race) and mapped label (ethnicity group).
- Table II: video samples per ethnic label and mapped label.
- Table III: video samples per emotion word and mapped emotion label.

Each is also given per dataset, beside the dataset × ethnicity cell counts with
class counts that any ethnicity claim must be read against (DESIGN: the confound).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ethnicmer.data.demographics import RACES
from ethnicmer.data.emotions import EMOTION_CLASSES


def _race_order(frame: pd.DataFrame) -> pd.DataFrame:
    order = {race: i for i, race in enumerate(RACES)}
    keys = [k for k in ("dataset", "race") if k in frame.columns]
    return frame.sort_values(
        keys, key=lambda s: s.map(order) if s.name == "race" else s
    ).reset_index(drop=True)


def table_subjects(samples: pd.DataFrame, by_dataset: bool = False) -> pd.DataFrame:
    """Table I: number of subjects per (race, ethnicity group) [, dataset]."""
    keys = (["dataset"] if by_dataset else []) + ["ethnicity", "race"]
    subjects = samples.drop_duplicates(["dataset", "subject"])
    out = subjects.groupby(keys).size().rename("subjects").reset_index()
    return _race_order(out)


def table_samples_per_race(samples: pd.DataFrame, by_dataset: bool = False) -> pd.DataFrame:
    """Table II: number of video samples per (race, ethnicity group) [, dataset]."""
    keys = (["dataset"] if by_dataset else []) + ["ethnicity", "race"]
    out = samples.groupby(keys).size().rename("samples").reset_index()
    return _race_order(out)


def table_emotions(samples: pd.DataFrame, by_dataset: bool = False) -> pd.DataFrame:
    """Table III: samples per (emotion word, mapped label) [, dataset].

    Samples without a sheet emotion (MEGC flow sets without joined sheets) appear
    with emotion ``"(not in source)"``.
    """
    frame = samples.assign(emotion=samples["emotion"].replace("", pd.NA).fillna("(not in source)"))
    keys = (["dataset"] if by_dataset else []) + ["label", "emotion"]
    out = frame.groupby(keys).size().rename("samples").reset_index()
    order = {label: i for i, label in enumerate(EMOTION_CLASSES)}
    return out.sort_values(
        keys, key=lambda s: s.map(order) if s.name == "label" else s
    ).reset_index(drop=True)


def table_cells(samples: pd.DataFrame) -> pd.DataFrame:
    """Dataset × ethnicity cells: subjects, samples and samples per emotion class."""
    counts = pd.crosstab([samples["dataset"], samples["ethnicity"]], samples["label"]).reindex(
        columns=list(EMOTION_CLASSES), fill_value=0
    )
    subjects = (
        samples.drop_duplicates(["dataset", "subject"]).groupby(["dataset", "ethnicity"]).size()
    )
    out = counts.assign(subjects=subjects, samples=counts.sum(axis=1)).reset_index()
    return out[["dataset", "ethnicity", "subjects", "samples", *EMOTION_CLASSES]]


def summarise(samples: pd.DataFrame, exclusions: pd.DataFrame) -> dict[str, Any]:
    """All summary tables plus totals, as JSON-ready records.

    Returns:
        A dict with ``totals`` (samples, subjects, per-dataset and per-ethnicity
        counts, exclusions by reason) and ``tables`` (name → list of records).
    """
    reasons = (
        exclusions["reason"].str.replace(r"\d+", "N", regex=True).value_counts().to_dict()
        if not exclusions.empty
        else {}
    )
    tables = {
        "table1_subjects": table_subjects(samples),
        "table1_subjects_by_dataset": table_subjects(samples, by_dataset=True),
        "table2_samples": table_samples_per_race(samples),
        "table2_samples_by_dataset": table_samples_per_race(samples, by_dataset=True),
        "table3_emotions": table_emotions(samples),
        "table3_emotions_by_dataset": table_emotions(samples, by_dataset=True),
        "cells_dataset_ethnicity": table_cells(samples),
    }
    totals = {
        "samples": len(samples),
        "subjects": int(samples.drop_duplicates(["dataset", "subject"]).shape[0]),
        "samples_by_dataset": samples["dataset"].value_counts().sort_index().to_dict(),
        "subjects_by_dataset": samples.drop_duplicates(["dataset", "subject"])["dataset"]
        .value_counts()
        .sort_index()
        .to_dict(),
        "samples_by_ethnicity": samples["ethnicity"].value_counts().sort_index().to_dict(),
        "subjects_by_ethnicity": samples.drop_duplicates(["dataset", "subject"])["ethnicity"]
        .value_counts()
        .sort_index()
        .to_dict(),
        "samples_by_label": samples["label"]
        .value_counts()
        .reindex(EMOTION_CLASSES, fill_value=0)
        .to_dict(),
        "excluded": len(exclusions),
        "excluded_by_reason": reasons,
    }
    return {
        "totals": _jsonable(totals),
        "tables": {name: _jsonable(t.to_dict(orient="records")) for name, t in tables.items()},
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
