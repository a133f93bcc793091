"""A small synthetic CASME II-, SAMM- (and SMIC-) format study for the demo and the tests.

It writes what the official releases look like to ethnicmer's readers: a CASME II
coding sheet (2014-05-08 layout) with frame folders ``sub01/EP01_01/img46.jpg``, a
SAMM v2 coding sheet with its text preamble and frame folders
``006/006_1_1/006_05562.jpg``, with ``smic_subjects`` a SMIC-E-HS onset/apex/offset
table (``SMIC/smic_hs_e.csv``) with frame folders
``SMIC/SMIC_HS_E/s1/s1_ne_01/image17580040.jpg``, and a per-subject demographics table. Frames are a
smooth random texture with one local, AU-like displacement bump (about 2 px at the
apex) whose place depends on the emotion. The groups are labels assigned to
subjects, **not** ethnicity; the full micro-expression simulator with planted
group differences is a separate, later module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from ethnicmer.config import SimulateConfig
from ethnicmer.io import atomic_path, write_csv_atomic, write_text_atomic

CASME2_EMOTIONS = ("happiness", "surprise", "disgust", "repression", "others")
SAMM_EMOTIONS = ("Happiness", "Surprise", "Anger", "Contempt", "Other")
# Displacement centre (fraction of width, height) and direction per emotion index.
_MOTION = {0: (0.5, 0.75, (0.0, -1.0)), 1: (0.5, 0.3, (-1.0, 0.0)), 2: (0.5, 0.5, (1.0, 0.0))}

SAMM_PREAMBLE = [
    "SAMM Dataset - Master FACS Codes (synthetic demo copy written by ethnicmer)",
    "",
    "Synthetic data: frames are a random texture, not faces.",
    "",
    "",
    "Symbol Key:",
    '"/" = or',
]


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = rng.normal(size=(size, size))
    smooth = ndimage.gaussian_filter(noise, sigma=size / 16)
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)
    yy, xx = np.mgrid[0:size, 0:size] / size
    face = np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.5) / 0.45) ** 2))
    return 40 + 170 * (0.6 * smooth + 0.4 * face)


def _warp(base: np.ndarray, emotion: int, amplitude: float) -> np.ndarray:
    size = base.shape[0]
    cx, cy, (dx, dy) = _MOTION.get(emotion, (0.5, 0.5, (0.0, 0.0)))
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    bump = amplitude * np.exp(
        -(((xx - cx * size) ** 2 + (yy - cy * size) ** 2) / (2 * (size / 8) ** 2))
    )
    coords = np.stack([yy - dy * bump, xx - dx * bump])
    return ndimage.map_coordinates(base, coords, order=3, mode="nearest")


def _write_frames(
    folder: Path, name: str, rng: np.random.Generator, emotion: int, cfg: SimulateConfig, first: int
) -> tuple[int, int, int, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    base = _texture(rng, cfg.image_size)
    n = cfg.frames_per_sample
    onset, apex, offset = first, first + n // 2, first + n - 1
    paths = []
    for i in range(n):
        frame = first + i
        amplitude = 2.0 * np.sin(np.pi * i / (n - 1))
        image = _warp(base, emotion, amplitude) + rng.normal(scale=1.0, size=base.shape)
        path = folder / name.format(frame=frame)
        with atomic_path(path) as tmp:
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(tmp, quality=95)
        paths.append(path)
    return onset, apex, offset, paths


def write_synthetic_study(cfg: SimulateConfig, seed: int) -> list[str]:
    """Write the synthetic CASME II- and SAMM-format study under ``cfg.out``.

    Layout: ``CASME2/CASME2-coding-synthetic.xlsx``, ``CASME2/frames/subNN/EPxx_yy/imgN.jpg``,
    ``SAMM/SAMM_Micro_FACS_Codes_synthetic.xlsx`` (13-line preamble before the
    header), ``SAMM/frames/0NN/0NN_k_1/0NN_NNNNN.jpg``, ``demographics.csv``
    (half the subjects of each dataset race code 0, half 2) and ``truth.json``.

    Args:
        cfg: sizes (subjects per dataset, samples per subject, frames per sample,
            image side in pixels).
        seed: seeds every random draw; the same seed writes identical files.

    Returns:
        Paths (as strings) of every file written.
    """
    rng = np.random.default_rng(seed)
    out = Path(cfg.out)
    written: list[Path] = []
    casme_rows, samm_rows, demo_rows = [], [], []
    for s in range(cfg.subjects_per_dataset):
        race = 0 if s % 2 else 2
        subject = f"sub{s + 1:02d}"
        demo_rows.append(
            {
                "dataset": "casme2",
                "subject": subject,
                "race_code": race,
                "gender": s % 2,
                "age_bin": 2,
                "source": "synthetic",
            }
        )
        for k in range(cfg.samples_per_subject):
            emotion = (s + k) % len(CASME2_EMOTIONS)
            filename = f"EP{k + 1:02d}_01"
            folder = out / "CASME2" / "frames" / subject / filename
            onset, apex, offset, paths = _write_frames(
                folder, "img{frame}.jpg", rng, emotion, cfg, 40 + 7 * k
            )
            written += paths
            casme_rows.append(
                [
                    s + 1,
                    filename,
                    onset,
                    apex,
                    offset,
                    "12" if emotion == 0 else "4",
                    CASME2_EMOTIONS[emotion],
                ]
            )
        samm_subject = f"{s + 6:03d}"
        demo_rows.append(
            {
                "dataset": "samm",
                "subject": samm_subject,
                "race_code": race,
                "gender": (s + 1) % 2,
                "age_bin": 3,
                "source": "synthetic",
            }
        )
        for k in range(cfg.samples_per_subject):
            emotion = (s + 2 * k) % len(SAMM_EMOTIONS)
            filename = f"{samm_subject}_{k + 1}_1"
            folder = out / "SAMM" / "frames" / samm_subject / filename
            name = samm_subject + "_{frame:05d}.jpg"
            onset, apex, offset, paths = _write_frames(
                folder, name, rng, emotion, cfg, 4000 + 100 * k
            )
            written += paths
            samm_rows.append(
                [
                    samm_subject,
                    filename,
                    1,
                    onset,
                    apex,
                    offset,
                    offset - onset + 1,
                    "Micro - 1/2",
                    "12" if emotion == 0 else "4",
                    SAMM_EMOTIONS[emotion],
                    1,
                    "",
                ]
            )
    smic_rows = []
    for s in range(cfg.smic_subjects):
        subject = f"s{s + 1}"
        if cfg.smic_demographics:
            demo_rows.append(
                {
                    "dataset": "smic",
                    "subject": subject,
                    "race_code": 0 if s % 2 else 2,
                    "gender": s % 2,
                    "age_bin": 2,
                    "source": "synthetic",
                }
            )
        for k in range(cfg.samples_per_subject):
            label = (s + k) % 3  # 0 Negative, 1 Positive, 2 Surprise
            clip = smic_clip(subject, label, k)
            folder = out / "SMIC" / "SMIC_HS_E" / subject / clip
            motion = {1: 0, 2: 1, 0: 2}[label]  # the texture's bump of that class
            onset, apex, offset, paths = _write_frames(
                folder, "image{frame}.jpg", rng, motion, cfg, 17_580_000 + 1000 * k
            )
            written += paths
            smic_rows.append(["smic", subject, clip, label, onset, apex, offset])
    written += write_sheets(out, casme_rows, samm_rows, demo_rows, smic_rows)
    truth = write_text_atomic(
        out / "truth.json",
        json.dumps(
            {
                "seed": seed,
                "note": "groups are labels, not ethnicity",
                "motion": {str(k): v for k, v in _MOTION.items()},
            },
            indent=2,
        ),
    )
    written.append(truth)
    return [str(p) for p in written]


SMIC_CLASSES = ("ne", "po", "sur")
"""SMIC clip-name class codes in label order (0 Negative, 1 Positive, 2 Surprise)."""


def smic_clip(subject: str, label: int, index: int) -> str:
    """A SMIC-E-HS clip name: ``<subject>_<ne|po|sur>_<nn>`` (``s1_ne_01``)."""
    return f"{subject}_{SMIC_CLASSES[label]}_{index + 1:02d}"


def write_sheets(
    out: Path,
    casme_rows: list[list],
    samm_rows: list[list],
    demo_rows: list[dict],
    smic_rows: list[list] | None = None,
) -> list[Path]:
    """Write the CASME II sheet (2014 layout), the SAMM sheet (13-line preamble), with
    ``smic_rows`` the SMIC-E-HS table, and ``demographics.csv`` under ``out``
    (atomically); return their paths.

    Args:
        casme_rows: ``[subject number, filename, onset, apex, offset, AUs, emotion]``.
        samm_rows: ``[subject, filename, inducement, onset, apex, offset, duration,
            micro, AUs, emotion, objective class, notes]``.
        demo_rows: dicts with ``dataset, subject, race_code, gender, age_bin, source``.
        smic_rows: ``[data, subject, clip, label, onset_frame, apex_frame, offset_frame]``.
    """
    casme_sheet = out / "CASME2" / "CASME2-coding-synthetic.xlsx"
    casme = pd.DataFrame(
        casme_rows,
        columns=[
            "Subject",
            "Filename",
            "OnsetFrame",
            "ApexFrame",
            "OffsetFrame",
            "Action Units",
            "Estimated Emotion",
        ],
    )
    with atomic_path(casme_sheet) as tmp:
        casme.to_excel(tmp, index=False)
    samm_header = [
        "Subject",
        "Filename",
        "Inducement Code",
        "Onset Frame",
        "Apex Frame",
        "Offset Frame",
        "Duration",
        "Micro",
        "Action Units",
        "Estimated Emotion",
        "Objective Classes",
        "Notes",
    ]
    preamble = [[line] + [None] * (len(samm_header) - 1) for line in SAMM_PREAMBLE]
    preamble += [[None] * len(samm_header)] * (13 - len(preamble))
    samm_sheet = out / "SAMM" / "SAMM_Micro_FACS_Codes_synthetic.xlsx"
    with atomic_path(samm_sheet) as tmp:
        pd.DataFrame([*preamble, samm_header, *samm_rows]).to_excel(tmp, index=False, header=False)
    written = [casme_sheet, samm_sheet]
    if smic_rows:
        columns = ["data", "subject", "clip", "label", "onset_frame", "apex_frame", "offset_frame"]
        table = pd.DataFrame(smic_rows, columns=columns)
        written.append(write_csv_atomic(table, out / "SMIC" / "smic_hs_e.csv"))
    written.append(write_csv_atomic(pd.DataFrame(demo_rows), out / "demographics.csv"))
    return written
