"""The paper's visual claims (IV-C) as tests over subjects, with their families.

The paper reads Grad-CAM maps by eye. Here each claim is one region measure and
one direction:

- Positive: Asians show larger AU6/AU12 activation → ``au6_au12_share`` Asian > Non-Asian;
- Positive: non-Asians one-sided → ``lip_asymmetry_abs`` Non-Asian > Asian;
- Surprise: non-Asians activate AU26 → ``mouth_jaw_share`` Non-Asian > Asian;
- Surprise: Asians the upper face (AU1/2/5) → ``upper_face_share`` Asian > Non-Asian.

Groups are compared over subjects (:func:`ethnicmer.stats.groups.compare_groups`),
over all samples and within each dataset. Families (:mod:`ethnicmer.stats.multiple`):

- ``statistics.csv`` (every region measure × emotion × scope): exploratory,
  Benjamini–Hochberg across the table;
- ``claims.csv``: the claims over all samples (the paper's own scope) are the
  confirmatory family *the paper's claims* (Holm over every row, branch and map
  method explained); within-dataset scopes are exploratory (BH). Verdicts use
  the adjusted p;
- ``attribution.csv``: the ethnicity effect within dataset and the dataset
  effect within ethnicity of each claim measure, each a confirmatory family
  (Holm); the attribution is decided on the adjusted p-values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.config import StudyConfig
from ethnicmer.evaluation.protocols import subject_ids
from ethnicmer.explain.attribution import attribution_verdict
from ethnicmer.explain.au_regions import MEASURES
from ethnicmer.stats.groups import compare_groups
from ethnicmer.stats.multiple import add_family

CLAIMS: list[dict[str, str]] = [
    {
        "claim": "Positive: Asians show larger AU6/AU12 activation",
        "emotion": "Positive",
        "measure": "au6_au12_share",
        "higher": "Asian",
    },
    {
        "claim": "Positive: non-Asians activate one side (AU12 asymmetry)",
        "emotion": "Positive",
        "measure": "lip_asymmetry_abs",
        "higher": "Non-Asian",
    },
    {
        "claim": "Surprise: non-Asians activate AU26 (jaw drop)",
        "emotion": "Surprise",
        "measure": "mouth_jaw_share",
        "higher": "Non-Asian",
    },
    {
        "claim": "Surprise: Asians activate the upper face (AU1/AU2/AU5)",
        "emotion": "Surprise",
        "measure": "upper_face_share",
        "higher": "Asian",
    },
]
"""The paper's visual claims (IV-C) as (emotion, measure, paper role expected higher).

