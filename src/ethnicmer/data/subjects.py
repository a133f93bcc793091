"""Canonical sample keys: (dataset, subject, filename).

Every sample in ethnicmer is keyed by ``(dataset, subject, filename)``, never by row
position (the published code's per-ethnicity subsets paired labels with the wrong
flows because it keyed by row). Subject identifiers follow the releases' folder
names: CASME II ``sub01``..``sub26`` (frame folders ``sub01/EP02_01f``), SAMM
zero-padded ``006``..``037`` (frame folders ``006/006_1_2``), SMIC ``s1``..``s20``
(SMIC-E-HS frame folders ``s1/s1_ne_01``; the MEGC2019 CSV writes ``s01`` and
``s01_ne_01`` for the same subject and clip, read here as ``s1`` and ``s1_ne_01``).

Other datasets (CAS(ME)³, 4DME, MMEW, a lab's own recordings) enter through the
``table`` source under any name; their subject and clip names are kept as given.
"""

from __future__ import annotations

import re

from ethnicmer.errors import DataError

DATASETS = ("casme2", "samm", "smic")
"""Datasets with built-in readers and subject/clip spelling rules."""

KEY_COLUMNS = ["dataset", "subject", "filename"]

_DATASET_ALIASES = {
    "casme2": "casme2",
    "casme_2": "casme2",
    "casmeii": "casme2",
    "casme ii": "casme2",
    "samm": "samm",
    "smic": "smic",
    "smic-hs": "smic",
    "smic_hs": "smic",
    "smic-e-hs": "smic",
    "smic-hs-e": "smic",
    "smic_hs_e": "smic",
}

_SQUEEZED_ALIASES = {re.sub(r"[^a-z0-9]", "", k): v for k, v in _DATASET_ALIASES.items()}
"""The built-in names without separators: any spelling of them with other separators
(``CASME-II``, ``SMIC HS``) is that dataset, never a new one."""

_CUSTOM_ALIASES = {
    "cas(me)3": "casme3",
    "cas(me)^3": "casme3",
    "cas(me)³": "casme3",
    "casme3": "casme3",
    "casme^3": "casme3",
}

_SMIC_CLIP = re.compile(r"(?i)^s0*(\d+)_(ne|po|sur)_0*(\d+)$")


def normalise_dataset(value: object, where: str = "", custom: bool = False) -> str:
    """Return the canonical dataset name.

    Args:
        value: a dataset name in any common spelling (``CASME2``, ``casme_2``, ``SAMM``,
            ``SMIC-HS``).
        where: file/row description used in the error message.
        custom: also accept names of other datasets (the ``table`` source and
            demographics tables): lower-cased, runs of other characters than letters
            and digits become ``_`` (``"CAS(ME)³"`` → ``casme3``, ``"My Lab"`` → ``my_lab``).

    Raises:
        DataError: the name is empty, or not a built-in dataset (without ``custom``).
    """
    text = str(value).strip().lower()
    if text in _DATASET_ALIASES:
        return _DATASET_ALIASES[text]
    squeezed = re.sub(r"[^a-z0-9]", "", text)  # "CASME-II", "SMIC HS", "casme_2"
    if squeezed in _SQUEEZED_ALIASES:
        return _SQUEEZED_ALIASES[squeezed]
    if custom and text:
        if text in _CUSTOM_ALIASES:
            return _CUSTOM_ALIASES[text]
        slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
        if slug:
            return slug
    expected = f"one of {list(DATASETS)}" + (" or any other name" if custom else "")
    raise DataError(f"{where}: unknown dataset {value!r}; expected {expected}")


def normalise_subject(dataset: str, value: object, where: str = "") -> str:
    """Return the canonical subject identifier of ``dataset``.

    CASME II sheets store subjects as integers (``1``); the frame folders and the
    MEGC2019 CSV use ``sub01``. SAMM sheets store ``6`` or ``006``; folders use
    ``006``. SMIC folders use ``s1``; the MEGC2019 CSV ``s01``. Every spelling maps
    to the folder name. Subjects of other datasets are kept as given (stripped;
    ``6.0`` from a spreadsheet becomes ``6``).

    Args:
        dataset: canonical dataset name.
        value: subject as found in a sheet or CSV (int, ``"1"``, ``"sub01"``, ``"006"``, ``"s01"``).
        where: file/row description used in the error message.

    Returns:
        ``"subNN"`` for CASME II, a zero-padded three-digit string for SAMM, ``"sN"``
        for SMIC, the stripped text otherwise.

    Raises:
        DataError: a built-in dataset's value holds no subject number, or the value is empty.
    """
    text = str(value).strip()
    if text.endswith(".0"):  # spreadsheet readers may give 6.0 for 6
        text = text[:-2]
    if dataset not in DATASETS:
        if not text or text.lower() == "nan":
            raise DataError(f"{where}: empty subject")
        return text
    pattern = r"(?i)s?0*(\d+)" if dataset == "smic" else r"(?i)(?:sub)?0*(\d+)"
    match = re.fullmatch(pattern, text)
    if match is None:
        raise DataError(f"{where}: cannot read a subject number from {value!r}")
    number = int(match.group(1))
    if dataset == "casme2":
        return f"sub{number:02d}"
    if dataset == "samm":
        return f"{number:03d}"
    return f"s{number}"


def normalise_filename(dataset: str, subject: str, value: object, where: str = "") -> str:
    """Return the canonical sample (clip) name.

    SMIC clips are ``<subject>_<ne|po|sur>_<nn>`` with the release folder's subject
    spelling (``s1_ne_01``; the MEGC2019 CSV's ``s01_ne_01`` is the same clip). Other
    datasets keep the name as given (stripped).

    Args:
        dataset, subject: the canonical dataset and subject of the sample.
        value: the clip / filename as found in the source.
        where: file/row description used in the error message.

    Raises:
        DataError: the name is empty, or a SMIC clip name does not follow the
            release's pattern or names another subject than the row.
    """
    text = str(value).strip()
    if not text or text.lower() == "nan":
        raise DataError(f"{where}: empty filename")
    if dataset != "smic":
        return text
    match = _SMIC_CLIP.fullmatch(text)
    if match is None:
        raise DataError(
            f"{where}: SMIC clip {text!r} is not <subject>_<ne|po|sur>_<nn> (e.g. s1_ne_01)"
        )
    clip_subject = f"s{int(match.group(1))}"
    if clip_subject != subject:
        raise DataError(f"{where}: SMIC clip {text!r} belongs to {clip_subject}, not {subject}")
    return f"{clip_subject}_{match.group(2).lower()}_{int(match.group(3)):02d}"


def format_key(dataset: str, subject: str, filename: str) -> str:
    """Human-readable sample key used in messages: ``casme2/sub01/EP02_01f``."""
    return f"{dataset}/{subject}/{filename}"
