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
    path = tmp_path / name
    path.write_text(yaml.safe_dump(payload, sort_keys=False))
    return path


@pytest.fixture
def make_config(tmp_path: Path):
    """Factory: ``make_config(data=..., study=...)`` → validated StudyConfig."""

    def factory(data: dict, study: str = "t", **extra: object):
        return load_config(write_config(tmp_path, {"study": study, "data": data, **extra}))

    return factory
