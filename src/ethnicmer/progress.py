"""Progress bars for long loops (rich), quiet when stderr is not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")

_console = Console(stderr=True)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while drawing a progress bar on stderr.

    The bar is drawn only when stderr is a terminal and ``ETHNICMER_NO_PROGRESS``
    is unset, so logs and CI output stay clean.
    """
    enabled = _console.is_terminal and not os.environ.get("ETHNICMER_NO_PROGRESS")
    if not enabled:
        yield from items
        return
    yield from track(items, description=description, total=total, console=_console, transient=True)


def log(message: str) -> None:
    """Print a status line to stderr (kept separate from ``--json`` output on stdout)."""
    if _console.is_terminal:
        _console.print(message, highlight=False, soft_wrap=True)
    else:
        print(message, file=sys.stderr)
