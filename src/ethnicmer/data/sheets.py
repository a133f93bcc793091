"""Helpers shared by the coding-sheet and CSV readers."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ethnicmer.errors import DataError


def _norm(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def select_columns(
    frame: pd.DataFrame,
    required: dict[str, str],
    path: Path,
    optional: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Rename a sheet's columns to canonical names, matching case/space-insensitively.

    Args:
        frame: the sheet as read.
        required: canonical name → sheet column name (e.g. ``{"onset": "OnsetFrame"}``).
        path: the sheet file, for the error message.
        optional: like ``required`` but may be absent (filled with NA).

    Returns:
        A frame with exactly the canonical columns, in the order given.

    Raises:
        DataError: a required column is missing; the message lists the columns found.
    """
    lookup = {_norm(col): col for col in frame.columns}
    renamed: dict[str, pd.Series] = {}
    missing = []
    for canonical, column in required.items():
        source = lookup.get(_norm(column))
        if source is None:
            missing.append(column)
        else:
            renamed[canonical] = frame[source]
    if missing:
        found = [str(c) for c in frame.columns if not str(c).startswith("Unnamed")]
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {found}")
    for canonical, column in (optional or {}).items():
        source = lookup.get(_norm(column))
        renamed[canonical] = (
            frame[source]
            if source is not None
            else pd.Series([pd.NA] * len(frame), index=frame.index, dtype="object")
        )
    return pd.DataFrame(renamed, index=frame.index)


def read_table(path: Path, header: int | None = 0) -> pd.DataFrame:
    """Read an ``.xlsx``/``.xls``/``.csv`` file as strings-or-numbers.

    Raises:
        DataError: the file is missing or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path, header=header)
        return pd.read_csv(path, header=header, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas/openpyxl raise many types on corrupt files
        raise DataError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from exc


def cell_text(value: object) -> str:
    """A sheet cell as stripped text; NaN/None become ``""``; ``6.0`` becomes ``"6"``."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def frame_number(value: object) -> int | None:
    """A frame-number cell as int, or ``None`` when it holds no integer (``/``, empty)."""
    text = cell_text(value)
    return int(text) if re.fullmatch(r"\d+", text) else None
