"""Progress of long loops: rich bars on a terminal, plain lines in a log.

On a terminal (stderr is a TTY) a loop draws a transient rich progress bar. When
stderr is a file or a pipe (a batch job, ``nohup``, CI) the loop prints plain lines
instead: ``<description>: 12/624 done, 5m12s elapsed, about 3h40m left``, after every
``every`` items (default: every item up to 100, else every 5 %) and at least once a
minute, and always after the last. ``ETHNICMER_NO_PROGRESS=1`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")

_console = Console(stderr=True)

LOG_INTERVAL_SECONDS = 60.0
"""A log line at least this often (seconds) while a loop runs, even between steps."""


def duration(seconds: float) -> str:
    """``3h40m``, ``5m12s`` or ``42s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _log_lines(
    items: Iterable[T], description: str, total: int | None, every: int | None
) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if every is None:
        every = 1 if total is None or total <= 100 else max(1, total // 20)
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if done % every and done != total and now - last < LOG_INTERVAL_SECONDS:
            continue
        last = now
        elapsed = now - start
        line = f"{description}: {done}" + (f"/{total}" if total else "") + " done, "
        line += f"{duration(elapsed)} elapsed"
        if total and done < total:
            line += f", about {duration(elapsed / done * (total - done))} left"
        print(line, file=sys.stderr, flush=True)


def progress(
    items: Iterable[T], description: str, total: int | None = None, every: int | None = None
) -> Iterator[T]:
    """Yield ``items`` while showing progress on stderr (see the module doc).

    Args:
        items: the loop's items.
        description: what the loop does (``"benchmark folds"``).
        total: the number of items when ``items`` has no length.
        every: in a log, print a line after every ``every`` items.
    """
    if os.environ.get("ETHNICMER_NO_PROGRESS"):
        yield from items
    elif _console.is_terminal:
        yield from track(
            items, description=description, total=total, console=_console, transient=True
        )
    else:
        yield from _log_lines(items, description, total, every)


def log(message: str) -> None:
    """Print a status line to stderr (kept separate from ``--json`` output on stdout)."""
    if _console.is_terminal:
        _console.print(message, highlight=False, soft_wrap=True)
    else:
        print(message, file=sys.stderr)
