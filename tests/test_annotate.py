"""Demographic annotation: estimators, per-subject aggregation, auditable correction."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ethnicmer.annotate.aggregate import aggregate_subjects, correct_subjects
from ethnicmer.annotate.estimators import (
    AgeGenderEstimator,
    read_prediction_table,
)
from ethnicmer.cli import app
from ethnicmer.errors import DataError
from tests.conftest import write_config

runner = CliRunner()
HEADER = "Subject,Filename,Age,Gender,Race\n"


def _table(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "raw.csv"
    path.write_text(HEADER + body)
    return path


def test_prediction_table_with_error_rows(tmp_path: Path):
    path = _table(tmp_path, "6,006_1_2,2,0,0\n6,006_1_3,Error,Error,Error\n")
    table = read_prediction_table(path, "samm")
    assert table["subject"].tolist() == ["006", "006"]
    assert table.loc[1, "error"] == "no face found (Error row)" and pd.isna(
        table.loc[1, "race_code"]
    )
    _table(tmp_path, "6,006_1_2,2,x,0\n")
    with pytest.raises(DataError, match=r"raw\.csv, line 2: Gender 'x'"):
        read_prediction_table(path, "samm")


def test_vote_ties_errors_and_rules(tmp_path: Path):
    body = (
        "6,a,2,0,0\n6,b,2,0,4\n6,c,3,0,4\n"  # race: Others 2 vs White 1 -> Others (share 0.67)
        "7,a,1,1,0\n7,b,1,1,2\n"  # race tie White/Asian -> first seen (White), flagged
        "9,a,Error,Error,Error\n9,b,4,1,2\n"  # one valid sample
    )
    votes = aggregate_subjects(read_prediction_table(_table(tmp_path, body), "samm"))
    by = votes.set_index("subject")
    assert by.loc["006", "race_code"] == 4 and by.loc["006", "race_code_share"] == pytest.approx(
        2 / 3
    )
    assert by.loc["006", "age_bin"] == 2
    assert by.loc["007", "race_code"] == 0 and bool(by.loc["007", "race_code_tie"])
    assert (by.loc["009", "samples"], by.loc["009", "valid"]) == (2, 1)
    demographics, audit = correct_subjects(votes, min_valid=2, min_agreement=0.6, overrides=None)
    rules = {(r.subject, r.field): r.rule for r in audit.itertuples()}
    assert rules[("007", "race_code")] == "agreement 0.50 below 0.60"
    assert rules[("009", "gender")] == "fewer than 2 valid samples (1)"
    assert ("006", "race_code") not in rules
    assert demographics.set_index("subject").loc["006", "race"] == "Others"


def test_overrides_change_labels_with_reasons(tmp_path: Path):
    votes = aggregate_subjects(
        read_prediction_table(_table(tmp_path, "7,a,1,1,0\n7,b,1,1,2\n"), "samm")
    )
    overrides = tmp_path / "overrides.csv"
    overrides.write_text(
        "dataset,subject,field,value,reason\nsamm,7,race_code,2,checked the video\n"
    )
    demographics, audit = correct_subjects(votes, 1, 0.5, overrides)
    assert (
        demographics.loc[0, "race"] == "Asian"
        and "checked the video" in demographics.loc[0, "source"]
    )
    row = audit[audit["field"] == "race_code"].iloc[0]
    assert (row["raw_vote"], row["final"], row["reason"]) == (0, 2, "checked the video")


def test_subject_without_any_vote_needs_an_override(tmp_path: Path):
    votes = aggregate_subjects(
        read_prediction_table(_table(tmp_path, "8,a,Error,Error,Error\n"), "samm")
    )
    with pytest.raises(DataError, match="no usable gender vote and no override for: samm/008"):
        correct_subjects(votes, 1, 0.5, None)


# ---------------------------------------------------------------- real data


def test_released_predictions_reproduce_the_paper_labels(
    real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The paper's raw SAMM predictions, our vote, and the shipped overrides file."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    config = Path("configs/annotate-samm-released.yaml")
    payload = {
        **__import__("yaml").safe_load(config.read_text()),
        "runs_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "annotate.yaml"
    path.write_text(__import__("yaml").safe_dump(payload))
    result = runner.invoke(app, ["annotate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["agreement"]["gender"] == {"subjects": 29, "raw_vote_agrees": 29, "final_agrees": 29}
    assert out["agreement"]["age_bin"] == {
        "subjects": 29,
        "raw_vote_agrees": 29,
        "final_agrees": 29,
    }
    assert out["agreement"]["race_code"] == {
        "subjects": 29,
        "raw_vote_agrees": 28,
        "final_agrees": 29,
    }
    changed = [a for a in out["audit"] if str(a["raw_vote"]) != str(a["final"])]
    assert [(a["subject"], a["field"]) for a in changed] == [("037", "race_code")] and changed[0][
        "reason"
    ]
    # the corrected table equals the paper's selected labels
    ours = pd.read_csv(
        tmp_path / "runs" / "annotate-samm-released" / "annotate" / "demographics.csv",
        dtype={"subject": str},
    )
    paper = pd.read_csv(real_data / "ethnicmer-labels" / "results_ethnic_selected.csv", dtype=str)
    paper["subject"] = paper["Subject"].map(lambda s: f"{int(s):03d}")
    merged = ours.merge(paper, on="subject")
    assert len(merged) == 29
    assert (merged["race_code"] == merged["Race"].astype(int)).all()
    assert (merged["gender"] == merged["Gender"].astype(int)).all()
    assert (merged["age_bin"] == merged["Age"].astype(int)).all()


def test_offline_age_and_gender_on_real_faces(real_data: Path):
    from PIL import Image

    estimator = AgeGenderEstimator()
    photo = np.asarray(Image.open(real_data / "videos" / "single_face.jpg").convert("RGB"))
    estimate = estimator.estimate(photo)
    assert estimate.gender == 0 and estimate.gender_confidence > 0.9 and estimate.age_bin in (2, 3)
    crop = np.asarray(
        Image.open(
            real_data / "megc2019-flow" / "datasets" / "combined_datasets_whole" / "006_006_1_2.jpg"
        ).convert("RGB")
    )
    assert (
        estimator.estimate(crop, face_crop=True).gender == 0
    )  # SAMM 006: male in the paper's labels
    empty = np.full((200, 200, 3), 128, np.uint8)
    assert estimator.estimate(empty).error == "no face found"


def test_annotate_stage_with_the_offline_estimator(real_data: Path, tmp_path: Path):
    payload = {
        "study": "ag",
        "data": {
            "sources": [
                {
                    "kind": "megc2019_flow",
                    "root": str(real_data / "megc2019-flow"),
                    "datasets": ["samm"],
                }
            ]
        },
        "stages": {"annotate": {"estimator": "age_and_gender"}},
    }
    result = runner.invoke(app, ["annotate", str(write_config(tmp_path, payload)), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["timing"]["images"] == 133 and out["timing"]["fields_from_demographics_table"] == [
        "race_code"
    ]
    assert out["agreement"]["gender"]["subjects"] == 28
    assert out["agreement"]["gender"]["raw_vote_agrees"] >= 20  # measured: see the issue note
