"""Scores of each benchmark row from its predictions: Table V, groups, seeds and CDE.

Each row is scored on the samples it predicted (a row whose context needs a
per-subject label tests only the labelled subjects; :mod:`ethnicmer.evaluation.protocols`),
pooling the predictions of all its folds (the paper's and MEGC2019's convention):

- :func:`table5_row`: per-class F1, macro-F1 with a 95 % interval over seeds and
  subjects, UF1, UAR, macro-F1 per ethnicity group and per dataset;
- :func:`group_rows`: macro-F1, UAR, accuracy and recall per ethnicity group,
  dataset and dataset × ethnicity cell, with class counts (groups never include
  subjects of unknown ethnicity);
- :func:`seed_rows`: the same per seed;
- :func:`cde_rows`: the MEGC2019 composite database evaluation (See et al., 2019):
  UF1 (mean of per-class F1 on the pooled predictions) and UAR (mean per-class
  recall) over all samples and per dataset, mean over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.config import ModelConfig, StudyConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.data.names import UNKNOWN
from ethnicmer.evaluation.metrics import classification_scores
from ethnicmer.evaluation.protocols import subject_ids
from ethnicmer.stats.classification import score_interval
from ethnicmer.stats.resampling import subjects_of

MIN_CLASS_COUNT = 5
"""A group with a class of fewer samples is marked; its macro-F1 is not compared."""

CLASSES = list(EMOTION_CLASSES)


@dataclass(frozen=True)
class RowPredictions:
    """One row's predictions aligned to its scored samples.

    Attributes:
        name: the row.
        samples: the ``n`` samples every seed of the row predicted (sorted by key).
        preds: ``(S, n)`` int64 predictions, one row per seed (sorted seeds).
    """

    name: str
    samples: pd.DataFrame
    preds: np.ndarray

    @property
    def y(self) -> np.ndarray:
        """``(n,)`` int64 emotion labels."""
        return self.samples["label_id"].to_numpy()


def prediction_matrix(predictions: pd.DataFrame, model: str, samples: pd.DataFrame) -> np.ndarray:
    """``(S, N)`` predictions of ``model`` aligned to ``samples`` rows, one row per seed;
    ``-1`` where the row made no prediction for a sample (its subject not tested)."""
    rows = []
    index = pd.MultiIndex.from_frame(samples[["dataset", "subject", "filename"]])
    for _, part in predictions[predictions["model"] == model].groupby("seed", sort=True):
        aligned = part.set_index(["dataset", "subject", "filename"])["y_pred"].reindex(index)
        rows.append(aligned.fillna(-1).to_numpy())
    return np.stack(rows).astype(np.int64)


def row_predictions(predictions: pd.DataFrame, model: str, scored: pd.DataFrame) -> RowPredictions:
    """The row's predictions on the samples every one of its seeds predicted."""
    matrix = prediction_matrix(predictions, model, scored)
    keep = (matrix >= 0).all(axis=0)
    return RowPredictions(model, scored[keep].reset_index(drop=True), matrix[:, keep])


def _groupings(samples: pd.DataFrame) -> dict[str, pd.Series]:
    """Grouping name → group of each sample (NA where the sample has no group)."""
    ethnicity = samples["ethnicity"].astype(str).where(samples["ethnicity"].astype(str) != UNKNOWN)
    return {
        "ethnicity": ethnicity,
        "dataset": samples["dataset"].astype(str),
        "dataset x ethnicity": samples["dataset"].astype(str) + " / " + ethnicity,
    }


