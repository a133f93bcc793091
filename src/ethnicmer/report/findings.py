"""The report's first section: what the study found, in a few sentences and one figure.

Every sentence comes from a stage's tidy result table; every comparison, effect and
prima facie sentence carries its effect, its interval, its family-adjusted p and the
smallest effect the study could detect (the claim sentences count adjusted results;
a term the design cannot estimate says why), so a reader sees at once the answer and
how much it can be trusted:

- the configured row comparisons (paired ΔMF1 over seeds and subjects), confirmatory
  families first;
- the recognition effect model's two confound terms (ethnicity within dataset,
  dataset within ethnicity; GEE odds ratios);
- the prima facie study's Mixed-vs-mono tests;
- the paper's activation-map claims over all samples (how many hold after Holm) and
  what the stratified tests attribute them to.

The figure (``findings_forest.png``) is a forest plot of the row comparisons: each
ΔMF1 with its 95 % interval, the band of effects the study could not detect shaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ethnicmer.io import save_figure_atomic
from ethnicmer.studies.comparisons import comparison_sentence


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def comparison_findings(run_dir: Path) -> list[str]:
    """The benchmark's row comparisons, confirmatory first."""
    summary = _read_json(run_dir / "benchmark" / "summary.json")
    rows = sorted(
        summary.get("comparisons", []), key=lambda r: r.get("family_kind") != "confirmatory"
    )
    return [comparison_sentence(row) for row in rows]


def detectable_odds_ratios(effect: dict[str, Any]) -> str:
    """What follows "this study could detect": "an odds ratio ≥ 2.31 or ≤ 0.45"
    from a GEE row's ``mde`` / ``mde_below``, or "an odds ratio ≤ 0.05 but none
    above 1 (up to 22,026)" where one direction has no detectable size (``None``,
    NaN or infinite)."""

    def usable(value: Any) -> bool:
        return value is not None and bool(np.isfinite(value)) and value > 0

    up, down = effect.get("mde"), effect.get("mde_below", None)
    if down is None and usable(up):  # a table written before mde_below existed
        down = 1 / up
    if usable(up) and usable(down):
        return f"an odds ratio ≥ {up:.2f} or ≤ {down:.2f}"
    if usable(up):
        return f"an odds ratio ≥ {up:.2f} but none below 1 (down to 1/22,026)"
    if usable(down):
        return f"an odds ratio ≤ {down:.2f} but none above 1 (up to 22,026)"
    return "no odds ratio up to 22,026 either way (or its size could not be computed)"


def effect_findings(run_dir: Path) -> list[str]:
    """The GEE's confound terms on correctness (odds ratio, interval, adjusted p, MDE)."""
    summary = _read_json(run_dir / "benchmark" / "summary.json")
    sentences = []
    for effect in summary.get("effects", []):
        if effect["outcome"] != "correct" or effect["effect"] not in (
            "ethnicity within dataset",
            "dataset within ethnicity",
        ):
            continue
        what = f"Recognition, {effect['effect']} ({effect['comparison']})"
        if effect.get("estimate") is None or effect.get("p_adjusted") is None:
            sentences.append(f"{what}: {effect.get('note') or 'not estimable'}.")
            continue
        method = "Holm" if effect.get("family_kind") == "confirmatory" else "BH"
        sentences.append(
            f"{what}: odds ratio of a correct prediction {effect['estimate']:.2f} "
            f"[{effect['ci_low']:.2f}, {effect['ci_high']:.2f}], {method} p "
            f"{effect['p_adjusted']:.3f} ({effect['family']}); this study could detect "
            f"{detectable_odds_ratios(effect)}."
        )
    return sentences


def prima_facie_findings(run_dir: Path) -> list[str]:
    """Mixed vs each mono-ethnic scenario (mean over draws, Holm p, MDE)."""
    path = run_dir / "prima_facie" / "tests.csv"
    if not path.is_file():
        return []
    sentences = []
    for _, row in pd.read_csv(path).iterrows():
        sentences.append(
            f"Prima facie, {row['comparison']}: macro-F1 difference {row['mean difference']:+.3f} "
            f"over {int(row['draws'])} draws (2.5–97.5 % of draws "
            f"[{row['2.5% over draws']:+.3f}, {row['97.5% over draws']:+.3f}]), Holm p "
            f"{row['p_adjusted']:.3f} (null from relabelling subjects); this study could "
            f"detect ≥ {row['mde']:.3f}."
        )
    return sentences


def claim_findings(run_dir: Path) -> list[str]:
    """The paper's visual claims over all samples after Holm, and their attribution."""
    summary = _read_json(run_dir / "cam" / "summary.json")
    claims = [c for c in summary.get("claims", []) if c.get("scope") == "all"]
    if not claims:
        return []
    supported = [c for c in claims if c["verdict"] == "supported"]
    sentences = [
        f"Activation maps: {len(supported)} of {len(claims)} tests of the paper's four visual "
        "claims hold over all samples at Holm-adjusted p < 0.05 (one family over every row, "
        "branch and map method)."
    ]
    attribution = pd.DataFrame(summary.get("attribution", []))
    if not attribution.empty:
        counts = attribution["attribution"].value_counts()
        listed = ", ".join(f"{name} {n}" for name, n in counts.items())
        sentences.append(
            "Split into ethnicity within dataset and dataset within ethnicity (stratified "
            f"permutation over subjects, Holm), the claim measures point to: {listed}."
        )
    return sentences


def forest_figure(run_dir: Path, path: Path) -> Path | None:
    """A forest plot of the row comparisons (ΔMF1 and 95 % interval; the band the study
    could not detect shaded); ``None`` without comparisons."""
    summary = _read_json(run_dir / "benchmark" / "summary.json")
    rows = summary.get("comparisons", [])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.2), dpi=110)
    for i, row in enumerate(reversed(rows)):
        confirmatory = row.get("family_kind") == "confirmatory"
        if row.get("mde") and np.isfinite(row["mde"]):
            ax.fill_betweenx([i - 0.3, i + 0.3], -row["mde"], row["mde"], color="#eeeeee")
        ax.errorbar(
            row["difference"],
            i,
            xerr=[[row["difference"] - row["ci_low"]], [row["ci_high"] - row["difference"]]],
            fmt="o" if confirmatory else "s",
            color="#1f4e9a" if confirmatory else "#999999",
            mfc="#1f4e9a" if confirmatory else "white",
            capsize=3,
        )
    ax.axvline(0, color="#444444", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{r['a']} − {r['b']}" for r in reversed(rows)])
    ax.set_xlabel("ΔMF1 (A − B), 95 % interval over seeds and subjects")
    ax.set_title(
        "Row comparisons (filled: confirmatory; open: exploratory); grey: undetectable",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
