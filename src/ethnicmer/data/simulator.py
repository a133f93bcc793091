"""A micro-expression simulator with planted group differences (demo and tests).

Frames are a real, redistributable face photograph (scikit-image's ``astronaut``,
NASA, public domain, shipped in the scikit-image wheel) animated by smooth,
AU-like local displacement fields placed from the photo's 68 dlib landmarks:

=====  ===========================  ================================================
AU     name                         displacement
=====  ===========================  ================================================
1      inner brow raiser            inner brow ends (21, 22) up
2      outer brow raiser            outer brow ends (17, 26) up
4      brow lowerer                 inner brow ends down and together
5      upper lid raiser             upper eyelids (37/38, 43/44) up
6      cheek raiser                 cheeks below the eyes up
12     lip corner puller            lip corners (48 = subject's right, 54 = left)
                                    up and out; ``L12``/``R12`` one side only
15     lip corner depressor         lip corners down
26     jaw drop                     lower lip (57) and chin (8) down
=====  ===========================  ================================================

Each field is a Gaussian bump (σ about a fifth of the eye distance) times a
direction; the amplitude rises from 0 at the onset frame to 1–3 px at the apex and
falls back by the offset (a half sine). Subjects differ in pose (rotation ±4°,
scale ±8 %, shift ±4 px), brightness (±15 %) and sensor noise (σ 0.5–2 grey levels).

**Planted group styles** (``planted: true``; the ground truth is written to
``truth.json`` and ``truth.csv``): subjects of group A (race code 2, "Asian" under
the default grouping) show Surprise with the upper face (AU1+2+5) and Positive
with bilateral AU6+12; group B (race code 0, "White" → "Non-Asian") show Surprise
with a jaw drop (AU26) and Positive with a one-sided AU12 (L or R). With
``planted_by: dataset`` the same two styles follow the dataset instead (CASME II
subjects style A, SAMM subjects style B, whatever their group): groups are then
balanced within each dataset and differ in nothing, the control for telling a
group effect from a dataset effect (issue 9). With ``planted: false`` every
sample draws its style at random, whatever the group or dataset.

**Planted difficulty** (``difficulty: d`` > 0): the apex amplitude of the harder
subjects is multiplied by ``1 − d`` (smaller motion is harder to recognise): group
B's subjects with ``difficulty_by: group``, SAMM's with ``difficulty_by: dataset``.
The recognition effect models of the benchmark (:mod:`ethnicmer.stats.effects`)
should then attribute the difficulty to the group or to the dataset.
**The groups are labels with planted motion styles, not ethnicity.**
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ethnicmer.config import SimulateConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.data.synthetic import smic_clip, write_sheets
from ethnicmer.io import atomic_path, write_csv_atomic, write_text_atomic

# emotion word per dataset (sheet spelling) → the simulated class
CASME2_WORDS = {"happiness": "Positive", "surprise": "Surprise", "disgust": "Negative"}
SAMM_WORDS = {"Happiness": "Positive", "Surprise": "Surprise", "Anger": "Negative"}
STYLES = {
    "Positive": ("bilateral", "unilateral"),
    "Surprise": ("upper", "jaw"),
    "Negative": ("brow", "brow"),
}
"""Class → (group A style, group B style)."""


@dataclass(frozen=True)
class Motion:
    """One displacement bump: centre (x, y) in frame pixels, direction (unit), σ in pixels."""

    centre: tuple[float, float]
    direction: tuple[float, float]
    sigma: float


@lru_cache(maxsize=1)
def _face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut face crop (RGB uint8, 200×200) and its 68 landmarks in crop pixels."""
    from skimage import data

    from ethnicmer.flow.align import detect_landmarks

    image = data.astronaut()
    landmarks = detect_landmarks(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), "skimage astronaut")
    centre = landmarks.mean(axis=0)
    side = 200
    x0, y0 = int(centre[0] - side / 2), int(centre[1] - side / 2 - 10)
    crop = np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])
    return crop, landmarks - np.array([x0, y0])


