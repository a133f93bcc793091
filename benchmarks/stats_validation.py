"""Validation of the statistics layer: type-I error and power on synthetic data.

Synthetic predictions and measures with **subject random effects** (samples of one
subject share a random offset, as faces do), so a test that treated samples as
units would reject far too often. For each test this package runs:

- with no effect: the share of replicates rejected at α 0.05 (should be ≤ 0.06);
- with an effect equal to the test's own minimum detectable effect (median over
  the null replicates; ``ethnicmer.stats.power``): the share rejected (should be
  0.80 ± 0.10).

Tests: the two-group comparison over subjects (activation-map measures), the
stratified ethnicity-within-dataset effect (attribution), the paired comparison of
two benchmark rows (MF1, paired by seed and sample), and the GEE odds ratio of
the ethnicity effect within dataset (recognition effects) in three designs
(recognition rate 0.6 with the effect towards 1; rate 0.75 with the effect
towards 1 and towards 0.5), each at its detectable odds ratio in that direction.

    .venv/bin/python benchmarks/stats_validation.py [--replicates 500]

Writes ``benchmarks/results/stats_validation.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write

from ethnicmer.stats.classification import paired_comparison
from ethnicmer.stats.effects import recognition_effects
from ethnicmer.stats.groups import compare_groups, stratified_effect
from ethnicmer.stats.resampling import subjects_of

ALPHA = 0.05


def group_values(rng: np.random.Generator, shift: float) -> pd.DataFrame:
    """20 + 20 subjects, 4 samples each; subject effect sd 1, sample noise sd 1."""
    rows = []
    for s in range(40):
        group = "A" if s < 20 else "B"
        centre = rng.normal(shift if group == "A" else 0.0, 1.0)
        rows += [(f"s{s}", group, centre + rng.normal(0, 1.0)) for _ in range(4)]
    return pd.DataFrame(rows, columns=["subject_id", "group", "value"])


def stratified_values(rng: np.random.Generator, shift: float) -> pd.DataFrame:
    """Two datasets (strata) with both groups in one of them only, as the real layout."""
    rows = []
    for s in range(48):
        dataset = "casme2" if s < 24 else "samm"
        group = "Asian" if (dataset == "casme2" or s % 2) else "Non-Asian"
        centre = rng.normal(
            (shift if group == "Asian" else 0.0) + (0.5 if dataset == "samm" else 0), 1
        )
        rows += [(f"s{s}", group, dataset, centre + rng.normal(0, 1)) for _ in range(4)]
    return pd.DataFrame(rows, columns=["subject_id", "ethnicity", "dataset", "value"])


def paired_predictions(rng: np.random.Generator, shift: float) -> tuple:
    """30 subjects × 8 samples, 3 seeds; B is A's model with log-odds + shift."""
    ability = np.repeat(rng.normal(0.8, 0.8, 30), 8)
    y = rng.integers(0, 3, 240)
    preds = []
    for delta in (shift, 0.0):
        correct = rng.random((3, 240)) < 1 / (1 + np.exp(-(ability + delta)))
        preds.append(np.where(correct, y, (y + 1 + rng.integers(0, 2, (3, 240))) % 3))
    return y, preds[0], preds[1]


def gee_observations(rng: np.random.Generator, log_odds: float, base: float = 0.5) -> pd.DataFrame:
    """24 subjects (CASME II all Asian, SAMM mixed), 6 samples, 2 seeds, 1 row;
    subject log odds of recognition ~ N(base, 0.8), Non-Asian + ``log_odds``."""
    rows = []
    for s in range(24):
        dataset = "casme2" if s < 12 else "samm"
        group = "Asian" if (dataset == "casme2" or s % 2) else "Non-Asian"
        ability = rng.normal(base, 0.8) + (log_odds if group == "Non-Asian" else 0.0)
        for k in range(6):
            label = ["Negative", "Positive", "Surprise"][k % 3]
            for seed in range(2):
                correct = int(rng.random() < 1 / (1 + np.exp(-ability)))
                rows.append(
                    {
                        "model": "a",
                        "seed": seed,
                        "subject_id": f"{dataset}/{s}",
                        "dataset": dataset,
                        "ethnicity": group,
                        "label": label,
                        "correct": correct,
                        "log_loss": 1.0 - correct,
                    }
                )
    return pd.DataFrame(rows)


