"""SMIC reader: the SMIC-E-HS release (Li et al., FG 2013; the extended HS set of MEGC2019).

Layout (dataset documentation, as distributed with MEGC2019-era code):

- frame folders ``SMIC_HS_E/<subject>/<clip>/image<frame>.jpg``, e.g.
  ``s20/s20_ne_01/image17581039.jpg``: subjects ``s1``..``s20``, clips
  ``<subject>_<ne|po|sur>_<nn>``, frame numbers as the camera counted them (large,
  not starting at 1);
- an onset/apex/offset table (CSV or Excel) with the columns ``data, subject, clip,
  label, onset_frame, apex_frame, offset_frame`` (``data`` = ``smic``; ``label`` 0
  Negative, 1 Positive, 2 Surprise, or the class name) and optionally
  ``onset_path, apex_path, offset_path`` (frame files, absolute or relative to the
  table's folder) where the frames do not follow the folder layout.

SMIC's three classes are its own labels (no emotion-word mapping applies); the
HS camera records at 100 fps. Subjects ``s01`` and clips ``s01_ne_01`` (MEGC2019
CSV spelling) are read as ``s1`` and ``s1_ne_01``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ethnicmer.data.emotions import label_from_value
from ethnicmer.data.sheets import cell_text, frame_number, read_table, select_columns
from ethnicmer.data.subjects import normalise_dataset, normalise_filename, normalise_subject
from ethnicmer.errors import DataError

TABLE_COLUMNS = {
    "data": "data",
    "subject": "subject",
    "filename": "clip",
    "label": "label",
    "onset": "onset_frame",
    "apex": "apex_frame",
    "offset": "offset_frame",
}
OPTIONAL_COLUMNS = {
    "onset_path": "onset_path",
    "apex_path": "apex_path",
    "offset_path": "offset_path",
}


def _frame_path(value: object, folder: Path) -> str:
    text = cell_text(value)
    if not text:
        return ""
    path = Path(text)
    return str(path if path.is_absolute() else folder / path)


def read_smic_table(path: Path) -> pd.DataFrame:
    """Read a SMIC-E-HS onset/apex/offset table into the candidate-sample table.

    Returns:
        One row per table row with the columns of
        :func:`ethnicmer.data.casme2.read_coding_sheet` (``emotion`` empty: SMIC has
        no emotion words) plus ``label`` (the given class) and ``onset_path``,
        ``apex_path`` (empty unless the table gives them: then frames are not
        looked up in the folder layout).

    Raises:
        DataError: the file is missing or unreadable, a column is missing, or a row is
            not a SMIC row, has no subject/clip, a clip of another subject, or a label
            outside the three classes; the message names the file and line.
    """
    path = Path(path)
    raw = read_table(path).dropna(how="all")
    table = select_columns(raw, TABLE_COLUMNS, path, OPTIONAL_COLUMNS)
    if table.empty:
        raise DataError(f"{path}: the SMIC table has no sample rows")
    rows = []
    for index, row in table.iterrows():
        where = f"{path}, line {int(index)}"
        dataset = normalise_dataset(row["data"], f"{where}: data")
        if dataset != "smic":
            raise DataError(f"{where}: data {row['data']!r} is not smic (a SMIC table row)")
        subject = normalise_subject("smic", row["subject"], where)
        label = label_from_value(row["label"], where)
        rows.append(
            {
                "dataset": "smic",
                "subject": subject,
                "filename": normalise_filename("smic", subject, row["filename"], f"{where}: clip"),
                "onset": frame_number(row["onset"]),
                "apex": frame_number(row["apex"]),
                "offset": frame_number(row["offset"]),
                "onset_raw": cell_text(row["onset"]),
                "apex_raw": cell_text(row["apex"]),
                "offset_raw": cell_text(row["offset"]),
                "action_units": "",
                "emotion": "",
                "emotion_raw": cell_text(row["label"]),
                "label": label,
                "onset_path": _frame_path(row["onset_path"], path.parent),
                "apex_path": _frame_path(row["apex_path"], path.parent),
                "offset_path": _frame_path(row["offset_path"], path.parent),
                "source_file": str(path),
                "source_row": int(index),
            }
        )
    out = pd.DataFrame(rows)
    for column in ("onset", "apex", "offset"):
        out[column] = out[column].astype("Int64")
    return out
