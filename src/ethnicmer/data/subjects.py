"""Canonical sample keys: (dataset, subject, filename).

Every sample in ethnicmer is keyed by ``(dataset, subject, filename)``, never by row
position (the published code's per-ethnicity subsets paired labels with the wrong
flows because it keyed by row). Subject identifiers follow the releases' folder
names: CASME II ``sub01``..``sub26`` (frame folders ``sub01/EP02_01f``), SAMM
zero-padded ``006``..``037`` (frame folders ``006/006_1_2``).
"""

from __future__ import annotations

import re

from ethnicmer.errors import DataError

DATASETS = ("casme2", "samm")
KEY_COLUMNS = ["dataset", "subject", "filename"]

_DATASET_ALIASES = {
    "casme2": "casme2",
    "casme_2": "casme2",
    "casmeii": "casme2",
    "casme ii": "casme2",
    "samm": "samm",
}


def normalise_dataset(value: object, where: str = "") -> str:
    """Return the canonical dataset name (``"casme2"`` or ``"samm"``).

    Args:
        value: a dataset name in any common spelling (``CASME2``, ``casme_2``, ``SAMM``).
        where: file/row description used in the error message.

    Raises:
        DataError: the name is not a known dataset.
    """
    text = str(value).strip().lower()
    if text in _DATASET_ALIASES:
        return _DATASET_ALIASES[text]
    raise DataError(f"{where}: unknown dataset {value!r}; expected one of {list(DATASETS)}")


def normalise_subject(dataset: str, value: object, where: str = "") -> str:
    """Return the canonical subject identifier of ``dataset``.

    CASME II sheets store subjects as integers (``1``); the frame folders and the
    MEGC2019 CSV use ``sub01``. SAMM sheets store ``6`` or ``006``; folders use
    ``006``. Both spellings map to the folder name.

    Args:
        dataset: canonical dataset name.
        value: subject as found in a sheet or CSV (int, ``"1"``, ``"sub01"``, ``"006"``).
        where: file/row description used in the error message.

    Returns:
        ``"subNN"`` for CASME II, a zero-padded three-digit string for SAMM.

    Raises:
        DataError: the value holds no subject number.
    """
    text = str(value).strip()
    if text.endswith(".0"):  # spreadsheet readers may give 6.0 for 6
        text = text[:-2]
    match = re.fullmatch(r"(?i)(?:sub)?0*(\d+)", text)
    if match is None:
        raise DataError(f"{where}: cannot read a subject number from {value!r}")
    number = int(match.group(1))
    if dataset == "casme2":
        return f"sub{number:02d}"
    if dataset == "samm":
        return f"{number:03d}"
    raise DataError(f"{where}: unknown dataset {dataset!r}")


def format_key(dataset: str, subject: str, filename: str) -> str:
    """Human-readable sample key used in messages: ``casme2/sub01/EP02_01f``."""
    return f"{dataset}/{subject}/{filename}"