def run(replicates: int) -> dict:
    rng = np.random.default_rng(0)
    results = {}
    clock = time.perf_counter()

    def rates(
        name: str,
        null_fn: Callable[[int], dict],
        planted_fn: Callable[[int, float], dict],
        mde_of: Callable[[dict], float],
    ) -> None:
        null = [null_fn(i) for i in range(replicates)]
        mde = float(np.nanmedian([mde_of(r) for r in null]))
        planted = [planted_fn(i, mde) for i in range(replicates)]
        results[name] = {
            "replicates": replicates,
            "type_i_error": float(np.mean([r["p"] < ALPHA for r in null])),
            "mde": mde,
            "power_at_mde": float(np.mean([r["p"] < ALPHA for r in planted])),
        }
        print(name, results[name], file=sys.stderr)

    def groups(shift: float, i: int) -> dict:
        out = compare_groups(group_values(rng, shift), "A", "B", 199, 199, i)
        return {"p": out["p_permutation"], "se": out["se"], "mde": out["mde"]}

    rates("compare_groups", lambda i: groups(0.0, i), lambda i, m: groups(m, i), lambda r: r["mde"])

    def stratified(shift: float, i: int) -> dict:
        out = stratified_effect(
            stratified_values(rng, shift), "ethnicity", "dataset", "Asian", "Non-Asian", 199, i, 199
        )
        return {"p": out["p_permutation"], "mde": out["mde"]}

    rates(
        "stratified_effect (ethnicity within dataset)",
        lambda i: stratified(0.0, i),
        lambda i, m: stratified(m, i),
        lambda r: r["mde"],
    )

    subjects = subjects_of(np.repeat(np.arange(30), 8).astype(str))

    def paired(shift: float, i: int) -> dict:
        y, a, b = paired_predictions(rng, shift)
        out = paired_comparison(y, a, b, subjects, 3, 199, i)
        return {"p": out.p_value, "mde": out.mde, "difference": out.difference}

    # the paired test's MDE is in MF1 units: plant the log-odds shift whose mean
    # ΔMF1 equals it (found on a grid), then measure power there
    null = [paired(0.0, i) for i in range(replicates)]
    mde = float(np.median([r["mde"] for r in null]))
    grid = np.linspace(0.05, 1.5, 30)
    mean_delta = [np.mean([paired(g, 10_000 + j)["difference"] for j in range(40)]) for g in grid]
    shift = float(np.interp(mde, mean_delta, grid))
    planted = [paired(shift, i) for i in range(replicates)]
    results["paired_comparison (MF1, 3 seeds)"] = {
        "replicates": replicates,
        "type_i_error": float(np.mean([r["p"] < ALPHA for r in null])),
        "mde": mde,
        "planted_log_odds_shift": shift,
        "mean_planted_difference": float(np.mean([r["difference"] for r in planted])),
        "power_at_mde": float(np.mean([r["p"] < ALPHA for r in planted])),
    }
    print("paired", results["paired_comparison (MF1, 3 seeds)"], file=sys.stderr)

    def gee(log_odds: float, base: float, sign: float) -> dict:
        table = recognition_effects(
            gee_observations(rng, log_odds, base),
            [],
            ("Non-Asian", "Asian"),
            outcomes=("correct",),
        )
        row = table[table["effect"] == "ethnicity within dataset"].iloc[0]
        # the detectable log odds ratio in the planted direction
        mde = np.log(row["mde"]) if sign > 0 else -np.log(row["mde_below"])
        return {"p": row["p"], "mde": float(mde)}

    # the GEE estimates the population-averaged log odds ratio, which is the
    # subject-specific one attenuated by sqrt(1 + c²σ²), c = 16√3/(15π), σ = 0.8
    # the subject effect sd (Zeger, Liang & Albert 1988): plant the subject-level
    # shift whose marginal effect equals the MDE in that direction. Three designs: recognition rate
    # 0.6 with the effect towards 1 (the original), rate 0.75 (the real studies'
    # accuracy) with the effect towards 1 and towards 0.5
    attenuation = float(np.sqrt(1 + (16 * np.sqrt(3) / (15 * np.pi)) ** 2 * 0.8**2))
    designs = {
        "GEE ethnicity within dataset (odds ratio)": (0.5, 1.0),
        "GEE ethnicity within dataset, rate 0.75, effect towards 1": (1.2, 1.0),
        "GEE ethnicity within dataset, rate 0.75, effect towards 0.5": (1.2, -1.0),
    }
    for name, (base, sign) in designs.items():
        rates(
            name,
            lambda i, b=base, s=sign: gee(0.0, b, s),
            lambda i, m, b=base, s=sign: gee(s * m * attenuation, b, s),
            lambda r: r["mde"],
        )
    return {"seconds": round(time.perf_counter() - clock, 1), "alpha": ALPHA, "tests": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=500)
    args = parser.parse_args()
    write("stats_validation", run(args.replicates))


if __name__ == "__main__":
    main()
