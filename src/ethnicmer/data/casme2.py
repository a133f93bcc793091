"""CASME II reader: the official coding sheet (Yan et al., 2014, dataset documentation).

Two sheet layouts are accepted: ``CASME2-coding-20140508.xlsx`` (columns
``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated
Emotion``) and the later revision (two unnamed columns and ``Objective Classes``
added; one row's apex is ``/``). Subjects are integers in the sheet and ``sub01``..
in the frame folders.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ethnicmer.data.emotions import normalise_emotion
from ethnicmer.data.sheets import cell_text, frame_number, read_table, select_columns
from ethnicmer.data.subjects import normalise_subject
from ethnicmer.errors import DataError

SHEET_COLUMNS = {
    "subject": "Subject",
    "filename": "Filename",
    "onset": "OnsetFrame",
    "apex": "ApexFrame",
    "offset": "OffsetFrame",
    "action_units": "Action Units",
    "emotion_raw": "Estimated Emotion",
}
OPTIONAL_COLUMNS = {"objective_class": "Objective Classes"}


def read_coding_sheet(
    path: Path,
    dataset: str = "casme2",
    header: int = 0,
    columns: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Read an official coding sheet into ethnicmer's candidate-sample table.

    Args:
        path: the ``.xlsx`` (or ``.csv``) coding sheet.
        dataset: canonical dataset name written into the table.
        header: 0-based row of the column header (1-based sheet row ``header + 1``).
        columns: canonical name → sheet column name; default :data:`SHEET_COLUMNS`.

    Returns:
        One row per sheet row with columns ``dataset, subject, filename, onset, apex,
        offset`` (frame numbers as nullable ``Int64``; ``None`` where the cell holds no
        integer), ``onset_raw, apex_raw, offset_raw`` (the cells as text),
        ``action_units``, ``emotion`` (canonical word), ``emotion_raw``,
        ``objective_class``, ``source_file``, ``source_row`` (1-based sheet row).

    Raises:
        DataError: the file is missing/unreadable, a column is missing, the sheet is
            empty, or a row has no subject, no filename or an unknown emotion word.
    """
    path = Path(path)
    sheet = read_table(path, header=header)
    sheet = sheet.dropna(how="all")
    table = select_columns(sheet, columns or SHEET_COLUMNS, path, OPTIONAL_COLUMNS)
    if table.empty:
        raise DataError(f"{path}: the coding sheet has no sample rows")
    rows = []
    for index, row in table.iterrows():
        sheet_row = int(index)
        where = f"{path}, row {sheet_row}"
        filename = cell_text(row["filename"])
        if not filename:
            raise DataError(f"{where}: empty Filename")
        rows.append(
            {
                "dataset": dataset,
                "subject": normalise_subject(dataset, row["subject"], where),
                "filename": filename,
                "onset": frame_number(row["onset"]),
                "apex": frame_number(row["apex"]),
                "offset": frame_number(row["offset"]),
                "onset_raw": cell_text(row["onset"]),
                "apex_raw": cell_text(row["apex"]),
                "offset_raw": cell_text(row["offset"]),
                "action_units": cell_text(row["action_units"]),
                "emotion": normalise_emotion(row["emotion_raw"], where),
                "emotion_raw": cell_text(row["emotion_raw"]),
                "objective_class": cell_text(row["objective_class"]),
                "source_file": str(path),
                "source_row": sheet_row,
            }
        )
    out = pd.DataFrame(rows)
    for column in ("onset", "apex", "offset"):
        out[column] = out[column].astype("Int64")
    return out