def action_unit_motions(au: str, landmarks: np.ndarray) -> list[Motion]:
    """The displacement bumps of one AU code (``"12"``, ``"L12"``, ``"26"``, ...).

    Args:
        au: AU number with an optional ``L``/``R`` side prefix (the subject's side).
        landmarks: ``(68, 2)`` landmarks in frame pixels.

    Raises:
        ValueError: an AU the simulator does not model.
    """
    lm = landmarks
    d = float(np.linalg.norm(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)))
    s = 0.2 * d
    side = au[0] if au[0] in "LR" else ""
    number = int(au.lstrip("LR"))
    up, down = (0.0, -1.0), (0.0, 1.0)
    if number == 1:
        return [Motion(tuple(lm[i]), up, s) for i in (21, 22)]
    if number == 2:
        return [Motion(tuple(lm[i]), up, s) for i in (17, 26)]
    if number == 4:
        return [Motion(tuple(lm[21]), (0.6, 0.8), s), Motion(tuple(lm[22]), (-0.6, 0.8), s)]
    if number == 5:
        return [
            Motion(tuple(lm[[37, 38]].mean(axis=0)), up, 0.6 * s),
            Motion(tuple(lm[[43, 44]].mean(axis=0)), up, 0.6 * s),
        ]
    if number == 6:
        below = np.array([0.0, 0.45 * d])
        return [
            Motion(tuple(lm[[40, 41]].mean(axis=0) + below), up, 1.1 * s),
            Motion(tuple(lm[[46, 47]].mean(axis=0) + below), up, 1.1 * s),
        ]
    if number in (12, 15):
        right = Motion(tuple(lm[48]), (-0.6, -0.8) if number == 12 else down, s)
        left = Motion(tuple(lm[54]), (0.6, -0.8) if number == 12 else down, s)
        return {"": [right, left], "R": [right], "L": [left]}[side]
    if number == 26:
        return [Motion(tuple(lm[57]), down, 1.2 * s), Motion(tuple(lm[8]), down, 1.5 * s)]
    raise ValueError(f"the simulator does not model AU{au}")


def style_action_units(emotion: str, style: str, rng: np.random.Generator) -> list[str]:
    """AU codes of one (class, style); a unilateral AU12 picks its side at random."""
    if emotion == "Positive":
        return (
            ["6", "12"] if style == "bilateral" else [("L" if rng.random() < 0.5 else "R") + "12"]
        )
    if emotion == "Surprise":
        return ["1", "2", "5"] if style == "upper" else ["26"]
    return ["4", "15"]


