"""Progress that reads in a log (issue 19): one line per step when stderr is no terminal."""

from __future__ import annotations

import pytest

import ethnicmer.progress as progress_module
from ethnicmer.progress import duration, progress


def test_a_log_gets_one_line_per_step_with_the_time_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("ETHNICMER_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module, "_console", type("Log", (), {"is_terminal": False})())
    clock = iter(range(0, 1000, 10))  # every step takes 10 s
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: float(next(clock)))
    assert list(progress(range(4), "benchmark folds", every=1)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "benchmark folds: 1/4 done, 10s elapsed, about 30s left",
        "benchmark folds: 2/4 done, 20s elapsed, about 20s left",
        "benchmark folds: 3/4 done, 30s elapsed, about 10s left",
        "benchmark folds: 4/4 done, 40s elapsed",
    ]
    # long loops print every 5 % (and after the last item)
    clock = iter(range(0, 10_000))
    list(progress(range(1000), "checking input images"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 20 and lines[-1].startswith("checking input images: 1000/1000 done")
    # ETHNICMER_NO_PROGRESS silences it
    monkeypatch.setenv("ETHNICMER_NO_PROGRESS", "1")
    list(progress(range(3), "quiet"))
    assert capsys.readouterr().err == ""


def test_durations_read_as_hours_minutes_seconds():
    assert [duration(s) for s in (42, 312, 13_200)] == ["42s", "5m12s", "3h40m"]
