"""Per-subject demographics and ethnicity grouping (paper III-A, Tables I–II).

The shipped table (``resources/demographics_paper.csv``) holds the paper's released,
corrected annotation for all 26 CASME II and 29 SAMM subjects: race code
(0 White, 1 Black, 2 Asian, 3 Indian, 4 Others), gender (0 male, 1 female) and age
bin (10-year bin index), with the source of each row. Values come from the
authors' release (FaceXFormer predictions, then heuristic correction; GPL-3.0).

The default two-group rule (paper III-A) maps White/Black → Non-Asian and
Asian/Indian/Others → Asian; any mapping of the five race names can be configured.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from ethnicmer.data.names import RACES
from ethnicmer.data.sheets import read_table
from ethnicmer.data.subjects import normalise_dataset, normalise_subject
from ethnicmer.errors import DataError

DEMOGRAPHIC_FIELDS = ("race_code", "gender", "age_bin")
_FIELD_RANGES = {"race_code": range(len(RACES)), "gender": range(2), "age_bin": range(0, 13)}


def builtin_table_path() -> Path:
    """Path of the shipped per-subject table (paper's corrected labels)."""
    return Path(str(resources.files("ethnicmer") / "resources" / "demographics_paper.csv"))


def load_demographics(path: Path | None = None) -> pd.DataFrame:
    """Read a per-subject demographics table.

    Args:
        path: CSV with columns ``dataset, subject, race_code, gender, age_bin`` (and
            optionally ``source``); ``None`` loads the shipped table.

    Returns:
        Columns ``dataset, subject, race_code, race, gender, age_bin, source``; one
        row per (dataset, subject); integer codes as ``int64``.

    Raises:
        DataError: missing column, a code outside its range, or a duplicate subject;
            the message names the file and line.
    """
    path = Path(path) if path is not None else builtin_table_path()
    raw = read_table(path)
    missing = [c for c in ("dataset", "subject", *DEMOGRAPHIC_FIELDS) if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(raw.columns)}")
    rows = []
    seen: dict[tuple[str, str], int] = {}
    for index, row in raw.iterrows():
        line = int(index)
        where = f"{path}, line {line}"
        dataset = normalise_dataset(row["dataset"], where, custom=True)
        subject = normalise_subject(dataset, row["subject"], where)
        if (dataset, subject) in seen:
            first = seen[(dataset, subject)]
            raise DataError(f"{where}: subject {dataset}/{subject} already given on line {first}")
        seen[(dataset, subject)] = line
        record = {"dataset": dataset, "subject": subject}
        for field in DEMOGRAPHIC_FIELDS:
            record[field] = parse_code(field, row[field], where)
        record["race"] = RACES[record["race_code"]]
        source = row.get("source", "")
        record["source"] = "" if pd.isna(source) or not str(source).strip() else str(source)
        record["source"] = record["source"] or str(path)
        rows.append(record)
    columns = ["dataset", "subject", "race_code", "race", "gender", "age_bin", "source"]
    return pd.DataFrame(rows, columns=columns)


def parse_code(field: str, value: object, where: str) -> int:
    """A demographic code cell as int (race code, gender or age bin), range-checked.

    Raises:
        DataError: not an integer in the field's range; names ``where``.
    """
    text = str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    if not text.lstrip("-").isdigit() or int(text) not in _FIELD_RANGES[field]:
        allowed = _FIELD_RANGES[field]
        raise DataError(
            f"{where}: {field} {value!r} is not an integer in {allowed.start}..{allowed.stop - 1}"
        )
    return int(text)


def apply_overrides(table: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply a user overrides file to a demographics table.

    The file is a CSV with columns ``dataset, subject, field, value, reason``;
    ``field`` is one of ``race_code, gender, age_bin`` and ``reason`` must not be
    empty (the audit trail of the paper's heuristic correction, III-A).

    Returns:
        ``(table, log)``: the corrected table and one log row per override with
        ``dataset, subject, field, old_value, new_value, reason, source_line``.

    Raises:
        DataError: unknown field, value out of range, empty reason, a subject not in
            the table, or two lines that set one subject's field to different
            values; the message names the file and line(s).
    """
    path = Path(path)
    raw = read_table(path)
    missing = [
        c for c in ("dataset", "subject", "field", "value", "reason") if c not in raw.columns
    ]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(raw.columns)}")
    table = table.copy()
    log = []
    given: dict[tuple[str, str, str], tuple[int, int]] = {}
    for index, row in raw.iterrows():
        line = int(index)
        where = f"{path}, line {line}"
        dataset = normalise_dataset(row["dataset"], where, custom=True)
        subject = normalise_subject(dataset, row["subject"], where)
        field = str(row["field"]).strip()
        if field not in DEMOGRAPHIC_FIELDS:
            raise DataError(f"{where}: field {field!r} is not one of {list(DEMOGRAPHIC_FIELDS)}")
        value = parse_code(field, row["value"], where)
        earlier = given.get((dataset, subject, field))
        if earlier is not None and earlier[0] != value:
            raise DataError(
                f"{where}: overrides {dataset}/{subject} {field} to {value}, but line "
                f"{earlier[1]} sets it to {earlier[0]}; keep one of the two"
            )
        given[(dataset, subject, field)] = (value, line)
        reason = str(row["reason"]).strip()
        if not reason:
            raise DataError(f"{where}: every override needs a reason")
        mask = (table["dataset"] == dataset) & (table["subject"] == subject)
        if not mask.any():
            raise DataError(
                f"{where}: subject {dataset}/{subject} is not in the demographics table"
            )
        old = int(table.loc[mask, field].iloc[0])
        table.loc[mask, field] = value
        if field == "race_code":
            table.loc[mask, "race"] = RACES[value]
        table.loc[mask, "source"] = f"override ({path.name}, line {line}): {reason}"
        log.append(
            {
                "dataset": dataset,
                "subject": subject,
                "field": field,
                "old_value": old,
                "new_value": value,
                "reason": reason,
                "source_line": line,
            }
        )
    columns = ["dataset", "subject", "field", "old_value", "new_value", "reason", "source_line"]
    return table, pd.DataFrame(log, columns=columns)


def merge_demographics(table: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """Add per-subject rows given by a data source (a ``table`` source's demographic
    columns) to the demographics table.

    Args:
        table: the configured table (:func:`load_demographics`).
        extra: ``dataset, subject, race_code, gender, age_bin, source``.

    Raises:
        DataError: a subject in both with different values (names both sources).
    """
    if extra.empty:
        return table
    known = table.set_index(["dataset", "subject"])
    rows = []
    for _, row in extra.iterrows():
        key = (row["dataset"], row["subject"])
        if key in known.index:
            old = known.loc[key]
            differs = [f for f in DEMOGRAPHIC_FIELDS if int(old[f]) != int(row[f])]
            if differs:
                raise DataError(
                    f"{row['source']}: demographics of {key[0]}/{key[1]} ({differs}) differ from "
                    f"{old['source']}; give them in one place (or use data.demographics.overrides)"
                )
            continue
        rows.append({**row.to_dict(), "race": RACES[int(row["race_code"])]})
    added = pd.DataFrame(rows, columns=table.columns)
    return pd.concat([table, added], ignore_index=True) if rows else table


def ethnicity_group(race: str, grouping: dict[str, str]) -> str:
    """The ethnicity group of a race name under ``grouping`` (race name → group).

    Raises:
        DataError: the grouping does not cover ``race``.
    """
    if race not in grouping:
        raise DataError(
            f"ethnicity grouping has no group for race {race!r}; it covers {list(grouping)}"
        )
    return grouping[race]
