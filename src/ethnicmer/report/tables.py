"""Writing result tables as CSV, Markdown and LaTeX, and confusion-matrix figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import ConfusionMatrixDisplay

from ethnicmer.io import save_figure_atomic, write_csv_atomic, write_text_atomic

COLUMN_LABELS = {
    "model": "row",
    "macro_f1": "MF1",
    "mf1_ci_low": "MF1 95 % CI low",
    "mf1_ci_high": "MF1 95 % CI high",
    "mf1_se": "MF1 SE",
    "uf1": "UF1",
    "uar": "UAR",
    "p": "p (raw)",
    "p_permutation": "p (raw)",
    "p_fisher": "p (raw, Fisher)",
    "p_adjusted": "p (adjusted)",
    "p_permutation_adjusted": "p (adjusted)",
    "p_fisher_adjusted": "p (adjusted)",
    "family_kind": "family kind",
    "family_size": "tests in family",
    "mde": "detectable effect (80 % power; odds ratios: above 1)",
    "mde_below": "detectable odds ratio below 1 (80 % power; log-loss: −mde)",
    "mde_difference": "detectable difference (80 % power)",
    "mde_over_chance": "detectable rise over chance (80 % power)",
    "ci_low": "95 % CI low",
    "ci_high": "95 % CI high",
    "se": "SE",
    "se_link": "SE (link scale)",
    "compute_seconds": "compute (s)",
    "median_fold_seconds": "median fold (s)",
    "seed_mf1_min": "MF1 lowest seed",
    "seed_mf1_max": "MF1 highest seed",
    "difference_expected_direction": "difference (expected direction)",
    "balanced_accuracy": "balanced accuracy",
}
"""Raw column name → the header a reader sees in the report (tables on disk keep the raw
names, which scripts read)."""

_PREFIXES = {
    "mf1_": "MF1 ",
    "f1_": "F1 ",
    "uf1_": "UF1 ",
    "uar_": "UAR ",
    "recall_": "recall ",
    "samples_": "samples ",
    "n_": "n ",
    "k_": "showing ",
    "share_": "share ",
    "gap_": "gap ",
}


def column_label(name: str) -> str:
    """The human header of a raw column name (``mf1_ci_low`` → ``MF1 95 % CI low``)."""
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    for prefix, text in _PREFIXES.items():
        if name.startswith(prefix):
            return text + name[len(prefix) :].replace("_", " ")
    return name.replace("_", " ")


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """``frame`` as a Markdown table; missing values (NaN, None) print as "–", not "nan"."""
    cells = frame.astype(object).where(frame.notna(), None)
    return cells.to_markdown(index=False, floatfmt=floatfmt, missingval="–")


def write_table(frame: pd.DataFrame, stem: Path, caption: str, floatfmt: str = ".4f") -> list[Path]:
    """Write ``stem.csv``, ``stem.md`` and ``stem.tex`` (each atomically); return the paths."""
    csv, md, tex = stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")
    write_csv_atomic(frame, csv)
    write_text_atomic(md, f"**{caption}**\n\n" + markdown_table(frame, floatfmt) + "\n")
    numeric = {
        c: (lambda v: f"{v:{floatfmt}}") for c in frame.columns if frame[c].dtype.kind == "f"
    }
    latex = frame.to_latex(index=False, caption=caption, formatters=numeric, na_rep="--")
    write_text_atomic(tex, latex)
    return [csv, md, tex]


def confusion_figure(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], title: str, path: Path
) -> Path:
    """A confusion-matrix PNG (rows: ground truth, columns: prediction; counts)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=list(range(len(classes))),
        display_labels=classes,
        ax=ax,
        colorbar=False,
    )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
