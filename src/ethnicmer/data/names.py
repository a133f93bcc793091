"""Names shared by the config and the readers, kept free of heavy imports.

The command line validates configs before it imports pandas, torch or OpenCV,
so the constants a config needs live here.
"""

from __future__ import annotations

RACES: tuple[str, ...] = ("White", "Black", "Asian", "Indian", "Others")
"""Race names; the index is the race code of the paper's release (``mapping.txt``)."""

DEFAULT_GROUPING: dict[str, str] = {
    "White": "Non-Asian",
    "Black": "Non-Asian",
    "Asian": "Asian",
    "Indian": "Asian",
    "Others": "Asian",
}
"""Paper III-A: ethnicities originating from Asia → Asian, others → Non-Asian."""

MEGC_CSV_NAME = "combined_3_class2_for_optical_flow.csv"
"""The MEGC2019 composite flow set's sample list (STSTNet / HTNet layout)."""

UNKNOWN = "Unknown"
"""Ethnicity group of a subject without demographics (``data.demographics.missing:
unknown``): kept for emotion-only analyses, left out of every per-group analysis."""