``higher`` names a role of the paper (``Asian``/``Non-Asian``); the study's group
playing it comes from ``data.demographics.paper_groups``."""

ALPHA = 0.05


def claim_groups(cfg: StudyConfig) -> tuple[str, str]:
    """The study's groups in the paper's Asian and Non-Asian roles (A, B of every test)."""
    roles = cfg.data.demographics.paper_groups
    return roles["Asian"], roles["Non-Asian"]


def group_order(groups: list[str], non_asian: str) -> list[str]:
    """The group in the paper's Non-Asian role above the others (the paper's figures)."""
    return sorted(groups, key=lambda g: (g != non_asian, g))


def region_statistics(
    cfg: StudyConfig, measures: pd.DataFrame, row: str, branch: str, method: str
) -> list[dict[str, Any]]:
    """Every region measure between the two paper-role groups, per emotion and scope.

    Args:
        measures: one row per sample with ``dataset``, ``subject``, ``ethnicity``,
            ``label`` and the :data:`~ethnicmer.explain.au_regions.MEASURES` columns.
        row, branch, method: what the maps are of (copied into every record).

    Returns:
        One record per (emotion, scope ∈ {all, within <dataset>}, measure) with the
        :func:`~ethnicmer.stats.groups.compare_groups` fields; empty when a group
        is absent.
    """
    cam = cfg.stages.cam
    assert cam is not None
    group_a, group_b = claim_groups(cfg)
    if not {group_a, group_b} <= set(measures["ethnicity"]):
        return []
    measures = measures[measures["ethnicity"].isin([group_a, group_b])]
    scopes = {"all": measures}
    for dataset in sorted(measures["dataset"].unique()):
        scopes[f"within {dataset}"] = measures[measures["dataset"] == dataset]
    out = []
    for emotion in cam.emotions:
        for scope, part in scopes.items():
            rows = part[part["label"] == emotion]
            for measure in MEASURES:
                values = pd.DataFrame(
                    {
                        "subject_id": subject_ids(rows),
                        "group": rows["ethnicity"].to_numpy(),
                        "value": rows[measure].to_numpy(),
                    }
                )
                result = compare_groups(
                    values, group_a, group_b, cam.permutations, cam.bootstrap, cfg.seed
                )
                out.append(
                    {
                        "model": row,
                        "branch": branch,
                        "method": method,
                        "emotion": emotion,
                        "scope": scope,
                        "measure": measure,
                        "group_a": group_a,
                        "group_b": group_b,
                        **result,
                    }
                )
    return out


def statistics_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """``statistics.csv``: the region statistics as one exploratory family (BH)."""
    table = pd.DataFrame(records)
    if table.empty:
        return table
    return add_family(table, "p_permutation", "activation-map region statistics", "exploratory")


CLAIMS_FAMILY = "the paper's claims (all samples)"
CLAIMS_WITHIN = "the paper's claims within a dataset"


def claims_table(stats: pd.DataFrame, roles: dict[str, str]) -> pd.DataFrame:
    """Each claim's measured difference in the expected direction and its verdict.

    The claims over all samples form the confirmatory family *the paper's claims*
    (Holm); within-dataset scopes are exploratory (BH). A claim is ``supported``
    when its adjusted p is below 0.05 and the difference has the expected sign.

    Args:
        stats: the region statistics (A − B per measure, scope, row, branch, method).
        roles: the paper's role → the study's group (``paper_groups``).
    """
    rows = []
    for claim in CLAIMS:
        higher = roles[claim["higher"]]
        for (model, branch, method), part in stats.groupby(
            ["model", "branch", "method"], sort=False
        ):
            for scope in part["scope"].unique():
                match = part[
                    (part["emotion"] == claim["emotion"])
                    & (part["measure"] == claim["measure"])
                    & (part["scope"] == scope)
                ]
                if match.empty:
                    continue
                r = match.iloc[0]
                if higher not in (r["group_a"], r["group_b"]):
                    continue
                sign = 1.0 if higher == r["group_a"] else -1.0
                diff = sign * r["difference"]
                rows.append(
                    {
                        "claim": claim["claim"],
                        "model": model,
                        "branch": branch,
                        "method": method,
                        "scope": scope,
                        "measure": claim["measure"],
                        "expected_higher": higher,
                        "difference_expected_direction": diff,
                        "ci_low": sign * (r["ci_low"] if sign > 0 else r["ci_high"]),
                        "ci_high": sign * (r["ci_high"] if sign > 0 else r["ci_low"]),
                        "se": r["se"],
                        "mde": r["mde"],
                        "p_permutation": r["p_permutation"],
                        "subjects": f"{r['subjects_a']} vs {r['subjects_b']}",
                        "note": r["note"],
                    }
                )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    overall = table["scope"] == "all"
    table = add_family(
        table,
        "p_permutation",
        pd.Series(np.where(overall, CLAIMS_FAMILY, CLAIMS_WITHIN), index=table.index),
        pd.Series(np.where(overall, "confirmatory", "exploratory"), index=table.index),
    )
    table["verdict"] = [
        _verdict(d, p, n)
        for d, p, n in zip(
            table["difference_expected_direction"],
            table["p_permutation_adjusted"],
            table["note"],
            strict=True,
        )
    ]
    return table.drop(columns=["note"])


def _verdict(difference: float, p_adjusted: float, note: str) -> str:
    if np.isnan(difference):
        return f"not testable ({note})"
    if p_adjusted < ALPHA and difference > 0:
        return "supported"
    if p_adjusted < ALPHA:
        return "contradicted (significant, opposite direction)"
    return f"not supported (adjusted p >= {ALPHA})"


def claim_attribution(attribution: pd.DataFrame) -> pd.DataFrame:
    """The attribution rows of the four claims' (emotion, measure), claim named first.

    ``p_ethnicity`` (ethnicity within dataset) and ``p_dataset`` (dataset within
    ethnicity) of every row, branch and method are two confirmatory families
    (Holm; ``*_adjusted``) and ``attribution`` is decided on the adjusted values.
    """
    if attribution.empty or "label" not in attribution:
        return pd.DataFrame()
    parts = []
    for claim in CLAIMS:
        match = attribution[
            (attribution["label"] == claim["emotion"])
            & (attribution["measure"] == claim["measure"])
        ]
        parts.append(match.assign(claim=claim["claim"]))
    table = pd.concat(parts, ignore_index=True).rename(columns={"label": "emotion"})
    table = add_family(
        table,
        "p_ethnicity",
        "claims attribution: ethnicity within dataset",
        "confirmatory",
        prefix="ethnicity_",
    )
    table = add_family(
        table,
        "p_dataset",
        "claims attribution: dataset within ethnicity",
        "confirmatory",
        prefix="dataset_",
    )
    table["attribution"] = [
        attribution_verdict(e, d, ALPHA)
        for e, d in zip(table["p_ethnicity_adjusted"], table["p_dataset_adjusted"], strict=True)
    ]
    first = ["claim", "model", "branch", "method", "emotion", "measure"]
    return table[first + [c for c in table.columns if c not in first]]
