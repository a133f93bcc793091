"""Bring your own dataset: one CSV (or Excel) table lists the samples.

For CAS(ME)³, 4DME, MMEW, a lab's own recordings, or any built-in dataset laid out
differently. One row per micro-expression sample:

==================  ==========================================================
column              meaning
==================  ==========================================================
dataset             any name (``casme2``/``samm``/``smic`` in any spelling get
                    their subject and clip rules; others are lower-cased, runs of
                    other characters become ``_``: ``My Lab`` → ``my_lab``)
subject             the subject (one LOSO group)
filename            the sample's name, unique within the subject
emotion | label     ``emotion``: an emotion word, mapped by
                    ``data.emotion_mapping`` (paper Table III); ``label``: the
                    3-class label itself (0/1/2 or Negative/Positive/Surprise);
                    when both are given, ``label`` is used and ``emotion`` kept
                    as the raw word
onset_path,         the onset and apex frame images (the flow stage computes
apex_path           the flow image) — or:
flow_path           a precomputed flow image (3 channels, R = u, G = v,
                    B = strain, as the MEGC2019 sets)
offset_path         optional: the offset frame
apex_crop_path      optional: an RGB apex face crop (apex-context rows)
onset, apex,        optional frame numbers, ``onset`` and ``offset`` together
offset              (checked by ``data.apex_policy``: onset ≤ apex ≤ offset)
action_units        optional: FACS codes as in the sheets (``AU6+AU12``, ``L12``)
race_code | race,   optional per-subject demographics (race code 0 White,
gender, age_bin     1 Black, 2 Asian, 3 Indian, 4 Others, or the race name;
                    gender 0 male, 1 female; 10-year age bin); one value per
                    subject, merged with ``data.demographics.table``
==================  ==========================================================

Relative paths are relative to the table's folder (or ``root`` when the source
gives one). Keys, duplicate checks, image checks and exclusions work as for the
built-in readers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ethnicmer.data.demographics import parse_code
from ethnicmer.data.emotions import label_from_value, normalise_emotion
from ethnicmer.data.names import RACES
from ethnicmer.data.sheets import cell_text, frame_number, read_table
from ethnicmer.data.subjects import normalise_dataset, normalise_filename, normalise_subject
from ethnicmer.errors import DataError

PATHS = ("onset_path", "apex_path", "offset_path", "flow_path", "apex_crop_path")
DEMOGRAPHICS = ("race_code", "race", "gender", "age_bin")
OPTIONAL = ("onset", "apex", "offset", "action_units", "emotion", "label", *PATHS, *DEMOGRAPHICS)


def resolve_path(value: object, folder: Path) -> str:
    """A path cell as a normalised path string (relative to ``folder``; ``..`` folded,
    symbolic links kept); ``""`` when empty."""
    text = cell_text(value)
    if not text:
        return ""
    path = Path(text).expanduser()
    return os.path.normpath(path if path.is_absolute() else Path(folder) / path)


def read_sample_table(path: Path, root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a bring-your-own sample table.

    Args:
        path: the CSV / Excel table (columns in the module doc).
        root: folder relative paths are resolved against (default: the table's folder).

    Returns:
        ``(samples, demographics)``: the candidate-sample table (the columns of the
        built-in readers; ``label`` where the table gives it, else ``emotion``) and
        the per-subject demographics the table gives (``dataset, subject,
        race_code, gender, age_bin, source``; empty without those columns).

    Raises:
        DataError: missing required columns, a row without emotion/label, without
            frames or a flow image, an unknown emotion word, or demographics that
            differ between two rows of one subject; the message names file and line.
    """
    path = Path(path)
    folder = Path(root) if root is not None else path.parent
    raw = read_table(path).dropna(how="all")
    columns = {c.strip().lower(): c for c in raw.columns}
    missing = [c for c in ("dataset", "subject", "filename") if c not in columns]
    if "emotion" not in columns and "label" not in columns:
        missing.append("emotion or label")
    if "flow_path" not in columns and not {"onset_path", "apex_path"} <= set(columns):
        missing.append("flow_path, or onset_path and apex_path")
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(raw.columns)}")
    if raw.empty:
        raise DataError(f"{path}: the sample table has no rows")

    def cell(row: pd.Series, name: str) -> object:
        return row[columns[name]] if name in columns else ""

    rows, people = [], {}
    for index, row in raw.iterrows():
        where = f"{path}, line {int(index)}"
        dataset = normalise_dataset(cell(row, "dataset"), where, custom=True)
        subject = normalise_subject(dataset, cell(row, "subject"), where)
        filename = normalise_filename(dataset, subject, cell(row, "filename"), where)
        label_text = cell_text(cell(row, "label"))
        emotion_text = cell_text(cell(row, "emotion"))
        if not label_text and not emotion_text:
            raise DataError(f"{where}: neither an emotion nor a label")
        record: dict[str, object] = {
            "dataset": dataset,
            "subject": subject,
            "filename": filename,
            "label": label_from_value(label_text, where) if label_text else "",
            "emotion": normalise_emotion(emotion_text, where) if emotion_text else "",
            "emotion_raw": emotion_text or label_text,
            "action_units": cell_text(cell(row, "action_units")),
            "source_file": str(path),
            "source_row": int(index),
        }
        for name in PATHS:
            record[name] = resolve_path(cell(row, name), folder)
        if not record["flow_path"] and not (record["onset_path"] and record["apex_path"]):
            raise DataError(f"{where}: give flow_path, or onset_path and apex_path")
        for name in ("onset", "apex", "offset"):
            record[name] = frame_number(cell(row, name))
            record[f"{name}_raw"] = cell_text(cell(row, name))
        rows.append(record)
        person = _demographics(row, cell, where)
        if person is not None:
            key = (dataset, subject)
            if key in people and people[key][0] != person:
                raise DataError(
                    f"{where}: demographics of {dataset}/{subject} {person} differ from "
                    f"line {people[key][1]} {people[key][0]}; give one value per subject"
                )
            people.setdefault(key, (person, int(index)))
    samples = pd.DataFrame(rows)
    for column in ("onset", "apex", "offset"):
        samples[column] = samples[column].astype("Int64")
    if not any(samples["onset_raw"]):  # no frame numbers: nothing for the apex policy
        samples = samples.drop(columns=["onset_raw", "apex_raw", "offset_raw"])
    demographics = pd.DataFrame(
        [
            {"dataset": d, "subject": s, **person, "source": f"{path}, line {line}"}
            for (d, s), (person, line) in people.items()
        ],
        columns=["dataset", "subject", "race_code", "gender", "age_bin", "source"],
    )
    return samples, demographics


def _demographics(row: pd.Series, cell: object, where: str) -> dict[str, int] | None:
    """The row's demographics as codes, or ``None`` when it gives none."""
    get = cell  # type: ignore[assignment]
    race_code, race = cell_text(get(row, "race_code")), cell_text(get(row, "race"))
    gender, age = cell_text(get(row, "gender")), cell_text(get(row, "age_bin"))
    if not (race_code or race or gender or age):
        return None
    if not (race_code or race) or not gender or not age:
        raise DataError(
            f"{where}: demographics need race_code (or race), gender and age_bin together"
        )
    if race and not race_code:
        names = {name.lower(): i for i, name in enumerate(RACES)}
        if race.lower() not in names:
            raise DataError(f"{where}: race {race!r} is not one of {list(RACES)}")
        race_code = str(names[race.lower()])
    codes = {"race_code": race_code, "gender": gender, "age_bin": age}
    return {field: parse_code(field, text, where) for field, text in codes.items()}
