"""Helpers shared by the coding-sheet and CSV readers."""

from __future__ import annotations

import csv
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


_EXCEL_MAGIC = {
    ".xlsx": (b"PK\x03\x04", "a ZIP-based Excel workbook"),
    ".xlsm": (b"PK\x03\x04", "a ZIP-based Excel workbook"),
    ".xls": (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook"),
}


def _check_excel(path: Path) -> None:
    """An ``.xlsx``/``.xls`` file must start like an Excel workbook.

    Raises:
        DataError: it does not (e.g. a CSV or text file renamed to ``.xlsx``).
    """
    magic, kind = _EXCEL_MAGIC[path.suffix.lower()]
    with open(path, "rb") as handle:
        head = handle.read(len(magic))
    if head != magic:
        raise DataError(
            f"{path}: not an Excel workbook: the name ends in {path.suffix} but the file is not "
            f"{kind} (a CSV or text file renamed? save it as a real workbook, or as .csv)"
        )


def _check_csv_fields(path: Path) -> None:
    """Every CSV record must have as many fields as the header.

    pandas reads a first data line with extra fields as an index and shifts
    every column by the extra count, so the error surfaced later as a wrong
    value on the wrong line; here it is named at its own line.

    Raises:
        DataError: a record has more or fewer fields than the header (names the
            line, counts both, and shows the record).
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        expected = None
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue
            if expected is None:
                expected = len(record)
                continue
            if len(record) != expected:
                shown = ",".join(record)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(record)} fields where the header has "
                    f"{expected} ({shown!r}); a stray comma or a missing one?"
                )


def _record_lines(path: Path) -> list[int]:
    """1-based line on which each non-empty CSV record starts (pandas skips empty lines)."""
    starts = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        line = 1
        for record in reader:
            if record:
                starts.append(line)
            line = reader.line_num + 1
    return starts


def _number_rows(frame: pd.DataFrame, path: Path, header: int | None) -> pd.DataFrame:
    """Index ``frame`` by the file line (CSV) or sheet row (Excel) of each data row.

    Messages then name the row a user sees in an editor, also when a CSV has empty
    lines (which pandas skips) between its records.
    """
    first = 1 if header is None else header + 2
    lines = list(range(first, first + len(frame)))
    if path.suffix.lower() not in _EXCEL_MAGIC:
        records = _record_lines(path)[0 if header is None else header + 1 :]
        if len(records) == len(frame):
            lines = records
    frame.index = pd.Index(lines, name="line")
    return frame


def read_table(path: Path, header: int | None = 0) -> pd.DataFrame:
    """Read an ``.xlsx``/``.xls``/``.csv`` file as strings-or-numbers.

    The index of the returned frame is each row's line in the file (CSV) or its row
    in the sheet (Excel), 1-based, for messages.

    Raises:
        DataError: the file is missing, is not what its extension says (a text
            file named ``.xlsx``), has a CSV record with more or fewer fields
            than the header, or cannot be parsed; the message names the file
            (and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in _EXCEL_MAGIC:
            _check_excel(path)
            return _number_rows(pd.read_excel(path, header=header), path, header)
        if header == 0:
            _check_csv_fields(path)
        frame = pd.read_csv(
            path, header=header, dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
        return _number_rows(frame, path, header)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a UTF-8 text table (byte {exc.start}: {exc.reason}); save it as "
            "UTF-8 CSV or as .xlsx"
        ) from exc
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
