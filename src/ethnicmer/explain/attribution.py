"""Is a group difference in a measure ethnicity or dataset? (issue 9).

In CASME II + SAMM every CASME II subject is Asian and every non-Asian subject is
in SAMM, so an ethnicity difference over all samples may be a dataset difference.
For each measure this module runs two stratified tests
(:func:`ethnicmer.stats.groups.stratified_effect`, subjects as the unit):

- the **ethnicity effect within dataset**: groups compared inside each dataset
  that holds both (on the real composite database: SAMM only);
- the **dataset effect within ethnicity**: datasets compared inside each
  ethnicity group present in both (on the real database: the Asian group);

and names the variable the data point to: ``ethnicity``, ``dataset``, ``both``,
``neither`` (no test reaches ``alpha``) or ``not separable`` (the factor never
varies inside a stratum). "neither" at this sample size is not evidence of no
effect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ethnicmer.evaluation.protocols import subject_ids
from ethnicmer.stats.groups import stratified_effect


def attribution_verdict(p_ethnicity: float, p_dataset: float, alpha: float) -> str:
    """Which variable the two stratified tests point to (see the module doc)."""
    if np.isnan(p_ethnicity) and np.isnan(p_dataset):
        return "not separable"
    ethnicity = not np.isnan(p_ethnicity) and p_ethnicity < alpha
    dataset = not np.isnan(p_dataset) and p_dataset < alpha
    if ethnicity and dataset:
        return "both"
    if ethnicity:
        return "ethnicity" + (" (dataset not separable)" if np.isnan(p_dataset) else "")
    if dataset:
        return "dataset" + (" (ethnicity not separable)" if np.isnan(p_ethnicity) else "")
    return "neither"


def attribute(
    measures: pd.DataFrame,
    columns: Sequence[str],
    by: str,
    permutations: int,
    seed: int,
    alpha: float,
    groups: tuple[str, str] | None = None,
    bootstrap: int = 0,
) -> pd.DataFrame:
    """Stratified ethnicity and dataset effects of every measure column.

    Args:
        measures: one row per sample with ``dataset``, ``subject``, ``ethnicity``,
            the grouping column ``by`` and the measure ``columns`` (floats, NaN allowed).
        columns: the measures to test.
        by: a column whose levels are analysed separately (e.g. ``"label"``).
        permutations: Monte Carlo resamples per test; seed: seeds them.
        alpha: the level for the verdict.
        groups: the two ethnicity groups compared (A, B); default: the two present
            (samples of any other group are left out).
        bootstrap: resamples for each effect's standard error and minimum
            detectable effect (0: none).

    Returns:
        One row per (``by`` level, measure): ``ethnicity_a``/``ethnicity_b`` and
        ``ethnicity_effect`` (A − B within dataset) with ``p_ethnicity``,
        ``ethnicity_strata``, ``ethnicity_subjects``; ``dataset_a``/``dataset_b`` and
        ``dataset_effect`` (A − B within ethnicity) with ``p_dataset``,
        ``dataset_strata``, ``dataset_subjects``; ``attribution``; ``note``.
        Empty when there are not two ethnicity groups and two datasets.
    """
    if groups is None:
        present = sorted(measures["ethnicity"].dropna().unique())
        if len(present) != 2:
            return pd.DataFrame()
        groups = (present[0], present[1])
    measures = measures[measures["ethnicity"].isin(groups)]
    if measures["ethnicity"].nunique() != 2:
        return pd.DataFrame()
    datasets = sorted(measures["dataset"].dropna().unique())
    if len(groups) != 2 or len(datasets) != 2:
        return pd.DataFrame()
    rows = []
    for level, part in measures.groupby(by, sort=True):
        for column in columns:
            values = pd.DataFrame(
                {
                    "subject_id": subject_ids(part),
                    "ethnicity": part["ethnicity"].to_numpy(),
                    "dataset": part["dataset"].to_numpy(),
                    "value": part[column].to_numpy(dtype=float),
                }
            )
            eth = stratified_effect(
                values, "ethnicity", "dataset", *groups, permutations, seed, bootstrap
            )
            ds = stratified_effect(
                values, "dataset", "ethnicity", *datasets, permutations, seed, bootstrap
            )
            rows.append(
                {
                    by: level,
                    "measure": column,
                    "ethnicity_a": groups[0],
                    "ethnicity_b": groups[1],
                    "ethnicity_effect": eth["effect"],
                    "ethnicity_mde": eth["mde"],
                    "p_ethnicity": eth["p_permutation"],
                    "ethnicity_strata": eth["strata_used"],
                    "ethnicity_subjects": f"{eth['subjects_a']} vs {eth['subjects_b']}",
                    "dataset_a": datasets[0],
                    "dataset_b": datasets[1],
                    "dataset_effect": ds["effect"],
                    "dataset_mde": ds["mde"],
                    "p_dataset": ds["p_permutation"],
                    "dataset_strata": ds["strata_used"],
                    "dataset_subjects": f"{ds['subjects_a']} vs {ds['subjects_b']}",
                    "attribution": attribution_verdict(
                        float(eth["p_permutation"]), float(ds["p_permutation"]), alpha
                    ),
                    "note": "; ".join(str(n) for n in (eth["note"], ds["note"]) if n),
                }
            )
    return pd.DataFrame(rows)
