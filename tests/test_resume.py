"""Kill and resume (issue 15): SIGKILL at a random point, re-run, identical results.

``ethnicmer run`` is started as its own process and killed with SIGKILL (no
cleanup of any kind) at a random point of the benchmark stage (after a random
number of finished folds) and of the flow stage (after a random number of cache
entries). The re-run resumes and must give exactly the predictions and flow
images of an uninterrupted run. SIGINT (Ctrl-C) and SIGTERM during a process-pool
benchmark must end the command at once, its fold workers with it.
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
import pytest
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


# The suite may be started from a background job, whose SIGINT is ignored; an ignored
# signal stays ignored in children, and Python then raises no KeyboardInterrupt. The
# child restores Python's Ctrl-C handler itself, then runs ``python -m ethnicmer``.
_ETHNICMER_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'ethnicmer'; runpy.run_module('ethnicmer', run_name='__main__')"
)


def _start(config: Path) -> subprocess.Popen:
    """``ethnicmer run CONFIG`` as its own process (stderr piped, SIGINT not ignored)."""
    env = {**os.environ, "ETHNICMER_NO_PROGRESS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _ETHNICMER_WITH_CTRL_C, "run", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(config: Path, ready: Callable[[], bool], timeout: float = 240.0) -> None:
    """Start ``ethnicmer run CONFIG`` and SIGKILL it as soon as ``ready()`` holds."""
    process = _start(config)
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


def _fold_workers(pid: int) -> list[int]:
    """The process-pool workers (spawned children; not the resource tracker) of ``pid``."""
    workers = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in children.read_text().split():
                if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                    workers.append(int(child))
        except OSError:  # a thread or child ended while it was read
            continue
    return workers


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (seconds; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_CHILDREN = Path(f"/proc/self/task/{os.getpid()}/children")


@pytest.mark.skipif(not _CHILDREN.exists(), reason="reads /proc/<pid>/task/*/children (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_the_folds_in_flight(tiny_megc: Path, tmp_path: Path, signum: int):
    """Ctrl-C (SIGINT to the command alone, as a scheduler sends it) or SIGTERM during a
    process-pool benchmark stops the workers' running folds: the command exits at once
    with the resume message instead of waiting for them. The folds here never finish
    on their own (100,000 epochs), so a command that waited would hit the timeout."""
    config = tiny_benchmark_config(
        tmp_path,
        tiny_megc,
        [MOTION],
        epochs=100_000,
        executor={"kind": "process", "workers": 2, "threads_per_fold": 1},
    )
    process = _start(config)
    deadline = time.monotonic() + 180
    workers: list[int] = []
    try:
        # both workers up, and one past importing torch and reading its inputs: training
        while (
            len(workers := _fold_workers(process.pid)) < 2
            or max(_cpu_seconds(pid) for pid in workers) < 5.0
        ):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the fold workers never started training"
            time.sleep(0.1)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        survivors = [pid for pid in workers if _alive(pid)]
    finally:  # never leave a 100,000-epoch fold training after a failed assertion
        for pid in [process.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    code = {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
    message = stderr.decode()
    assert process.returncode == code, message[-2000:]
    assert "finished stages and folds are kept: re-run the same command" in message
    assert "Traceback" not in message, message[-2000:]
    assert not survivors, f"fold workers {survivors} still ran after the command exited"
