"""Optical flow, optical strain, flow images, alignment, cache and the flow stage."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

import ethnicmer.flow.compute as compute
from ethnicmer.cli import app, studied_summary_file
from ethnicmer.config import load_config
from ethnicmer.data.composite import build_composite
from ethnicmer.errors import ConfigError
from ethnicmer.flow.align import alignment_transform, detect_landmarks
from ethnicmer.flow.compute import FlowSettings, cached_flow, read_gray
from ethnicmer.flow.image import flow_image
from ethnicmer.flow.optical import compute_flow, optical_strain
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import DATABASE, FLOW, samples_with_flows
from tests.conftest import synthetic_data_section, write_config

runner = CliRunner()
YY, XX = np.mgrid[0:64, 0:64].astype(np.float64)


@pytest.mark.parametrize("a", [0.05, -0.2])
def test_strain_of_uniform_stretch_is_abs_a(a):
    strain = optical_strain(a * XX, np.zeros_like(XX))
    assert np.allclose(strain, abs(a), atol=1e-6)


def test_strain_of_rotation_is_zero():
    theta = 0.01
    assert np.allclose(optical_strain(-theta * YY, theta * XX), 0, atol=1e-7)


def test_strain_of_simple_shear():
    s = 0.1  # u = s*y: eps_xy = eps_yx = s/2 -> magnitude sqrt(2) * s/2
    assert np.allclose(optical_strain(s * YY, np.zeros_like(YY)), np.sqrt(2) * s / 2, atol=1e-7)


def test_flow_image_stacks_resizes_and_normalises():
    u, v = 0.5 * XX, np.zeros_like(XX)
    image = flow_image(u, v, optical_strain(u, v), size=28)
    assert image.shape == (3, 28, 28) and image.dtype == np.float32
    assert image[0].min() == 0 and image[0].max() == 1
    assert (image[1] == 0).all()  # constant channel -> zeros
    raw = flow_image(u, v, optical_strain(u, v), size=28, normalise="none")
    assert raw[0].max() == pytest.approx(31.5, abs=0.6)  # pixels, not normalised


def test_flow_parameters_are_checked():
    frame = np.zeros((32, 32), np.uint8)
    with pytest.raises(ConfigError, match=r"\['bogus'\] not accepted by tvl1"):
        compute_flow(frame, frame, "tvl1", {"bogus": 1})
    with pytest.raises(ValueError, match="equal-sized"):
        compute_flow(frame, np.zeros((16, 16), np.uint8))
    for method in ("tvl1", "farneback", "dis"):
        u, _ = compute_flow(frame, frame, method)
        assert u.shape == (32, 32) and u.dtype == np.float32


def test_flow_config_rejects_unknown_params(tmp_path: Path):
    path = write_config(
        tmp_path,
        {
            "study": "s",
            "data": {"sources": [{"kind": "samm", "sheet": "a.xlsx"}]},
            "stages": {"flow": {"method": "farneback", "params": {"tau": 0.2}}},
        },
    )
    with pytest.raises(ConfigError, match="not accepted by farneback"):
        load_config(path)


def test_cache_reuses_and_detects_corruption(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    frames = sorted((synthetic_root / "CASME2" / "frames" / "sub01" / "EP01_01").glob("*.jpg"))
    settings = FlowSettings(align="none", crop_size=64)
    path = cached_flow(frames[0], frames[4], settings, tmp_path, "clip")
    first = np.load(path)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(compute, "flow_from_frames", fail)
    assert cached_flow(frames[0], frames[4], settings, tmp_path, "clip") == path
    path.write_bytes(path.read_bytes()[:50])  # truncated
    monkeypatch.undo()
    again = cached_flow(frames[0], frames[4], settings, tmp_path, "clip")
    assert np.array_equal(np.load(again), first)
    other = cached_flow(
        frames[0],
        frames[4],
        FlowSettings(align="none", crop_size=64, method="dis"),
        tmp_path,
        "clip",
    )
    assert other != path  # the key covers every parameter


def test_flow_stage_export_and_megc_round_trip(synthetic_root: Path, tmp_path: Path):
    payload = {
        "study": "s",
        "data": synthetic_data_section(synthetic_root),
        "stages": {
            "flow": {"align": "none", "crop_size": 64, "size": 28, "export_png": True, "workers": 2}
        },
    }
    cfg = load_config(write_config(tmp_path, payload))
    run_stage(DATABASE, cfg)
    result = run_stage(FLOW, cfg)
    assert run_stage(FLOW, cfg).skipped
    samples = samples_with_flows(cfg)
    assert (samples["flow_path"] != "").all() and len(samples) == len(
        pd.read_csv(result.outputs[0])
    )
    # Re-import the exported MEGC layout: one code path for our flows and published sets.
    megc_root = cfg.run_dir / "flow" / "megc"
    demographics = {"table": str(synthetic_root / "demographics.csv")}
    reread = build_composite(
        load_config(
            write_config(
                tmp_path / "re",
                {
                    "study": "r",
                    "data": {
                        "sources": [{"kind": "megc2019_flow", "root": str(megc_root)}],
                        "demographics": demographics,
                    },
                },
            )
        ).data
    ).samples
    assert len(reread) == len(samples)
    merged = reread.merge(samples, on=["dataset", "subject", "filename"], suffixes=("_png", "_npy"))
    assert (merged["label_png"] == merged["label_npy"]).all()
    for row in merged.itertuples():
        png = (
            np.asarray(Image.open(row.flow_path_png).convert("RGB"), dtype=np.float32).transpose(
                2, 0, 1
            )
            / 255
        )
        assert (
            np.abs(png - np.load(row.flow_path_npy)).max() <= 0.5 / 255 + 1e-6
        )  # 8-bit quantisation only


def test_flow_stage_lists_failures_when_lenient(synthetic_root: Path, tmp_path: Path):
    payload = {
        "study": "s",
        "data": synthetic_data_section(synthetic_root, on_problem="exclude"),
        "stages": {"flow": {"align": "dlib", "workers": 1}},  # random textures hold no face
    }
    cfg = load_config(write_config(tmp_path, payload))
    run_stage(DATABASE, cfg)
    run_stage(FLOW, cfg)
    failed = pd.read_csv(cfg.run_dir / "flow" / "exclusions.csv")
    assert len(failed) > 0 and failed["reason"].str.contains("no face found").all()
    assert failed["reason"].str.contains(r"\.jpg").all()  # names the file
    assert samples_with_flows(cfg).empty
    # Tables I-III of the samples studied: none remain, every exclusion of both stages listed
    studied = json.loads((cfg.run_dir / "flow" / "summary.json").read_text())
    database = json.loads((cfg.run_dir / "database" / "summary.json").read_text())
    assert studied["totals"]["samples"] == 0 and database["totals"]["samples"] == len(failed)
    assert studied["totals"]["excluded"] == database["totals"]["excluded"] + len(failed)
    assert studied_summary_file(cfg) == cfg.run_dir / "flow" / "summary.json"
    strict = load_config(
        write_config(
            tmp_path / "strict", {**payload, "data": synthetic_data_section(synthetic_root)}
        )
    )
    run_stage(DATABASE, strict)
    with pytest.raises(Exception, match="optical flow failed for"):
        run_stage(FLOW, strict)


# ---------------------------------------------------------------- real data


def _exact_forward_flow(du: np.ndarray, dv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward flow of a backward warp apex(q) = onset(q - d(q)): solve f(p) = d(p + f(p))."""
    yy, xx = np.mgrid[0 : du.shape[0], 0 : du.shape[1]].astype(np.float64)
    fu, fv = du.copy(), dv.copy()
    for _ in range(10):
        fu = ndimage.map_coordinates(du, [yy + fv, xx + fu], order=1, mode="nearest")
        fv = ndimage.map_coordinates(dv, [yy + fv, xx + fu], order=1, mode="nearest")
    return fu, fv


