"""Emotion words of the coding sheets and the label mappings of the study.

Sources: paper Section III-A and Table III (3-class mapping), the MEGC2019
composite-database protocol (See et al., 2019), and paper Section IV-A (the prima
facie study's Negative vs Non-negative labels).

Class indices follow the MEGC2019 CSV: 0 Negative, 1 Positive, 2 Surprise.
"""

from __future__ import annotations

from typing import Literal

from ethnicmer.errors import DataError

EMOTION_CLASSES: tuple[str, ...] = ("Negative", "Positive", "Surprise")
"""3-class labels; the index of a name is its integer label (MEGC2019 convention)."""

BINARY_CLASSES: tuple[str, ...] = ("Negative", "Non-negative")
"""Prima facie labels (paper IV-A); index 0 Negative, 1 Non-negative."""

EMOTION_WORDS: tuple[str, ...] = (
    "happiness",
    "surprise",
    "disgust",
    "repression",
    "sadness",
    "fear",
    "anger",
    "contempt",
    "others",
)
"""Canonical emotion words of the CASME II and SAMM ``Estimated Emotion`` columns."""

_ALIASES = {
    "happy": "happiness",
    "happiness": "happiness",
    "positive": "happiness",
    "surprise": "surprise",
    "surprised": "surprise",
    "disgust": "disgust",
    "disgusted": "disgust",
    "repression": "repression",
    "repressed": "repression",
    "sadness": "sadness",
    "sad": "sadness",
    "fear": "fear",
    "fearful": "fear",
    "anger": "anger",
    "angry": "anger",
    "contempt": "contempt",
    "others": "others",
    "other": "others",
}

MappingName = Literal["paper", "megc2019"]

_MEGC2019_NEGATIVE = {
    "casme2": {"disgust", "repression"},
    "samm": {"anger", "contempt", "disgust", "fear", "sadness"},
}


def normalise_emotion(word: object, where: str) -> str:
    """Return the canonical emotion word for a sheet's ``Estimated Emotion`` cell.

    Case, surrounding spaces and common variants (``Happiness``, ``Other``,
    ``angry``) are accepted.

    Args:
        word: the cell value.
        where: ``"<sheet file>, row N"`` for the error message.

    Raises:
        DataError: the word is empty or not a known emotion.
    """
    text = str(word).strip().lower() if word is not None else ""
    if text in _ALIASES:
        return _ALIASES[text]
    raise DataError(
        f"{where}: unknown emotion word {word!r}; known words: {', '.join(EMOTION_WORDS)}"
    )


def map_emotion(mapping: MappingName, dataset: str, emotion: str) -> tuple[str | None, str]:
    """Map a canonical emotion word to a 3-class label.

    ``paper`` (Table III): happiness → Positive, surprise → Surprise, others dropped,
    every other emotion → Negative. ``megc2019``: happiness → Positive, surprise →
    Surprise; Negative is disgust + repression for CASME II and anger, contempt,
    disgust, fear, sadness for SAMM; everything else is dropped (CASME II fear and
    sadness, others).

    Args:
        mapping: ``"paper"`` or ``"megc2019"``.
        dataset: ``"casme2"`` or ``"samm"``.
        emotion: a canonical word from :data:`EMOTION_WORDS`.

    Returns:
        ``(label, reason)``: the class name from :data:`EMOTION_CLASSES`, or ``None``
        with the reason the sample is dropped.

    Raises:
        DataError: ``megc2019`` for a dataset it does not define (not CASME II or SAMM).
    """
    if emotion == "happiness":
        return "Positive", ""
    if emotion == "surprise":
        return "Surprise", ""
    if emotion == "others":
        return None, f"emotion 'others' is dropped by the {mapping} mapping"
    if mapping == "paper":
        return "Negative", ""
    if mapping == "megc2019":
        if dataset not in _MEGC2019_NEGATIVE:
            raise DataError(
                f"the megc2019 mapping is defined for CASME II and SAMM only, not {dataset!r}: "
                "give its samples a label column (or use emotion_mapping: paper)"
            )
        if emotion in _MEGC2019_NEGATIVE[dataset]:
            return "Negative", ""
        return None, f"emotion {emotion!r} of {dataset} is not in the megc2019 mapping"
    raise ValueError(f"unknown emotion mapping {mapping!r}")


def to_binary(label: str) -> str:
    """Negative vs Non-negative (paper IV-A): Positive and Surprise become Non-negative."""
    return "Negative" if label == "Negative" else "Non-negative"


_LABEL_NAMES = {
    "negative": "Negative",
    "ne": "Negative",
    "positive": "Positive",
    "po": "Positive",
    "surprise": "Surprise",
    "sur": "Surprise",
}


def label_from_value(value: object, where: str) -> str:
    """A 3-class label given directly: ``0``/``1``/``2`` (MEGC2019 and SMIC codes: 0
    Negative, 1 Positive, 2 Surprise) or a class name (``negative``, ``Positive``, ``sur``).

    Raises:
        DataError: anything else; the message names ``where`` and the accepted values.
    """
    text = str(value).strip()
    if text.endswith(".0"):
        text = text[:-2]
    if text in {str(i) for i in range(len(EMOTION_CLASSES))}:
        return EMOTION_CLASSES[int(text)]
    if text.lower() in _LABEL_NAMES:
        return _LABEL_NAMES[text.lower()]
    raise DataError(
        f"{where}: label {value!r} is not 0, 1, 2 (Negative, Positive, Surprise) or a class name"
    )
