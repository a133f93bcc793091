"""Reader for precomputed MEGC2019 composite flow sets (STSTNet / HTNet layout).

Layout under ``root`` (as commonly distributed):

- ``combined_3_class2_for_optical_flow.csv`` with header
  ``dataset,sub,filename_o,label,apex,imagename,sub_filename``; ``label`` is the
  MEGC2019 3-class label (0 Negative, 1 Positive, 2 Surprise). The full composite
  has 442 rows: ``smic`` (164, subjects ``s01``..``s20`` and clips ``s01_ne_01``,
  read as the release's ``s1`` and ``s1_ne_01``; apex crops ``s01_s1_ne_01.jpg``),
  ``casme2`` (145) and ``samm`` (133).
- ``datasets/STSNet_whole_norm_u_v_os/<sub>_<filename_o> .png`` — note the space
  before ``.png``. A 28×28×3 uint8 onset→apex optical-flow image; channel order
  **R = horizontal flow u, G = vertical flow v, B = optical strain**, each channel
  min–max normalised to 0..255 per image. (``cv2.imread`` returns BGR, i.e. strain,
  v, u: read with Pillow or reverse the channels.)
- ``datasets/combined_datasets_whole/<imagename>``: 224×224 RGB apex face crop.

Rows are keyed by ``(dataset, sub, filename_o)``; row order carries no meaning.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.data.names import MEGC_CSV_NAME
from ethnicmer.data.sheets import read_table, select_columns
from ethnicmer.data.subjects import normalise_dataset, normalise_filename, normalise_subject
from ethnicmer.errors import DataError

CSV_NAME = MEGC_CSV_NAME
FLOW_DIR = Path("datasets") / "STSNet_whole_norm_u_v_os"
APEX_DIR = Path("datasets") / "combined_datasets_whole"

CSV_COLUMNS = {"dataset": "dataset", "subject": "sub", "filename": "filename_o", "label": "label"}


def flow_image_path(root: Path, subject: str, filename: str) -> Path:
    """Path of a sample's flow PNG: ``<sub>_<filename_o> .png`` (with the space).

    Some copies of the set drop the space; that name is used when only it exists.
    """
    spaced = Path(root) / FLOW_DIR / f"{subject}_{filename} .png"
    plain = Path(root) / FLOW_DIR / f"{subject}_{filename}.png"
    return plain if (not spaced.exists() and plain.exists()) else spaced


def read_megc_flow_set(
    root: Path, csv_name: str = CSV_NAME, datasets: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a MEGC2019 flow set's CSV into the candidate-sample table.

    Args:
        root: folder holding the CSV and ``datasets/``.
        csv_name: CSV file name inside ``root``.
        datasets: keep only rows of these datasets; the others are returned as
            skipped before anything else of them is read (so a row of a dataset
            ethnicmer does not know, e.g. ``mmew``, is skipped, not an error).

    Returns:
        ``(table, skipped)``. ``table``: one row per kept CSV row: ``dataset,
        subject, filename, label`` (class name from
        :data:`~ethnicmer.data.emotions.EMOTION_CLASSES`), ``flow_path``,
        ``apex_crop_path`` (empty when the CSV has no ``imagename``),
        ``source_file``, ``source_row`` (1-based line of the CSV, header = line 1).
        ``skipped``: the rows left out by ``datasets`` (``dataset, subject,
        filename`` as written, ``source_file``, ``source_row``). Whether the image
        files exist is checked by the composite builder.

    Raises:
        DataError: the CSV is missing, has no rows, lacks a column, or a kept row has
            an unknown dataset, empty subject/filename or a label outside 0..2.
    """
    root = Path(root)
    path = root / csv_name
    raw = read_table(path)
    table = select_columns(raw, CSV_COLUMNS, path, {"imagename": "imagename"})
    if table.empty:
        raise DataError(f"{path}: the CSV has no sample rows")
    rows, skipped = [], []
    for index, row in table.iterrows():
        line = int(index)
        where = f"{path}, line {line}"
        if datasets is not None:
            name = normalise_dataset(row["dataset"], where, custom=True)
            if name not in datasets:
                skipped.append(
                    {
                        "dataset": name,
                        "subject": str(row["subject"]).strip(),
                        "filename": str(row["filename"]).strip(),
                        "source_file": str(path),
                        "source_row": line,
                    }
                )
                continue
        dataset = normalise_dataset(row["dataset"], where)
        subject = normalise_subject(dataset, row["subject"], where)
        filename = normalise_filename(dataset, subject, row["filename"], f"{where}: filename_o")
        label_text = str(row["label"]).strip()
        if label_text not in {str(i) for i in range(len(EMOTION_CLASSES))}:
            raise DataError(f"{where}: label {label_text!r} is not 0, 1 or 2")
        imagename = "" if pd.isna(row["imagename"]) else str(row["imagename"]).strip()
        rows.append(
            {
                "dataset": dataset,
                "subject": subject,
                "filename": filename,
                "label": EMOTION_CLASSES[int(label_text)],
                # the files are named by the CSV's own spellings (SMIC: s01_s01_ne_01 .png)
                "flow_path": str(
                    flow_image_path(root, str(row["subject"]).strip(), str(row["filename"]).strip())
                ),
                "apex_crop_path": str(root / APEX_DIR / imagename) if imagename else "",
                "source_file": str(path),
                "source_row": line,
            }
        )
    columns = ["dataset", "subject", "filename", "source_file", "source_row"]
    return pd.DataFrame(rows), pd.DataFrame(skipped, columns=columns)