def test_tvl1_end_point_error_on_a_real_face(real_data: Path):
    """A real face photo warped by a known lip-corner pull (<= 2 px): mean EPE < 0.15 px."""
    photo = read_gray(real_data / "videos" / "single_face.jpg")
    landmarks = detect_landmarks(photo, "single_face.jpg")
    transform = alignment_transform(landmarks, 224, 0.1)
    face, points = transform.apply(photo), transform.points(landmarks)
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float64)

    def bump(centre: np.ndarray, amplitude: float) -> np.ndarray:
        return amplitude * np.exp(-((xx - centre[0]) ** 2 / 288 + (yy - centre[1]) ** 2 / 200))

    du = bump(points[48], -1.5) + bump(points[54], 1.5)  # lip corners out
    dv = bump(points[48], -1.2) + bump(points[54], -1.2)  # and up
    assert 1.5 < np.hypot(du, dv).max() <= 2.0
    apex = cv2.remap(
        face.astype(np.float32),
        (xx - du).astype(np.float32),
        (yy - dv).astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    apex = np.clip(np.rint(apex), 0, 255).astype(np.uint8)
    fu, fv = _exact_forward_flow(du, dv)
    u, v = compute_flow(face, apex, "tvl1")
    mask = np.zeros((224, 224), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.float32)).astype(np.int32), 1)
    epe = np.hypot(u - fu, v - fv)[mask.astype(bool)]
    moving = np.hypot(fu, fv)[mask.astype(bool)] > 0.1
    assert epe.mean() < 0.15
    assert epe[moving].mean() < 0.15


