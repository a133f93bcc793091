"""The multiple-comparison policy: every p-value belongs to a declared family.

- A **confirmatory** family (the paper's claims, the Table V pairs, the recognition
  effects) is adjusted with Holm's step-down method (controls the family-wise
  error rate).
- An **exploratory** family (region statistics, coded AUs, decoding, single-seed
  comparisons) is adjusted with Benjamini–Hochberg (controls the false discovery
  rate).

Every table that carries a p-value gets ``family``, ``family_kind``,
``family_size`` (the p-values in the family that are not NaN) and ``p_adjusted``
beside the raw ``p``. The adjustment uses statsmodels' ``multipletests``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

METHODS = {"confirmatory": "holm", "exploratory": "fdr_bh"}
"""Adjustment per family kind (statsmodels method names)."""


def adjust(p_values: Sequence[float] | np.ndarray | pd.Series, kind: str) -> np.ndarray:
    """Adjusted p-values of one family (NaN entries stay NaN and are not counted).

    Args:
        p_values: the family's raw p-values.
        kind: ``confirmatory`` (Holm) or ``exploratory`` (Benjamini–Hochberg).

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in METHODS:
        raise ValueError(f"family kind must be one of {list(METHODS)}, got {kind!r}")
    values = np.asarray(p_values, dtype=float)
    out = np.full(len(values), np.nan)
    valid = np.isfinite(values)
    if valid.any():
        out[valid] = multipletests(values[valid], method=METHODS[kind])[1]
    return out


def add_family(
    table: pd.DataFrame,
    p_column: str,
    family: str | pd.Series,
    kind: str | pd.Series,
    prefix: str = "",
) -> pd.DataFrame:
    """Return ``table`` with its p-values' family and their adjusted values.

    Adds ``<prefix>family``, ``<prefix>family_kind``, ``<prefix>family_size`` (the
    non-NaN p-values of the family) and ``<p_column>_adjusted``.

    Args:
        table: one row per test.
        p_column: the raw p-value column.
        family: the family name of every row (one name, or a Series per row).
        kind: ``confirmatory`` or ``exploratory`` (one, or a Series per row; one
            family must have one kind).
        prefix: for tables with several p-value columns (``ethnicity_``...).

    Raises:
        ValueError: a family mixes kinds, or an unknown kind.
    """
    out = table.copy()
    names = f"{prefix}family"
    out[names] = family
    out[f"{names}_kind"] = kind
    out[f"{names}_size"] = 0
    adjusted = f"{p_column}_adjusted"
    out[adjusted] = np.nan
    for name, part in out.groupby(names, sort=False):
        kinds = part[f"{names}_kind"].unique()
        if len(kinds) != 1:
            raise ValueError(f"family {name!r} mixes kinds {list(kinds)}")
        values = part[p_column].to_numpy(dtype=float)
        out.loc[part.index, adjusted] = adjust(values, kinds[0])
        out.loc[part.index, f"{names}_size"] = int(np.isfinite(values).sum())
    return out
