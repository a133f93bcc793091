"""SAMM reader: the official v2 FACS coding sheet (Davison et al., 2016, 2017).

``SAMM_Micro_FACS_Codes_v2.xlsx`` opens with a text preamble (citation notes, a
symbol key); the header row (``Subject, Filename, Inducement Code, Onset Frame,
Apex Frame, Offset Frame, Duration, Micro, Action Units, Estimated Emotion,
Objective Classes, Notes``) is found by searching, not assumed at a fixed row.
Subjects are ``6`` or ``006`` in the sheet and ``006`` in the frame folders.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ethnicmer.data.casme2 import read_coding_sheet
from ethnicmer.data.sheets import cell_text, read_table
from ethnicmer.errors import DataError

SAMM_COLUMNS = {
    "subject": "Subject",
    "filename": "Filename",
    "onset": "Onset Frame",
    "apex": "Apex Frame",
    "offset": "Offset Frame",
    "action_units": "Action Units",
    "emotion_raw": "Estimated Emotion",
}

_HEADER_SEARCH_ROWS = 60


def find_header_row(path: Path) -> int:
    """0-based index of the row whose cells include ``Subject`` and ``Filename``.

    Raises:
        DataError: no such row among the first 60 rows.
    """
    raw = read_table(path, header=None)
    for index in range(min(_HEADER_SEARCH_ROWS, len(raw))):
        cells = {cell_text(v).lower() for v in raw.iloc[index].tolist()}
        if {"subject", "filename"} <= cells:
            return index
    raise DataError(
        f"{path}: no header row with 'Subject' and 'Filename' in the first "
        f"{_HEADER_SEARCH_ROWS} rows; is this the SAMM coding sheet?"
    )


def read_samm_sheet(path: Path) -> pd.DataFrame:
    """Read the SAMM coding sheet into the candidate-sample table.

    Returns:
        The same columns as :func:`ethnicmer.data.casme2.read_coding_sheet`, with
        ``dataset == "samm"``; ``source_row`` is the 1-based sheet row.

    Raises:
        DataError: as :func:`ethnicmer.data.casme2.read_coding_sheet`.
    """
    path = Path(path)
    header = find_header_row(path)
    return read_coding_sheet(path, dataset="samm", header=header, columns=SAMM_COLUMNS)
