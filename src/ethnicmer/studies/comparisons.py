"""Paired comparisons of benchmark rows (Table V pairs and the confound controls).

Each pair (A, B) is compared on the same samples and seeds
(:func:`ethnicmer.stats.classification.paired_comparison`): ΔMF1 = A − B with a
two-level bootstrap interval (seeds, then subjects within dataset), a
randomisation p-value (A and B swapped per subject) and the minimum detectable
effect. The configured pairs form one family:

- with ≥ 2 seeds per row, the confirmatory family ``Table V pairs`` (Holm);
- with one seed, ``Table V pairs (single seed)``, exploratory (Benjamini–Hochberg)
  and labelled as such in every row: seed-to-seed noise of one row (0.02–0.05
  MF1 on the real set) is as large as the effects in question;
- in a benchmark declared exploratory (``benchmark.purpose: exploratory``, e.g. a
  sweep run on test folds of a main study), ``Table V pairs (exploratory study)``,
  exploratory whatever the seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.evaluation.protocols import subject_ids
from ethnicmer.stats.classification import paired_comparison
from ethnicmer.stats.multiple import add_family
from ethnicmer.stats.resampling import subjects_of

CONFIRMATORY = "Table V pairs"
SINGLE_SEED = "Table V pairs (single seed)"
EXPLORATORY_STUDY = "Table V pairs (exploratory study)"
UNLIKE = "Table V pairs (different training subjects)"

COLUMNS = [
    "a",
    "b",
    "mf1_a",
    "mf1_b",
    "difference",
    "ci_low",
    "ci_high",
    "se",
    "mde",
    "p_permutation",
    "family",
    "family_kind",
    "family_size",
    "p_permutation_adjusted",
    "samples",
    "subjects",
    "seeds",
    "seed_difference_min",
    "seed_difference_max",
    "seeds_a_higher",
    "evidence",
]


def compare_rows(
    scored: pd.DataFrame,
    matrices: dict[str, np.ndarray],
    pairs: list[tuple[str, str]],
    n_classes: int,
    resamples: int,
    seed: int,
    exploratory: bool = False,
    trained_on: dict[str, int] | None = None,
    family: str | None = None,
) -> pd.DataFrame:
    """One row per pair with the difference, its interval, p, MDE, family and adjusted p.

    Each pair is compared on the samples both rows predicted in every seed (a row
    whose context needs a per-subject label tests only the labelled subjects).

    Args:
        scored: the scored samples (``dataset``, ``subject``, ``label_id``), ``N`` rows.
        matrices: row name → ``(S, N)`` predictions, ``-1`` where a row made none.
        pairs: (A, B) row names; the difference is A − B.
        resamples: bootstrap and randomisation resamples; seed: seeds them.
        exploratory: the benchmark is declared exploratory (``purpose``).
        trained_on: row name → the samples it trains on; a pair of rows trained on
            different samples (a per-subject-label context drops the unlabelled
            subjects) is exploratory: its difference also holds the extra training data.
        family: put every pair in this exploratory family instead (pairs chosen
            after the runs, e.g. rows of two studies: :mod:`ethnicmer.studies.cross_study`).
    """
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        common = (matrices[a] >= 0).all(axis=0) & (matrices[b] >= 0).all(axis=0)
        both = scored[common]
        subjects = subjects_of(subject_ids(both), both["dataset"].to_numpy())
        result = paired_comparison(
            both["label_id"].to_numpy(),
            matrices[a][:, common],
            matrices[b][:, common],
            subjects,
            n_classes,
            resamples,
            seed,
        )
        single = result.n_seeds < 2
        unlike = trained_on is not None and trained_on.get(a) != trained_on.get(b)
        rows.append(
            {
                "a": a,
                "b": b,
                "mf1_a": result.score_a,
                "mf1_b": result.score_b,
                "difference": result.difference,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "se": result.se,
                "mde": result.mde,
                "p_permutation": result.p_value,
                "samples": int(common.sum()),
                "subjects": subjects.count,
                "seeds": result.n_seeds,
                "seed_difference_min": float(np.min(result.seed_differences)),
                "seed_difference_max": float(np.max(result.seed_differences)),
                "seeds_a_higher": int(np.sum(result.seed_differences > 0)),
                "evidence": (
                    "single seed: exploratory (seed-to-seed noise not measured; do not "
                    "credit the difference)"
                    if single
                    else f"{result.n_seeds} seeds, paired by seed and sample"
                )
                + ("; exploratory study (benchmark.purpose)" if exploratory else "")
                + (
                    f"; the rows trained on different samples ({a}: {trained_on[a]}, {b}: "
                    f"{trained_on[b]}): not like for like, exploratory"
                    if unlike and trained_on is not None
                    else ""
                )
                + (f"; {family}: exploratory" if family else ""),
                "_family": (
                    family
                    if family
                    else EXPLORATORY_STUDY
                    if exploratory
                    else SINGLE_SEED
                    if single
                    else UNLIKE
                    if unlike
                    else CONFIRMATORY
                ),
                "_kind": (
                    "exploratory" if family or single or exploratory or unlike else "confirmatory"
                ),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    table = add_family(table, "p_permutation", table["_family"], table["_kind"])
    return table[COLUMNS]


def comparison_sentence(row: dict[str, Any] | pd.Series) -> str:
    """A report sentence: difference, interval, adjusted p with its family, and the MDE.

    Example: "dual − motion: ΔMF1 +0.023 [−0.018, +0.073], Holm p 0.70 (Table V pairs,
    3 tests); this study could detect ≥ 0.090. dual is higher in 3 of 3 seeds."
    """
    method = "Holm" if row["family_kind"] == "confirmatory" else "BH"
    text = (
        f"{row['a']} − {row['b']}: ΔMF1 {row['difference']:+.3f} "
        f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], {method} p "
        f"{row['p_permutation_adjusted']:.3f} ({row['family']}, {int(row['family_size'])} "
        f"test{'s' if int(row['family_size']) != 1 else ''}; raw p {row['p_permutation']:.3f}); "
        f"this study could detect ≥ {row['mde']:.3f}."
    )
    if row["seeds"] > 1:
        text += (
            f" {row['a']} is higher in {int(row['seeds_a_higher'])} of {int(row['seeds'])} "
            f"seeds (per-seed ΔMF1 {row['seed_difference_min']:+.3f} to "
            f"{row['seed_difference_max']:+.3f})."
        )
    else:
        text += " Single seed: exploratory, not evidence either way."
    return text
