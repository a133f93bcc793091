"""Paired comparisons of benchmark rows from two different studies.

A study's own ``compare`` pairs are planned with its config; a comparison of rows
of *different* studies (say, a new recipe in ``runs/megc2019-best`` against the
paper's ResNet-18 row in ``runs/megc2019-seeds``) is decided after both ran, so it
is always exploratory: every p is adjusted (Benjamini–Hochberg) within the family
:data:`FAMILY` of the pairs asked for in one call, never confirmatory.

Each pair is compared as :func:`ethnicmer.studies.comparisons.compare_rows` compares
a study's own rows (the same test, interval, p and MDE), on the samples both rows
predicted in every seed, paired by seed and sample. The rows must share the
database (the same emotion label of every common sample) and the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ethnicmer.errors import DataError
from ethnicmer.stats.multiple import add_family
from ethnicmer.studies.benchmark_scores import prediction_matrix
from ethnicmer.studies.comparisons import compare_rows

FAMILY = "cross-study comparisons"
KEYS = ["dataset", "subject", "filename"]
NEEDED = [*KEYS, "seed", "y_true", "y_pred", "model"]


@dataclass(frozen=True)
class RowRef:
    """One benchmark row of one study: ``<run dir>:<row>``.

    Attributes:
        predictions: the study's ``benchmark/predictions.csv``.
        row: the row (``model``) name in it.
    """

    predictions: Path
    row: str

    @property
    def label(self) -> str:
        """``<study>:<row>``, the name the comparison table uses."""
        study = self.predictions.parent.parent.name
        return f"{study}:{self.row}"


def parse_ref(text: str) -> RowRef:
    """``runs/<study>:<row>`` (or ``…/benchmark:<row>``, ``…/predictions.csv:<row>``).

    Raises:
        DataError: no ``:<row>`` part, or no ``predictions.csv`` where it points.
    """
    where, sep, row = text.rpartition(":")
    if not sep or not where or not row:
        raise DataError(
            f"{text!r}: name a row as <run dir>:<row>, e.g. runs/megc2019-seeds:resnet18-motion"
        )
    path = Path(where)
    for candidate in (path, path / "predictions.csv", path / "benchmark" / "predictions.csv"):
        if candidate.is_file():
            return RowRef(candidate, row)
    raise DataError(
        f"{text}: no benchmark predictions at {path} (looked for "
        f"{path}/benchmark/predictions.csv); run the study's benchmark first"
    )


def _row_predictions(ref: RowRef, tables: dict[Path, pd.DataFrame]) -> pd.DataFrame:
    """The row's predictions, one line per sample and seed (``tables``: the files read
    so far in this call, by path, so a study named in several pairs is read once)."""
    if ref.predictions not in tables:
        tables[ref.predictions] = pd.read_csv(
            ref.predictions, dtype={"subject": str, "filename": str}
        )
    table = tables[ref.predictions]
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise DataError(f"{ref.predictions}: not benchmark predictions (no column {missing})")
    part = table[table["model"] == ref.row]
    if part.empty:
        rows = ", ".join(sorted(table["model"].astype(str).unique()))
        raise DataError(f"{ref.predictions}: no row {ref.row!r} (rows: {rows})")
    return part


def compare_studies(
    pairs: list[tuple[RowRef, RowRef]], resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Compare each pair (A − B) of rows of two studies on their common samples.

    Args:
        pairs: (A, B) rows; the difference is MF1(A) − MF1(B).
        resamples: bootstrap and randomisation resamples.
        seed: seeds the resampling.

    Returns:
        The :data:`ethnicmer.studies.comparisons.COLUMNS` table (``a``/``b`` are
        ``<study>:<row>``) plus ``only_a``/``only_b``: samples one row predicted and
        the other did not (left out of the comparison, counted here).

    Raises:
        DataError: a row is missing, the rows' seeds differ, a common sample has a
            different emotion label in the two studies, or no sample is common.
    """
    read: dict[Path, pd.DataFrame] = {}
    tables = []
    for a, b in pairs:
        part_a, part_b = _row_predictions(a, read), _row_predictions(b, read)
        seeds_a = sorted(part_a["seed"].unique().tolist())
        seeds_b = sorted(part_b["seed"].unique().tolist())
        if seeds_a != seeds_b:
            raise DataError(
                f"{a.label} has seeds {seeds_a}, {b.label} has {seeds_b}: a paired comparison "
                "needs the same seeds"
            )
        labels_a = part_a.drop_duplicates(KEYS).set_index(KEYS)
        labels_b = part_b.drop_duplicates(KEYS).set_index(KEYS)
        common = labels_a.index.intersection(labels_b.index).sort_values()
        if common.empty:
            raise DataError(f"{a.label} and {b.label} predicted no sample in common")
        true_a = labels_a.loc[common, "y_true"].to_numpy()
        differ = true_a != labels_b.loc[common, "y_true"].to_numpy()
        if differ.any():
            first = common[np.flatnonzero(differ)[0]]
            raise DataError(
                f"{a.label} and {b.label} label {int(differ.sum())} common sample(s) differently, "
                f"e.g. {'/'.join(map(str, first))}: not the same database"
            )
        scored = common.to_frame(index=False)
        scored["label_id"] = true_a.astype(np.int64)
        matrices = {
            a.label: prediction_matrix(part_a, a.row, scored),
            b.label: prediction_matrix(part_b, b.row, scored),
        }
        n_classes = int(max(part_a["y_true"].max(), part_b["y_true"].max())) + 1
        table = compare_rows(
            scored, matrices, [(a.label, b.label)], n_classes, resamples, seed, family=FAMILY
        )
        table["only_a"] = len(labels_a.index.difference(common))
        table["only_b"] = len(labels_b.index.difference(common))
        tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    return add_family(out, "p_permutation", FAMILY, "exploratory")
