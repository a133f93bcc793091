"""Published results on a benchmark protocol, shipped beside our rows.

``benchmark.published: megc2019-cde`` shows the MEGC2019 composite database
evaluation (442 samples: SMIC-HS 164, CASME II 145, SAMM 133; 68 LOSO subjects;
UF1 and UAR overall and per dataset) as printed by each method's paper, with the
input it used, whether its epoch was fixed or chosen on the test subject, its
source, where the number was read and notes (``resources/published_megc2019_cde.csv``).
A path instead names a CSV of the same columns.

What was checked (2026-12): every figure against its paper, the MEGC2019
guidelines or the HTNet repository's result table; STSTNet's printed UAR equals the
macro precision of the authors' released predictions (its recall is shipped as a
separate row); HTNet keeps, per left-out subject, the epoch best on that subject's
test samples, so its figures are not comparable with fixed-epoch rows.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from ethnicmer.data.sheets import read_table
from ethnicmer.errors import DataError

SHIPPED = {"megc2019-cde": "published_megc2019_cde.csv"}
"""Shipped published-results tables by name."""

COLUMNS = ["method", "uf1", "uar", "input", "epoch_selection", "source"]
"""Columns every published-results table needs (per-dataset ``uf1_<d>``/``uar_<d>`` optional)."""


def published_results(name: str) -> pd.DataFrame:
    """The published-results table ``name`` (a shipped name or a CSV path).

    Raises:
        DataError: the file is missing or lacks one of :data:`COLUMNS`.
    """
    if name in SHIPPED:
        path = Path(str(resources.files("ethnicmer") / "resources" / SHIPPED[name]))
    else:
        path = Path(name)
    table = read_table(path).reset_index(drop=True)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} of a published-results table")
    for column in table.columns:
        if column.startswith(("uf1", "uar")):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table
