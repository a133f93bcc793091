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
