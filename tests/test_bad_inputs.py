"""Every bad input gets one ``error:`` line naming what is wrong (issue 15).

The table lives in :mod:`tests.bad_inputs`; this module runs each row through the
command line in its own folder and checks the exit status, that exactly one line
starts with ``error:``, that it matches the row's fragment, and that no Python
traceback escapes.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.bad_inputs import CASES, BadInput, Workspace, error_lines, hold_lock, write_tiny_megc

runner = CliRunner()


@pytest.fixture(scope="module")
def megc_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_megc(tmp_path_factory.mktemp("bad_inputs_template"))


def test_the_table_covers_at_least_60_inputs():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_answered(
    bad: BadInput, tmp_path: Path, megc_template: Path, monkeypatch: pytest.MonkeyPatch
):
    for module in bad.needs:
        pytest.importorskip(module, reason=f"this answer needs {module}")
    from ethnicmer import cli, stages

    real = os.environ.get("ETHNICMER_REAL_DATA")
    video = Path(real) / "videos" / "single_face.mp4" if real else None
    if bad.id.startswith("flow-video") and "past the end" in bad.fragment and video is None:
        pytest.skip("needs the real test video (ETHNICMER_REAL_DATA)")
    ws = Workspace(tmp_path, megc_template, video)
    argv = bad.make(ws)
    held = None
    if bad.setup == "lock":
        held = hold_lock(tmp_path / "runs" / "bad")
    elif bad.setup == "interrupt":

        def interrupted(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "run_stage", interrupted)
    elif bad.setup == "sigterm":

        def terminated(*args: object, **kwargs: object) -> None:
            # without the handler the signal would end the test process itself
            assert signal.getsignal(signal.SIGTERM) is cli._raise_terminated
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at once
            raise AssertionError("SIGTERM did not interrupt the command")

        monkeypatch.setattr(cli, "run_stage", terminated)
    elif bad.setup == "readonly":

        def read_only(frame: pd.DataFrame, path: Path) -> Path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        monkeypatch.setattr(stages, "write_csv_atomic", read_only)
    try:
        result = runner.invoke(cli.app, argv)
    finally:
        if held is not None:
            held.close()
    output = result.output
    if bad.setup == "sigterm":  # the command's handler is gone once it returned
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert "Traceback" not in output, output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{output}")
    assert result.exit_code == bad.code, output
    if bad.code == 0:
        exclusions = pd.read_csv(tmp_path / "runs" / "bad" / "database" / "exclusions.csv")
        assert exclusions["reason"].str.contains(bad.fragment, regex=True).any(), exclusions
        return
    lines = error_lines(output)
    assert len(lines) == 1, output
    message = output[output.index(lines[0]) :]  # the error line and any listing below it
    assert re.search(bad.fragment, message), message
