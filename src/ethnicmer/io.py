"""Atomic file writes: every output appears whole or not at all.

Each writer writes to a uniquely named temporary file beside the target
(``.<name>.<random>.tmp<suffix>``, so two processes never share one) and renames
it over the target with :func:`os.replace`, which is atomic on POSIX and Windows
within one file system. A crash or a kill leaves the old file or the new one,
never half of either; a leftover temporary file is ignored by every reader and
removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

TEMP_MARK = ".tmp"


def _default_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (e.g. 0o644)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; rename it over ``path`` on success.

    The temporary name keeps ``path``'s suffix, so libraries that infer the format
    from the extension (numpy, matplotlib, Pillow) write the right format. On any
    exception (including ``KeyboardInterrupt``) the temporary file is removed and
    ``path`` is left as it was.

    Raises:
        OSError: the folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent
    )
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _MODE)  # mkstemp makes 0o600 files; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: Path | str, payload: Any, sort_keys: bool = False) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically; return ``path``."""
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, default=str) + "\n"
    return write_text_atomic(path, text)


def write_csv_atomic(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write ``frame`` as CSV (no index) to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_parquet_atomic(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write ``frame`` as Parquet (no index) to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def save_npy_atomic(path: Path | str, array: np.ndarray) -> Path:
    """Save ``array`` as ``.npy`` to ``path`` atomically (no pickles); return ``path``."""
    import numpy as np

    with atomic_path(path) as tmp:
        np.save(tmp, array, allow_pickle=False)
    return Path(path)


def save_npz_atomic(path: Path | str, **arrays: np.ndarray) -> Path:
    """Save compressed ``.npz`` arrays to ``path`` atomically; return ``path``."""
    import numpy as np

    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


def save_figure_atomic(figure: Figure, path: Path | str, **kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, **kwargs)
    return Path(path)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files that a killed writer left in ``folder`` (recursively).

    Returns:
        How many files were removed.
    """
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for path in Path(folder).rglob(f".*{TEMP_MARK}*"):
        if path.is_file() and TEMP_MARK in path.name:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
