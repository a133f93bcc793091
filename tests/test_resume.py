"""Kill and resume (issue 15): SIGKILL at a random point, re-run, identical results.

``ethnicmer run`` is started as its own process and killed with SIGKILL (no
cleanup of any kind) at a random point of the benchmark stage (after a random
number of finished folds) and of the flow stage (after a random number of cache
entries). The re-run resumes and must give exactly the predictions and flow
images of an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from ethnicmer.cli import app
from ethnicmer.io import TEMP_MARK
from tests.conftest import synthetic_data_section, tiny_benchmark_config, write_config

runner = CliRunner()
MOTION = {"name": "motion"}
DUAL = {"name": "dual", "context": "ethnicity", "context_input": "flow"}


def _run_in_process(config: Path) -> None:
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output


def _kill_when(config: Path, ready: Callable[[], bool], timeout: float = 240.0) -> None:
    """Start ``ethnicmer run CONFIG`` and SIGKILL it as soon as ``ready()`` holds."""
    env = {**os.environ, "ETHNICMER_NO_PROGRESS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ethnicmer", "run", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                raise AssertionError(
                    "the run finished before it could be killed: "
                    + process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                )
            if time.monotonic() > deadline:
                raise AssertionError("the kill point was never reached")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _predictions(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "benchmark" / "predictions.csv", dtype={"subject": str})
    return (
        frame.drop(columns=["seconds"])
        .sort_values(["model", "seed", "dataset", "subject", "filename"])
        .reset_index(drop=True)
    )


def test_sigkill_during_the_benchmark_then_resume(tiny_megc: Path, tmp_path: Path):
    models = [MOTION, DUAL]  # 12 folds: motion-only and dual rows
    reference = tiny_benchmark_config(tmp_path / "a", tiny_megc, models)
    _run_in_process(reference)
    killed = tiny_benchmark_config(tmp_path / "b", tiny_megc, models)
    folds = tmp_path / "b" / "runs" / "tiny" / "benchmark" / "models"
    kill_after = random.Random(os.environ.get("PYTEST_SEED", time.time_ns())).randint(1, 10)
    print(f"killing after {kill_after} of 12 finished folds")

    def finished() -> list[Path]:
        # an atomic write's temporary file (ethnicmer.io.TEMP_MARK in its name) is not a
        # finished fold: the resumed run removes it, so it must not count as kept
        return [p for p in folds.rglob("folds/*.csv") if TEMP_MARK not in p.name]

    _kill_when(killed, lambda: len(finished()) >= kill_after)
    done = {p: p.stat().st_mtime_ns for p in finished()}
    assert kill_after <= len(done) < 12
    assert not (tmp_path / "b" / "runs" / "tiny" / "benchmark" / "manifest.json").exists()
    _run_in_process(killed)
    # the folds finished before the kill were kept, not trained again
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())
    pd.testing.assert_frame_equal(
        _predictions(tmp_path / "a" / "runs" / "tiny"),
        _predictions(tmp_path / "b" / "runs" / "tiny"),
    )
    leftovers = [p for p in folds.rglob("*") if TEMP_MARK in p.name]
    assert not leftovers, leftovers


def _flow_config(folder: Path, synthetic_root: Path) -> Path:
    stages = {"flow": {"align": "none", "crop_size": 224, "size": 28, "workers": 1}}
    payload = {"study": "syn", "data": synthetic_data_section(synthetic_root), "stages": stages}
    return write_config(folder, payload)


def _flow_images(run_dir: Path) -> dict[tuple[str, str, str], np.ndarray]:
    flows = pd.read_csv(run_dir / "flow" / "flows.csv", dtype=str)
    return {(r.dataset, r.subject, r.filename): np.load(r.flow_path) for r in flows.itertuples()}


def test_sigkill_during_the_flow_stage_then_resume(synthetic_root: Path, tmp_path: Path):
    reference = _flow_config(tmp_path / "a", synthetic_root)
    _run_in_process(reference)
    killed = _flow_config(tmp_path / "b", synthetic_root)
    cache = tmp_path / "b" / "runs" / "syn" / "cache" / "flow"
    kill_after = random.Random(os.environ.get("PYTEST_SEED", time.time_ns())).randint(1, 12)
    print(f"killing after {kill_after} cached flow images")

    def entries() -> int:
        return sum(1 for p in cache.rglob("*.npy") if TEMP_MARK not in p.name)

    _kill_when(killed, lambda: entries() >= kill_after)
    assert not (tmp_path / "b" / "runs" / "syn" / "flow" / "manifest.json").exists()
    _run_in_process(killed)
    expected = _flow_images(tmp_path / "a" / "runs" / "syn")
    resumed = _flow_images(tmp_path / "b" / "runs" / "syn")
    samples = pd.read_csv(tmp_path / "a" / "runs" / "syn" / "database" / "samples.csv")
    assert expected.keys() == resumed.keys() and len(expected) == len(samples)
    for key, image in expected.items():
        np.testing.assert_array_equal(image, resumed[key])