def group_rows(row: RowPredictions, preds: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Scores per ethnicity group, dataset and dataset × ethnicity cell (``preds``: a
    subset of the row's seeds, default all)."""
    preds = row.preds if preds is None else preds
    y = row.y
    out = []
    for grouping, values in _groupings(row.samples).items():
        for group in sorted(values.dropna().unique()):
            rows = np.flatnonzero((values == group).to_numpy())
            counts = np.bincount(y[rows], minlength=len(CLASSES))
            per_seed = [classification_scores(y[rows], p[rows], CLASSES) for p in preds]
            small = [CLASSES[k] for k in range(len(CLASSES)) if counts[k] < MIN_CLASS_COUNT]
            out.append(
                {
                    "model": row.name,
                    "grouping": grouping,
                    "group": group,
                    "subjects": int(
                        row.samples.iloc[rows][["dataset", "subject"]].drop_duplicates().shape[0]
                    ),
                    "samples": len(rows),
                    **{f"n_{c}": int(counts[k]) for k, c in enumerate(CLASSES)},
                    "macro_f1": float(np.mean([s["macro_f1"] for s in per_seed])),
                    "uar": float(np.mean([s["uar"] for s in per_seed])),
                    "accuracy": float(np.mean([s["accuracy"] for s in per_seed])),
                    **{
                        f"recall_{c}": float(
                            np.mean([np.mean(p[rows][y[rows] == k] == k) for p in preds])
                        )
                        if counts[k]
                        else float("nan")
                        for k, c in enumerate(CLASSES)
                    },
                    "comparable": not small,
                    "note": (
                        f"fewer than {MIN_CLASS_COUNT} samples of {', '.join(small)}: "
                        "macro-F1 not comparable"
                    )
                    if small
                    else "",
                }
            )
    return out


def seed_rows(row: RowPredictions, seeds: list[int]) -> list[dict[str, Any]]:
    """One record per seed: per-class F1, macro-F1, UAR, macro-F1 per ethnicity and dataset."""
    out = []
    for seed, p in zip(seeds, row.preds, strict=True):
        score = classification_scores(row.y, p, CLASSES)
        groups = group_rows(row, p[None])
        out.append(
            {
                "model": row.name,
                "seed": seed,
                **{f"f1_{c}": score[f"f1_{c}"] for c in CLASSES},
                "macro_f1": score["macro_f1"],
                "uar": score["uar"],
                **{
                    f"mf1_{g['group']}": g["macro_f1"]
                    for g in groups
                    if g["grouping"] in ("ethnicity", "dataset")
                },
            }
        )
    return out


def table5_row(
    cfg: StudyConfig,
    model: ModelConfig,
    row: RowPredictions,
    predictions: pd.DataFrame,
    groups: list[dict[str, Any]],
) -> dict[str, Any]:
    """Table V's record of one row (scores are means over seeds)."""
    bench = cfg.stages.benchmark
    assert bench is not None
    per_seed = [classification_scores(row.y, p, CLASSES) for p in row.preds]
    seed_mf1 = [s["macro_f1"] for s in per_seed]
    subjects = subjects_of(subject_ids(row.samples), row.samples["dataset"].to_numpy())
    interval = score_interval(row.y, row.preds, subjects, len(CLASSES), bench.bootstrap, cfg.seed)
    by = {(g["grouping"], g["group"]): g for g in groups}
    eth = {g["group"]: g["macro_f1"] for g in groups if g["grouping"] == "ethnicity"}
    seconds = (
        predictions.loc[predictions["model"] == model.name]
        .groupby(["seed", "fold"])["seconds"]
        .first()
    )
    context_input = ""
    if model.context != "none":
        context_input = "flow" if model.context_input == "flow" else f"apex ({model.apex_colour})"
    record = {
        "model": model.name,
        "context": model.context,
        "context_input": context_input,
        "backbones": model.emotion_backbone
        + ("" if model.context == "none" else f" + {model.context_backbone}"),
        **{f"f1_{c}": float(np.mean([s[f"f1_{c}"] for s in per_seed])) for c in CLASSES},
        "macro_f1": float(np.mean(seed_mf1)),
        "mf1_ci_low": interval.low,
        "mf1_ci_high": interval.high,
        "mf1_se": interval.se,
        "uf1": float(np.mean([s["uf1"] for s in per_seed])),
        "uar": float(np.mean([s["uar"] for s in per_seed])),
        **{f"mf1_{g}": v for g, v in sorted(eth.items())},
        **{
            f"mf1_{d}": by[("dataset", d)]["macro_f1"]
            for d in sorted(row.samples["dataset"].unique())
        },
        "samples": len(row.samples),
        "subjects": subjects.count,
        "seeds": len(row.preds),
        "seed_mf1_min": float(np.min(seed_mf1)),
        "seed_mf1_max": float(np.max(seed_mf1)),
        "compute_seconds": float(seconds.sum()),
        "median_fold_seconds": float(seconds.median()),
    }
    if len(eth) == 2:
        (g1, v1), (g2, v2) = sorted(eth.items())
        record[f"gap_{g1}_minus_{g2}"] = v1 - v2
    return record


def cde_rows(row: RowPredictions) -> dict[str, Any]:
    """MEGC2019 composite database evaluation of one row: UF1 and UAR over all samples
    and per dataset (each on that dataset's pooled predictions), mean and spread over
    seeds. UF1 = mean over classes of F1 = 2TP / (2TP + FP + FN) with TP, FP, FN
    summed over every fold; UAR = mean over classes of TP / N_class (See et al., 2019)."""
    scopes = {"all": np.ones(len(row.samples), dtype=bool)}
    for dataset in sorted(row.samples["dataset"].unique()):
        scopes[dataset] = (row.samples["dataset"] == dataset).to_numpy()
    record: dict[str, Any] = {"model": row.name, "seeds": len(row.preds)}
    for scope, mask in scopes.items():
        scores = [classification_scores(row.y[mask], p[mask], CLASSES) for p in row.preds]
        suffix = "" if scope == "all" else f"_{scope}"
        record[f"uf1{suffix}"] = float(np.mean([s["uf1"] for s in scores]))
        record[f"uar{suffix}"] = float(np.mean([s["uar"] for s in scores]))
        if scope == "all" and len(scores) > 1:
            record["uf1_seed_min"] = float(np.min([s["uf1"] for s in scores]))
            record["uf1_seed_max"] = float(np.max([s["uf1"] for s in scores]))
        record[f"samples{suffix}"] = int(mask.sum())
    return record


def ensemble_predictions(predictions: pd.DataFrame, name: str, members: list[str]) -> pd.DataFrame:
    """The predictions of an ensemble row: per sample, the class of the mean logits over
    every seed of every member (samples all of them predicted), as one seed (the lowest);
    ``seconds`` is the members' compute for the fold, summed."""
    keys = ["dataset", "subject", "filename"]
    logits = [c for c in predictions.columns if c.startswith("logit_")]
    part = predictions[predictions["model"].isin(members)]
    runs = part.groupby(["model", "seed"]).ngroups
    grouped = part.groupby(keys, sort=True)
    complete = grouped.size() == runs
    mean = grouped[logits].mean()[complete]
    first = grouped[["fold", "y_true"]].first()[complete]
    seconds = part.groupby(["model", "seed", "fold"])["seconds"].first().groupby("fold").sum()
    out = first.join(mean).reset_index()
    out["y_pred"] = out[logits].to_numpy().argmax(axis=1)
    out["seed"] = int(part["seed"].min())
    out["model"] = name
    out["seconds"] = out["fold"].map(seconds).to_numpy()
    return out[[*keys, "seed", "fold", "y_true", "y_pred", *logits, "seconds", "model"]]


def ensemble_row(model: ModelConfig, name: str) -> ModelConfig:
    """The row config an ensemble is reported under: its first member's, renamed."""
    return model.model_copy(update={"name": name})
