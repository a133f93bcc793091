"""Shared fixtures: real data (through ETHNICMER_REAL_DATA) and small synthetic studies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ethnicmer.config import SimulateConfig, load_config
from ethnicmer.data.synthetic import write_synthetic_study


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder; skips when ETHNICMER_REAL_DATA is unset.

    With ETHNICMER_REQUIRE_REAL_DATA=1 (set by .ci/run when the data exists) a
    missing folder fails instead of skipping, so CI cannot pass vacuously.
    """
    value = os.environ.get("ETHNICMER_REAL_DATA")
    required = os.environ.get("ETHNICMER_REQUIRE_REAL_DATA") == "1"
    if not value:
        if required:
            pytest.fail("ETHNICMER_REQUIRE_REAL_DATA=1 but ETHNICMER_REAL_DATA is unset")
        pytest.skip("ETHNICMER_REAL_DATA is not set: real-data test skipped")
    path = Path(value)
    if not (path / "megc2019-flow").is_dir():
        pytest.fail(f"ETHNICMER_REAL_DATA={path} has no megc2019-flow/ folder")
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic CASME II + SAMM study (4 subjects each, 3 samples each), written once."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_study(
        SimulateConfig(out=root, subjects_per_dataset=4, samples_per_subject=3), seed=0
    )
    return root


def synthetic_data_section(root: Path, **overrides: object) -> dict:
    """The ``data`` section of a config over the synthetic study at ``root``."""
    data = {
        "sources": [
            {
                "kind": "casme2",
                "sheet": str(root / "CASME2" / "CASME2-coding-synthetic.xlsx"),
                "frames": str(root / "CASME2" / "frames"),
            },
            {
                "kind": "samm",
                "sheet": str(root / "SAMM" / "SAMM_Micro_FACS_Codes_synthetic.xlsx"),
                "frames": str(root / "SAMM" / "frames"),
            },
        ],
        "demographics": {"table": str(root / "demographics.csv")},
    }
    data.update(overrides)
    return data


def write_config(tmp_path: Path, payload: dict, name: str = "study.yaml") -> Path:
    """Write ``payload`` as YAML with runs_dir inside ``tmp_path``; return the path."""
    payload = {"runs_dir": str(tmp_path / "runs"), **payload}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(payload, sort_keys=False))
    return path


@pytest.fixture
def make_config(tmp_path: Path):
    """Factory: ``make_config(data=..., study=...)`` → validated StudyConfig."""

    def factory(data: dict, study: str = "t", **extra: object):
        return load_config(write_config(tmp_path, {"study": study, "data": data, **extra}))

    return factory


TINY_SUBJECTS = [
    ("casme2", "sub01"),
    ("casme2", "sub02"),
    ("casme2", "sub03"),
    ("samm", "006"),
    ("samm", "007"),
    ("samm", "012"),
]


@pytest.fixture(scope="session")
def tiny_megc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MEGC2019-layout flow set (random images) over six real subject ids.

    Subject ids are real so the shipped demographics apply: casme2 subjects are
    Asian; SAMM 006 and 007 are Non-Asian (White), 012 is Asian (Others).
    """
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny_megc")
    flow_dir = root / "datasets" / "STSNet_whole_norm_u_v_os"
    apex_dir = root / "datasets" / "combined_datasets_whole"
    flow_dir.mkdir(parents=True)
    apex_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["dataset,sub,filename_o,label,apex,imagename,sub_filename"]
    for dataset, subject in TINY_SUBJECTS:
        for k in range(4):
            filename = f"EP0{k}_01" if dataset == "casme2" else f"{subject}_{k}_1"
            label = k % 3
            image = rng.integers(0, 60, size=(28, 28, 3), dtype=np.uint8)
            image[:, :, label] += 150  # a learnable label signal
            Image.fromarray(image).save(flow_dir / f"{subject}_{filename} .png")
            Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(
                apex_dir / f"{subject}_{filename}.jpg"
            )
            lines.append(f"{dataset},{subject},{filename},{label},,{subject}_{filename}.jpg,")
    (root / "combined_3_class2_for_optical_flow.csv").write_text("\n".join(lines) + "\n")
    return root


def tiny_benchmark_config(tmp_path: Path, root: Path, models: list[dict], **bench: object) -> Path:
    """A study config running a tiny benchmark on ``root`` (a tiny_megc set)."""
    settings = {
        "epochs": 1,
        "input_size": 28,
        "rgb_size": 32,
        "batch_size": 8,
        "bootstrap": 20,
        "executor": {"kind": "inline", "threads_per_fold": 1},
        "models": models,
    }
    settings.update(bench)
    payload = {
        "study": "tiny",
        "seed": 0,
        "data": {"sources": [{"kind": "megc2019_flow", "root": str(root)}]},
        "stages": {"benchmark": settings},
    }
    return write_config(tmp_path, payload)


SMIC_SUBJECTS = ["s01", "s02", "s03"]


def write_megc_rows(root: Path, rows: list[tuple[str, str, str, int]], seed: int) -> list[str]:
    """Random 28 px flow PNGs (with a learnable label signal) and 32 px apex crops in the
    MEGC2019 layout under ``root`` for ``(dataset, sub, filename_o, label)`` rows; returns
    the CSV lines (files named by the CSV's own spellings, as the shared sets are)."""
    import numpy as np
    from PIL import Image

    flow_dir = root / "datasets" / "STSNet_whole_norm_u_v_os"
    apex_dir = root / "datasets" / "combined_datasets_whole"
    flow_dir.mkdir(parents=True, exist_ok=True)
    apex_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for dataset, subject, filename, label in rows:
        image = rng.integers(0, 60, size=(28, 28, 3), dtype=np.uint8)
        image[:, :, label] += 150
        Image.fromarray(image).save(flow_dir / f"{subject}_{filename} .png")
        crop = f"{subject}_{filename.replace('s0', 's', 1) if dataset == 'smic' else filename}.jpg"
        Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(
            apex_dir / crop
        )
        lines.append(f"{dataset},{subject},{filename},{label},,{crop},")
    return lines


@pytest.fixture(scope="session")
def tiny_cde(tiny_megc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_megc`` plus SMIC rows in the full composite's spelling (subject ``s01``,
    clip ``s01_ne_01``, apex crop ``s01_s1_ne_01.jpg``); SMIC subjects have no
    demographics in the shipped table."""
    import shutil

    root = tmp_path_factory.mktemp("tiny_cde")
    shutil.copytree(tiny_megc, root, dirs_exist_ok=True)
    codes = ("ne", "po", "sur")
    rows = [
        ("smic", s, f"{s}_{codes[k % 3]}_{k + 1:02d}", k % 3)
        for s in SMIC_SUBJECTS
        for k in range(4)
    ]
    lines = write_megc_rows(root, rows, seed=1)
    csv = root / "combined_3_class2_for_optical_flow.csv"
    csv.write_text(csv.read_text() + "\n".join(lines) + "\n")
    return root
