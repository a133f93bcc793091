"""The micro-expression simulator: official layouts, planted motion styles (issue 7)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ethnicmer.cli import app
from ethnicmer.config import SimulateConfig, load_config
from ethnicmer.data.simulator import action_unit_motions, displacement, write_simulated_study
from ethnicmer.errors import ConfigError
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import DATABASE, FLOW, samples_with_flows
from tests.conftest import synthetic_data_section, write_config


def _simulate(
    out: Path, planted: bool, subjects: int = 4, planted_by: str = "group"
) -> pd.DataFrame:
    cfg = SimulateConfig(
        out=out,
        kind="face",
        planted=planted,
        planted_by=planted_by,
        subjects_per_dataset=subjects,
        samples_per_subject=6,
        frames_per_sample=7,
        image_size=128,
    )
    write_simulated_study(cfg, seed=3)
    return pd.read_csv(out / "truth.csv", dtype={"subject": str})


def _motion_energy(out: Path, row: pd.Series) -> tuple[float, float]:
    """TV-L1 flow magnitude onset → apex in the upper third and the lower third."""
    if row["dataset"] == "casme2":
        folder = out / "CASME2" / "frames" / row["subject"] / row["filename"]
        frames = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem[3:]))
    else:
        folder = out / "SAMM" / "frames" / row["subject"] / row["filename"]
        frames = sorted(folder.glob("*.jpg"))
    onset = cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE)
    apex = cv2.imread(str(frames[len(frames) // 2]), cv2.IMREAD_GRAYSCALE)
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(onset, apex, None)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    third = magnitude.shape[0] // 3
    return float(magnitude[:third].sum()), float(magnitude[2 * third :].sum())


def test_planted_surprise_styles_show_in_the_optical_flow(tmp_path: Path) -> None:
    truth = _simulate(tmp_path / "sim", planted=True, subjects=2)
    surprise = truth[truth["label"] == "Surprise"]
    assert set(surprise.loc[surprise["group"] == "A", "action_units"]) == {"1+2+5"}
    assert set(surprise.loc[surprise["group"] == "B", "action_units"]) == {"26"}
    for _, row in surprise.iterrows():
        upper, lower = _motion_energy(tmp_path / "sim", row)
        if row["group"] == "A":
            assert upper > 2 * lower, (row["filename"], upper, lower)
        else:
            assert lower > 2 * upper, (row["filename"], upper, lower)
    positive = truth[truth["label"] == "Positive"]
    assert set(positive.loc[positive["group"] == "A", "action_units"]) == {"6+12"}
    assert set(positive.loc[positive["group"] == "B", "action_units"]) <= {"L12", "R12"}


def test_without_planting_styles_do_not_follow_the_group(tmp_path: Path) -> None:
    truth = _simulate(tmp_path / "sim", planted=False, subjects=4)
    surprise = truth[truth["label"] == "Surprise"]
    styles = pd.crosstab(surprise["group"], surprise["style"])
    assert (styles.to_numpy() > 0).all(), styles  # both styles occur in both groups


def test_styles_planted_by_dataset_follow_the_dataset_not_the_group(tmp_path: Path) -> None:
    truth = _simulate(tmp_path / "sim", planted=True, subjects=4, planted_by="dataset")
    surprise = truth[truth["label"] == "Surprise"]
    assert set(surprise.loc[surprise["dataset"] == "casme2", "style"]) == {"upper"}
    assert set(surprise.loc[surprise["dataset"] == "samm", "style"]) == {"jaw"}
    # both groups sit in both datasets, so the groups share the same mix of styles
    styles = pd.crosstab(surprise["group"], surprise["style"])
    assert (styles.loc["A"] == styles.loc["B"]).all(), styles
    planted = json.loads((tmp_path / "sim" / "truth.json").read_text())
    assert planted["planted_by"] == "dataset" and planted["style_of"]["samm"] == "B"


def test_simulated_study_reads_like_the_official_releases(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    truth = _simulate(out, planted=True, subjects=2)
    data = synthetic_data_section(out, emotion_mapping="paper")
    payload = {"study": "sim", "data": data}
    cfg = load_config(write_config(tmp_path, payload))
    run_stage(DATABASE, cfg)
    samples = pd.read_parquet(cfg.run_dir / "database" / "samples.parquet")
    assert len(samples) == len(truth) == 24
    merged = samples.merge(truth, on=["dataset", "subject", "filename"], suffixes=("", "_truth"))
    assert (merged["label"] == merged["label_truth"]).all()
    assert (merged["action_units"] == merged["action_units_truth"]).all()
    groups = merged.groupby("group")["ethnicity"].unique().to_dict()
    assert list(groups["A"]) == ["Asian"] and list(groups["B"]) == ["Non-Asian"]
    assert (samples["apex"] - samples["onset"] == 3).all()
    assert json.loads((out / "truth.json").read_text())["planted"] is True

    # the flow stage keeps each sample's aligned apex crop and its landmarks
    flow_cfg = load_config(
        write_config(
            tmp_path,
            {"study": "sim", "data": data, "stages": {"flow": {"crop_size": 96, "workers": 1}}},
        )
    )
    run_stage(FLOW, flow_cfg)
    attached = samples_with_flows(flow_cfg)
    assert len(attached) == 24 and (attached["landmarks_path"] != "").all()
    crop = cv2.imread(attached["apex_crop_path"].iloc[0], cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (96, 96)
    landmarks = np.load(attached["landmarks_path"].iloc[0])
    assert landmarks.shape == (68, 2) and 0 <= landmarks.min() and landmarks.max() <= 1
    # the mouth sits below the eyes, inside the crop the flow image frames
    assert landmarks[48:68, 1].mean() > landmarks[36:48, 1].mean() + 0.2


def test_action_unit_sides_follow_the_subject() -> None:
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = (40, 50), (80, 50)  # right eye on the image left
    lm[48], lm[54] = (45, 100), (75, 100)
    left = displacement(action_unit_motions("L12", lm), 128)
    # the subject's left lip corner is on the image right, pulled outward (+x) and up (-y)
    assert left[100, 75, 0] > 0.9 * 0.6 and left[100, 75, 1] < 0
    assert abs(left[100, 45]).max() < 1e-3
    with pytest.raises(ValueError, match="AU9"):
        action_unit_motions("9", lm)


def test_face_simulator_needs_a_detectable_face_size(tmp_path: Path) -> None:
    payload = {
        "study": "s",
        "simulate": {"out": str(tmp_path / "x"), "kind": "face", "image_size": 64},
        "data": {"sources": [{"kind": "megc2019_flow", "root": "x"}]},
    }
    with pytest.raises(ConfigError, match="image_size >= 128"):
        load_config(write_config(tmp_path, payload))


def test_simulate_command(tmp_path: Path) -> None:
    payload = {
        "study": "s",
        "simulate": {
            "out": str(tmp_path / "sim"),
            "kind": "face",
            "subjects_per_dataset": 2,
            "samples_per_subject": 1,
            "image_size": 128,
        },
        "data": {"sources": [{"kind": "megc2019_flow", "root": "x"}]},
    }
    result = CliRunner().invoke(app, ["simulate", str(write_config(tmp_path, payload)), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sim" / "truth.csv").is_file()


def test_face_simulator_writes_smic_hs_e_read_by_the_smic_reader(tmp_path: Path) -> None:
    """SMIC-E-HS layout: table + SMIC_HS_E/<s>/<clip>/image<frame>.jpg, colour frames;
    dlib finds the face on the simulated SMIC frames (the flow stage from raw frames)."""
    out = tmp_path / "sim"
    cfg = SimulateConfig(
        out=out,
        kind="face",
        subjects_per_dataset=2,
        smic_subjects=2,
        samples_per_subject=3,
        frames_per_sample=5,
        image_size=128,
    )
    write_simulated_study(cfg, seed=3)
    truth = pd.read_csv(out / "truth.csv", dtype={"subject": str})
    smic_truth = truth[truth["dataset"] == "smic"]
    assert len(smic_truth) == 6 and set(smic_truth["group"]) == {"A", "B"}
    data = synthetic_data_section(out)
    data["sources"] = [
        {
            "kind": "smic",
            "table": str(out / "SMIC" / "smic_hs_e.csv"),
            "frames": str(out / "SMIC" / "SMIC_HS_E"),
        }
    ]
    payload = {"study": "smic", "data": data, "stages": {"flow": {"crop_size": 96, "workers": 1}}}
    study = load_config(write_config(tmp_path, payload))
    run_stage(DATABASE, study)
    run_stage(FLOW, study)
    samples = samples_with_flows(study)
    merged = samples.merge(smic_truth, on=["dataset", "subject", "filename"], suffixes=("", "_t"))
    assert len(merged) == 6 and (merged["label"] == merged["label_t"]).all()
    assert (merged["landmarks_path"] != "").all()  # aligned by dlib on the SMIC frames
    frame = cv2.imread(samples["onset_path"].iloc[0])
    assert frame.shape == (128, 128, 3) and np.ptp(frame[..., 2].astype(int) - frame[..., 0]) > 0
