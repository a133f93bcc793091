"""Shared helpers for the benchmark scripts (JSON output, medians, machine info)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def median_seconds(fn: Callable[[], object], rounds: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``rounds`` calls (seconds) and every round's time."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def real_data() -> Path:
    """``$ETHNICMER_REAL_DATA``, or exit with a message."""
    value = os.environ.get("ETHNICMER_REAL_DATA")
    if not value or not Path(value).is_dir():
        sys.exit("set ETHNICMER_REAL_DATA to the real data folder (see README)")
    return Path(value)


def write(name: str, payload: dict[str, Any]) -> None:
    """Print ``payload`` as JSON and save it as ``results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2)
    (RESULTS / f"{name}.json").write_text(text + "\n")
    print(text)