def displacement(motions: list[Motion], size: int) -> np.ndarray:
    """``(size, size, 2)`` float32 displacement (dx, dy) in pixels for unit amplitude."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.zeros((size, size, 2), np.float32)
    for m in motions:
        bump = np.exp(-((xx - m.centre[0]) ** 2 + (yy - m.centre[1]) ** 2) / (2 * m.sigma**2))
        field[..., 0] += m.direction[0] * bump
        field[..., 1] += m.direction[1] * bump
    return field


def _subject_face(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A subject's base face ``(size, size, 3)`` float32, its landmarks and noise σ."""
    crop, landmarks = _face()
    angle = rng.uniform(-4, 4)
    scale = size / crop.shape[0] * rng.uniform(0.92, 1.08)
    matrix = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), angle, scale)
    # centre the rotated, scaled crop in the frame, then shift it
    centre_src = np.array([crop.shape[1] / 2, crop.shape[0] / 2, 1.0])
    matrix[:, 2] += np.array([size / 2, size / 2]) - matrix @ centre_src
    matrix[:, 2] += rng.uniform(-4, 4, size=2)
    face = cv2.warpAffine(
        crop.astype(np.float32),
        matrix,
        (size, size),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    face *= rng.uniform(0.85, 1.15)
    points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    return face, points, float(rng.uniform(0.5, 2.0))


def _frames(
    face: np.ndarray,
    field: np.ndarray,
    amplitude: float,
    n: int,
    noise: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """``n`` uint8 frames: onset (0) → apex (n // 2, full amplitude) → offset (n − 1)."""
    size = face.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    apex = n // 2
    frames = []
    for i in range(n):
        phase = i / apex if i <= apex else 1 - (i - apex) / max(n - 1 - apex, 1)
        a = np.float32(amplitude * np.sin(np.pi / 2 * phase))
        # backward mapping: the content at x moves to x + a·D(x)
        moved = cv2.remap(
            face,
            xx - a * field[..., 0],
            yy - a * field[..., 1],
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        )
        moved += rng.normal(scale=noise, size=moved.shape).astype(np.float32)
        frames.append(np.clip(moved, 0, 255).astype(np.uint8))
    return frames


def write_simulated_study(cfg: SimulateConfig, seed: int) -> list[str]:
    """Write a CASME II- and SAMM-format study of simulated micro-expressions.

    Layout (as the official releases, see :mod:`ethnicmer.data.synthetic`):
    ``CASME2/CASME2-coding-synthetic.xlsx`` + ``CASME2/frames/subNN/EPkk_01/imgN.jpg``
    (RGB), ``SAMM/SAMM_Micro_FACS_Codes_synthetic.xlsx`` (text preamble) +
    ``SAMM/frames/0NN/0NN_k_1/0NN_NNNNN.jpg`` (grey), with ``smic_subjects`` the
    SMIC-E-HS layout ``SMIC/smic_hs_e.csv`` + ``SMIC/SMIC_HS_E/sN/sN_<ne|po|sur>_kk/
    imageF.jpg`` (RGB), ``demographics.csv`` (SMIC rows only with
    ``smic_demographics``), ``truth.csv`` (per sample: group, class, style, AUs, apex
    amplitude in pixels) and ``truth.json`` (the planted rules).

    Classes cycle Positive, Surprise, Negative over a subject's samples; half the
    subjects of each dataset are group A (race code 2), half group B (race code 0).
    With ``planted_by: dataset`` SMIC subjects draw their style at random (the styles
    follow CASME II and SAMM).

    Args:
        cfg: sizes, ``planted`` (styles on or off) and ``planted_by`` (group or dataset).
        seed: seeds every draw; the same seed writes identical files.

    Returns:
        Paths (as strings) of every file written.
    """
    rng = np.random.default_rng(seed)
    out = Path(cfg.out)
    written: list[Path] = []
    casme_rows, samm_rows, smic_rows, demo_rows, truth_rows = [], [], [], [], []
    classes = ("Positive", "Surprise", "Negative")
    counts = {"casme2": cfg.subjects_per_dataset, "samm": cfg.subjects_per_dataset}
    counts["smic"] = cfg.smic_subjects
    for dataset, n_subjects in counts.items():
        words = {v: k for k, v in (CASME2_WORDS if dataset == "casme2" else SAMM_WORDS).items()}
        for s in range(n_subjects):
            group_a = s % 2 == 0
            subject = {"casme2": f"sub{s + 1:02d}", "samm": f"{s + 6:03d}", "smic": f"s{s + 1}"}[
                dataset
            ]
            if dataset != "smic" or cfg.smic_demographics:
                demo_rows.append(
                    {
                        "dataset": dataset,
                        "subject": subject,
                        "race_code": 2 if group_a else 0,
                        "gender": s % 2,
                        "age_bin": 2,
                        "source": "simulated",
                    }
                )
            face, landmarks, noise = _subject_face(rng, cfg.image_size)
            for k in range(cfg.samples_per_subject):
                emotion = classes[k % 3]
                by_dataset = cfg.planted_by == "dataset"
                if cfg.planted and not (by_dataset and dataset == "smic"):
                    style_a = group_a if not by_dataset else dataset == "casme2"
                    style = STYLES[emotion][0 if style_a else 1]
                else:  # no styles planted (SMIC has none when styles follow the dataset)
                    style = STYLES[emotion][int(rng.integers(2))]
                aus = style_action_units(emotion, style, rng)
                motions = [m for au in aus for m in action_unit_motions(au, landmarks)]
                amplitude = float(rng.uniform(1.0, 3.0))
                harder = (not group_a) if cfg.difficulty_by == "group" else dataset == "samm"
                if harder:
                    amplitude *= 1.0 - cfg.difficulty
                frames = _frames(
                    face,
                    displacement(motions, cfg.image_size),
                    amplitude,
                    cfg.frames_per_sample,
                    noise,
                    rng,
                )
                if dataset == "casme2":
                    filename = f"EP{k + 1:02d}_01"
                    first = 40 + 7 * k
                    folder = out / "CASME2" / "frames" / subject / filename
                    names = [f"img{first + i}.jpg" for i in range(len(frames))]
                elif dataset == "smic":
                    filename = smic_clip(subject, EMOTION_CLASSES.index(emotion), k)
                    first = 17_580_000 + 1000 * k
                    folder = out / "SMIC" / "SMIC_HS_E" / subject / filename
                    names = [f"image{first + i}.jpg" for i in range(len(frames))]
                else:
                    filename = f"{subject}_{k + 1}_1"
                    first = 4000 + 100 * k
                    folder = out / "SAMM" / "frames" / subject / filename
                    names = [f"{subject}_{first + i:05d}.jpg" for i in range(len(frames))]
                folder.mkdir(parents=True, exist_ok=True)
                for name, frame in zip(names, frames, strict=True):
                    path = folder / name
                    grey = dataset == "samm"  # SAMM's camera is greyscale
                    image = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if grey else cv2.COLOR_RGB2BGR)
                    with atomic_path(path) as tmp:
                        cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    written.append(path)
                n = len(frames)
                onset, apex, offset = first, first + n // 2, first + n - 1
                au_text = "+".join(aus)
                if dataset == "casme2":
                    casme_rows.append(
                        [s + 1, filename, onset, apex, offset, au_text, words[emotion]]
                    )
                elif dataset == "smic":
                    label = EMOTION_CLASSES.index(emotion)
                    smic_rows.append(["smic", subject, filename, label, onset, apex, offset])
                else:
                    samm_rows.append(
                        [
                            subject,
                            filename,
                            1,
                            onset,
                            apex,
                            offset,
                            n,
                            "Micro - 1/2",
                            au_text,
                            words[emotion],
                            1,
                            "",
                        ]
                    )
                truth_rows.append(
                    {
                        "dataset": dataset,
                        "subject": subject,
                        "filename": filename,
                        "group": "A" if group_a else "B",
                        "label": emotion,
                        "style": style,
                        "action_units": au_text,
                        "apex_amplitude_px": round(amplitude, 3),
                        "harder": bool(harder and cfg.difficulty > 0),
                    }
                )
    written += write_sheets(out, casme_rows, samm_rows, demo_rows, smic_rows)
    truth_csv = write_csv_atomic(pd.DataFrame(truth_rows), out / "truth.csv")
    truth_json = write_text_atomic(
        out / "truth.json",
        json.dumps(
            {
                "seed": seed,
                "planted": cfg.planted,
                "planted_by": cfg.planted_by if cfg.planted else None,
                "difficulty": cfg.difficulty,
                "difficulty_by": cfg.difficulty_by if cfg.difficulty > 0 else None,
                "note": "groups are labels with planted motion styles, not ethnicity",
                "group_race_code": {"A": 2, "B": 0},
                "styles": {k: {"A": v[0], "B": v[1]} for k, v in STYLES.items()},
                "style_of": (
                    {"casme2": "A", "samm": "B"}
                    if cfg.planted_by == "dataset"
                    else {"group A": "A", "group B": "B"}
                )
                if cfg.planted
                else "random per sample",
            },
            indent=2,
        ),
    )
    return [str(p) for p in [*written, truth_csv, truth_json]]
