"""Devices and precision (issue 19): CPU numbers unchanged, GPUs where present."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ethnicmer.config import load_config
from ethnicmer.devices import resolve_compute
from ethnicmer.errors import ConfigError
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import BENCHMARK, DATABASE
from tests.conftest import tiny_benchmark_config

MOTION = {"name": "motion"}


def test_devices_resolve_or_say_what_the_machine_has():
    compute = resolve_compute("auto")
    expected = "cuda:0" if torch.cuda.is_available() else None
    if expected is None and torch.backends.mps.is_available():
        expected = "mps"
    assert compute.device == (expected or "cpu")
    assert resolve_compute("cpu").spec() == {"device": "cpu", "precision": "32"}
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda"):
        resolve_compute("gpu")
    with pytest.raises(ConfigError, match="precision bf16-mixed needs a GPU"):
        resolve_compute("cpu", "bf16-mixed")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"cuda:1: this machine has 0 CUDA device"):
            resolve_compute("cuda:1")


def _predictions(run_dir: Path, row: str = "motion") -> pd.DataFrame:
    folder = run_dir / "benchmark" / "models" / row / "seed-0" / "folds"
    frames = [pd.read_csv(p, dtype={"subject": str}) for p in sorted(folder.glob("*.csv"))]
    return pd.concat(frames).drop(columns=["seconds"]).reset_index(drop=True)


def _run(tmp_path: Path, root: Path, **bench: object) -> Path:
    cfg = load_config(
        tiny_benchmark_config(
            tmp_path, root, [MOTION], max_folds=2, save_checkpoints=False, **bench
        )
    )
    run_stage(DATABASE, cfg)
    run_stage(BENCHMARK, cfg)
    return cfg.run_dir


def test_cpu_predictions_are_the_same_whatever_the_device_setting(tiny_megc: Path, tmp_path: Path):
    explicit = _run(tmp_path / "cpu", tiny_megc, device="cpu")
    spec = json.loads((explicit / "benchmark/models/motion/seed-0/spec.json").read_text())
    assert spec["compute"] == {"device": "cpu", "precision": "32"}
    manifest = json.loads((explicit / "benchmark/manifest.json").read_text())
    assert manifest["runtime"] == {
        "compute": {"device": "cpu", "precision": "32"},
        "threads_per_fold": 1,
    }
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("auto resolves to an accelerator here; see the CUDA test")
    auto = _run(tmp_path / "auto", tiny_megc, device="auto")
    pd.testing.assert_frame_equal(_predictions(explicit), _predictions(auto))


def test_folds_of_an_older_spec_are_kept_on_the_cpu(tiny_megc: Path, tmp_path: Path):
    """Folds trained before the device setting existed trained on the CPU in float32:
    they are kept there (no re-training), and re-trained on another device or precision."""
    run_dir = _run(tmp_path, tiny_megc, device="cpu")
    spec_file = run_dir / "benchmark/models/motion/seed-0/spec.json"
    spec = json.loads(spec_file.read_text())
    spec.pop("compute")
    spec_file.write_text(json.dumps(spec))
    fold = next((run_dir / "benchmark/models/motion/seed-0/folds").glob("*.csv"))
    before = fold.stat().st_mtime_ns
    cfg = load_config(
        tiny_benchmark_config(tmp_path, tiny_megc, [MOTION], max_folds=2, save_checkpoints=False)
    )
    run_stage(BENCHMARK, cfg, force=True)
    assert fold.stat().st_mtime_ns == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_and_cpu_predictions_agree(tiny_megc: Path, tmp_path: Path):
    """A tiny run on CUDA and on the CPU: other kernels, so not bit-identical, but the
    same model: predictions agree on nearly every sample and the logits closely."""
    cpu = _predictions(_run(tmp_path / "cpu", tiny_megc, device="cpu"))
    gpu = _predictions(_run(tmp_path / "gpu", tiny_megc, device="cuda"))
    assert (cpu["y_pred"] == gpu["y_pred"]).mean() >= 0.9
    logits = [f"logit_{k}" for k in range(3)]
    assert (cpu[logits] - gpu[logits]).abs().to_numpy().max() < 0.5