def test_alignment_levels_the_eyes(real_data: Path):
    photo = read_gray(real_data / "videos" / "single_face.jpg")
    h, w = photo.shape
    tilted = cv2.warpAffine(photo, cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0), (w, h))
    landmarks = detect_landmarks(tilted, "tilted")
    transform = alignment_transform(landmarks, 128, 0.1)
    points = transform.points(landmarks)
    right, left = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    assert abs(right[1] - left[1]) < 0.5
    assert points.min() > 0 and points.max() < 128


def test_flow_video_on_a_real_smile(real_data: Path, tmp_path: Path):
    out = tmp_path / "smile.png"
    result = runner.invoke(
        app,
        [
            "flow-video",
            str(real_data / "videos" / "single_face.mp4"),
            "--onset",
            "6",
            "--apex",
            "36",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    payload = json.loads(result.stdout)
    image = np.asarray(Image.open(out))
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    assert Path(payload["preview"]).stat().st_size > 10_000
    shares = payload["strain_share"]
    assert shares["mouth"] + shares["cheeks"] + shares["nose"] > 0.5  # a smile moves the lower face
    assert shares["mouth"] > shares["brows"]


def test_flow_video_without_a_face_names_the_file(real_data: Path, tmp_path: Path):
    video = real_data / "videos" / "face_noface.mov"
    result = runner.invoke(
        app,
        [
            "flow-video",
            str(video),
            "--onset",
            "100",
            "--apex",
            "110",
            "-o",
            str(tmp_path / "x.png"),
        ],
    )
    assert result.exit_code == 2
    assert "face_noface.mov frames 100->110 (onset): no face found" in result.stderr
    past = runner.invoke(
        app,
        ["flow-video", str(video), "--onset", "1", "--apex", "999", "-o", str(tmp_path / "x.png")],
    )
    assert past.exit_code == 2 and "past the end of the video (169 frames)" in past.stderr


def test_only_the_contrib_headless_opencv_is_installed():
    """Another OpenCV flavour would silently replace cv2 and break TV-L1 (DESIGN)."""
    from importlib import metadata

    flavours = {
        d.metadata["Name"].lower()
        for d in metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("opencv")
    }
    assert flavours == {"opencv-contrib-python-headless"}
    assert hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def test_detect_every_frame_option(real_data: Path):
    photo = read_gray(real_data / "videos" / "single_face.jpg")
    shifted = np.roll(photo, 3, axis=1)  # the whole head moves 3 px right
    once = compute.flow_from_frames(photo, shifted, FlowSettings(detect="onset", crop_size=128))
    every = compute.flow_from_frames(photo, shifted, FlowSettings(detect="every", crop_size=128))
    # one transform keeps the head motion; re-detecting on the apex frame removes most of it
    assert np.median(once.u) > 1.0
    assert abs(np.median(every.u)) < abs(np.median(once.u)) / 2


def test_a_crash_stops_the_flow_stage_and_names_the_sample(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A library error is not a bad input: no exclusion, the stage stops naming the sample."""
    import ethnicmer.flow.stage as flow_stage
    from ethnicmer.errors import FlowStageError

    def crash(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("simulated library failure")

    monkeypatch.setattr(flow_stage, "cached_flow", crash)
    payload = {
        "study": "s",
        "data": synthetic_data_section(synthetic_root, on_problem="exclude"),
        "stages": {"flow": {"align": "none", "workers": 1}},
    }
    cfg = load_config(write_config(tmp_path, payload))
    run_stage(DATABASE, cfg)
    with pytest.raises(FlowStageError, match=r"crashed on casme2/sub01/.*simulated library"):
        run_stage(FLOW, cfg)
    assert not (cfg.run_dir / "flow" / "manifest.json").exists()
