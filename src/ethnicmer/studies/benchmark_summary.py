"""The LOSO benchmark's result tables (paper Table V and beyond), from its predictions.

Reads the fold predictions of every row and seed and writes, under
``runs/<study>/benchmark/``:

- ``table5.{csv,md,tex}``: per-class F1, macro-F1 with a 95 % interval over
  subjects and seeds (two-level bootstrap, subjects resampled within dataset),
  UF1, UAR, macro-F1 per ethnicity group and dataset, seed spread, compute time;
- ``groups.*``: macro-F1, UAR and recall per ethnicity, dataset and dataset ×
  ethnicity cell with class counts (cells with a class under 5 samples marked);
- ``seeds.*``: the same per seed;
- ``comparisons.*``: paired tests of the configured pairs with family, adjusted
  p and minimum detectable effect (:mod:`ethnicmer.studies.comparisons`);
- ``effects.*``: GEE odds ratios of recognition (:mod:`ethnicmer.stats.effects`);
- ``fairness.*``: per-group recall and the per-class fairness gaps with
  intervals (:mod:`ethnicmer.stats.fairness`);
- ``context_decoding.*``: the context head's decoding on unseen subjects and
  the colour-only baseline (:mod:`ethnicmer.evaluation.colour`);
- ``predictions.csv``, ``confusion_<row>.png`` and ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.config import BenchmarkConfig, StudyConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.evaluation.colour import colour_decoding
from ethnicmer.evaluation.decoding import context_decoding
from ethnicmer.evaluation.metrics import classification_scores
from ethnicmer.evaluation.protocols import context_labels, subject_ids
from ethnicmer.io import write_csv_atomic, write_json_atomic
from ethnicmer.report.tables import confusion_figure, write_table
from ethnicmer.stats.classification import score_interval
from ethnicmer.stats.effects import observations, recognition_effects
from ethnicmer.stats.fairness import fairness_table
from ethnicmer.stats.multiple import add_family
from ethnicmer.stats.resampling import subjects_of
from ethnicmer.studies.comparisons import compare_rows

MIN_CLASS_COUNT = 5
"""A group with a class of fewer samples is marked; its macro-F1 is not compared."""


def _pred_matrix(predictions: pd.DataFrame, model: str, samples: pd.DataFrame) -> np.ndarray:
    """``(S, N)`` predictions of ``model`` aligned to ``samples`` rows, one row per seed."""
    rows = []
    index = pd.MultiIndex.from_frame(samples[["dataset", "subject", "filename"]])
    for _, part in predictions[predictions["model"] == model].groupby("seed", sort=True):
        aligned = part.set_index(["dataset", "subject", "filename"])["y_pred"].reindex(index)
        rows.append(aligned.to_numpy())
    return np.stack(rows).astype(np.int64)


def _group_rows(samples: pd.DataFrame, preds: np.ndarray, model: str) -> list[dict[str, Any]]:
    y = samples["label_id"].to_numpy()
    out = []
    groupings = {
        "ethnicity": samples["ethnicity"],
        "dataset": samples["dataset"],
        "dataset x ethnicity": samples["dataset"] + " / " + samples["ethnicity"],
    }
    for grouping, values in groupings.items():
        for group in sorted(values.unique()):
            rows = np.flatnonzero((values == group).to_numpy())
            counts = np.bincount(y[rows], minlength=len(EMOTION_CLASSES))
            per_seed = [
                classification_scores(y[rows], p[rows], list(EMOTION_CLASSES)) for p in preds
            ]
            small = [
                EMOTION_CLASSES[k]
                for k in range(len(EMOTION_CLASSES))
                if counts[k] < MIN_CLASS_COUNT
            ]
            record = {
                "model": model,
                "grouping": grouping,
                "group": group,
                "subjects": int(
                    samples.iloc[rows][["dataset", "subject"]].drop_duplicates().shape[0]
                ),
                "samples": len(rows),
                **{f"n_{c}": int(counts[k]) for k, c in enumerate(EMOTION_CLASSES)},
                "macro_f1": float(np.mean([s["macro_f1"] for s in per_seed])),
                "uar": float(np.mean([s["uar"] for s in per_seed])),
                "accuracy": float(np.mean([s["accuracy"] for s in per_seed])),
                **{
                    f"recall_{c}": float(
                        np.mean([np.mean(p[rows][y[rows] == k] == k) for p in preds])
                    )
                    if counts[k]
                    else float("nan")
                    for k, c in enumerate(EMOTION_CLASSES)
                },
                "comparable": not small,
                "note": (
                    f"fewer than {MIN_CLASS_COUNT} samples of {', '.join(small)}: "
                    "macro-F1 not comparable"
                )
                if small
                else "",
            }
            out.append(record)
    return out


def _seed_rows(
    samples: pd.DataFrame,
    preds: np.ndarray,
    model: str,
    seeds: list[int],
    scores: list[dict[str, float]],
) -> list[dict[str, Any]]:
    """One row per seed: per-class F1, macro-F1, UAR and macro-F1 per ethnicity and dataset.

    Args:
        samples: the scored samples (``N`` rows, the order of ``preds``' columns).
        preds: ``(S, N)`` int predictions, one row per entry of ``seeds``.
        scores: :func:`classification_scores` of each seed's predictions.
    """
    rows = []
    for seed, p, score in zip(seeds, preds, scores, strict=True):
        groups = _group_rows(samples, p[None], model)
        rows.append(
            {
                "model": model,
                "seed": seed,
                **{f"f1_{c}": score[f"f1_{c}"] for c in EMOTION_CLASSES},
                "macro_f1": score["macro_f1"],
                "uar": score["uar"],
                **{
                    f"mf1_{g['group']}": g["macro_f1"]
                    for g in groups
                    if g["grouping"] in ("ethnicity", "dataset")
                },
            }
        )
    return rows


def _pairs(bench: BenchmarkConfig) -> list[tuple[str, str]]:
    """The configured pairs, or every row against the first."""
    if bench.compare is not None:
        return [tuple(pair) for pair in bench.compare]  # type: ignore[misc]
    first = bench.models[0].name
    return [(m.name, first) for m in bench.models[1:]]


def _table5_row(
    cfg: StudyConfig,
    model: Any,
    preds: np.ndarray,
    scored: pd.DataFrame,
    predictions: pd.DataFrame,
    groups: list[dict[str, Any]],
) -> dict[str, Any]:
    bench = cfg.stages.benchmark
    assert bench is not None
    classes = list(EMOTION_CLASSES)
    y = scored["label_id"].to_numpy()
    per_seed = [classification_scores(y, p, classes) for p in preds]
    seed_mf1 = [s["macro_f1"] for s in per_seed]
    subjects = subjects_of(subject_ids(scored), scored["dataset"].to_numpy())
    interval = score_interval(y, preds, subjects, len(classes), bench.bootstrap, cfg.seed)
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
    row = {
        "model": model.name,
        "context": model.context,
        "context_input": context_input,
        "backbones": model.emotion_backbone
        + ("" if model.context == "none" else f" + {model.context_backbone}"),
        **{f"f1_{c}": float(np.mean([s[f"f1_{c}"] for s in per_seed])) for c in classes},
        "macro_f1": float(np.mean(seed_mf1)),
        "mf1_ci_low": interval.low,
        "mf1_ci_high": interval.high,
        "mf1_se": interval.se,
        "uf1": float(np.mean([s["uf1"] for s in per_seed])),
        "uar": float(np.mean([s["uar"] for s in per_seed])),
        **{f"mf1_{g}": v for g, v in sorted(eth.items())},
        **{f"mf1_{d}": by[("dataset", d)]["macro_f1"] for d in sorted(scored["dataset"].unique())},
        "seeds": len(preds),
        "seed_mf1_min": float(np.min(seed_mf1)),
        "seed_mf1_max": float(np.max(seed_mf1)),
        "compute_seconds": float(seconds.sum()),
        "median_fold_seconds": float(seconds.median()),
    }
    if len(eth) == 2:
        (g1, v1), (g2, v2) = sorted(eth.items())
        row[f"gap_{g1}_minus_{g2}"] = v1 - v2
    return row


def _fairness(
    cfg: StudyConfig, scored: pd.DataFrame, matrices: dict[str, np.ndarray]
) -> pd.DataFrame:
    """fairness.csv: every row × grouping (ethnicity, dataset × ethnicity)."""
    bench = cfg.stages.benchmark
    assert bench is not None
    y = scored["label_id"].to_numpy()
    ids = subject_ids(scored)
    groupings = {
        "ethnicity": scored["ethnicity"].astype(str).to_numpy(),
        "dataset x ethnicity": (scored["dataset"] + " / " + scored["ethnicity"]).to_numpy(),
    }
    parts = []
    for name, preds in matrices.items():
        for grouping, groups in groupings.items():
            if len(np.unique(groups)) < 2:
                continue
            table = fairness_table(
                y, preds, ids, groups, list(EMOTION_CLASSES), bench.bootstrap, cfg.seed
            )
            parts.append(table.assign(model=name, grouping=grouping))
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    first = ["model", "grouping", "group", "metric", "class"]
    return table[first + [c for c in table.columns if c not in first]]


def _decoding(cfg: StudyConfig, scored: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The context heads' decoding and, for apex inputs, the colour-only baseline."""
    bench = cfg.stages.benchmark
    assert bench is not None
    dual = {m.name: m for m in bench.models if m.context != "none"}
    table = context_decoding(
        predictions, {n: m.context for n, m in dual.items()}, bench.bootstrap, cfg.seed
    )
    if not table.empty:
        table.insert(1, "decoder", "context head")
    baselines = []
    done: set[tuple[str, int, str]] = set()
    crops = scored["apex_crop_path"].fillna("") if "apex_crop_path" in scored else None
    for model in dual.values():
        if model.context_input != "apex_rgb" or crops is None or (crops == "").any():
            continue
        seed = (bench.seeds or [cfg.seed])[0]
        labels, _ = context_labels(scored, model.context, seed)
        for grey, what in (
            (False, "raw crops"),
            (model.apex_colour == "grey", "as the row reads them"),
        ):
            key = (model.context, seed, f"{grey}")
            if key in done and what == "raw crops":
                continue
            done.add(key)
            for record in colour_decoding(scored, labels, grey, bench.bootstrap, cfg.seed):
                baselines.append(
                    {
                        "model": model.name,
                        "decoder": f"colour statistics ({what}: {'grey' if grey else 'colour'})",
                        "context": model.context,
                        "seed": seed,
                        **record,
                    }
                )
    if baselines:
        table = pd.concat([table, pd.DataFrame(baselines)], ignore_index=True)
    if table.empty:
        return table
    return add_family(table, "p_permutation", "context decoding", "exploratory")


def summarise_benchmark(
    cfg: StudyConfig, samples: pd.DataFrame, predictions: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """Write every benchmark table (see the module doc); return the files written."""
    bench = cfg.stages.benchmark
    assert bench is not None
    keys = ["dataset", "subject", "filename"]
    scored = samples[
        samples.set_index(keys).index.isin(predictions.set_index(keys).index)
    ].reset_index(drop=True)
    y = scored["label_id"].to_numpy()
    classes = list(EMOTION_CLASSES)
    written: list[Path] = []
    table_rows, group_rows, seed_rows, matrices = [], [], [], {}
    run_seeds = sorted(bench.seeds or [cfg.seed])  # the row order of every prediction matrix
    for model in bench.models:
        preds = _pred_matrix(predictions, model.name, scored)
        matrices[model.name] = preds
        per_seed = [classification_scores(y, p, classes) for p in preds]
        seed_rows += _seed_rows(scored, preds, model.name, run_seeds, per_seed)
        groups = _group_rows(scored, preds, model.name)
        group_rows += groups
        table_rows.append(_table5_row(cfg, model, preds, scored, predictions, groups))
        written.append(
            confusion_figure(
                np.tile(y, len(preds)),
                preds.reshape(-1),
                classes,
                f"{model.name} (LOSO, {len(preds)} seed(s))",
                out_dir / f"confusion_{model.name}.png",
            )
        )
    table = pd.DataFrame(table_rows)
    written += write_table(
        table, out_dir / "table5", "LOSO benchmark (paper Table V): concatenated predictions"
    )
    written += write_table(
        pd.DataFrame(group_rows),
        out_dir / "groups",
        "Macro-F1 per ethnicity group, dataset and dataset x ethnicity cell",
    )
    written += write_table(
        pd.DataFrame(seed_rows),
        out_dir / "seeds",
        "Per-seed scores (each seed: its own LOSO run; Table V gives their mean)",
    )
    subjects = subjects_of(subject_ids(scored), scored["dataset"].to_numpy())
    pairs = _pairs(bench)
    exploratory = bench.purpose == "exploratory"
    comparisons = compare_rows(
        y, matrices, pairs, subjects, len(classes), bench.bootstrap, cfg.seed, exploratory
    )
    written += write_table(
        comparisons,
        out_dir / "comparisons",
        "Paired comparisons (A - B): two-level bootstrap (seeds, subjects within dataset), "
        "randomisation over subjects, family-adjusted p, minimum detectable effect",
    )
    groups = tuple(cfg.data.demographics.paper_groups[r] for r in ("Asian", "Non-Asian"))
    effects = _effects(predictions, scored, pairs, groups, exploratory)  # type: ignore[arg-type]
    written += write_table(
        effects,
        out_dir / "effects",
        "Recognition effects (GEE, binomial / Gaussian, exchangeable within subject): "
        "odds ratios of a correct prediction and log-loss differences",
    )
    fairness = _fairness(cfg, scored, matrices)
    written += write_table(
        fairness,
        out_dir / "fairness",
        "Group fairness (fairlearn): recall and macro-F1 per group, equal-opportunity gap "
        "and equalized-odds difference per class, 95 % subject-bootstrap intervals",
    )
    decoding = _decoding(cfg, scored, predictions)
    written += write_table(
        decoding,
        out_dir / "context_decoding",
        "Context head on unseen (LOSO test) subjects, and what colour alone decodes: "
        "balanced accuracy vs chance over all samples and within each dataset "
        "(permutation over subjects)",
    )
    written.append(write_csv_atomic(predictions, out_dir / "predictions.csv"))
    summary = out_dir / "summary.json"
    write_json_atomic(
        summary,
        {
            "folds": int(predictions["fold"].nunique()),
            "samples_scored": len(scored),
            "full_loso": int(predictions["fold"].nunique()) == len(set(subject_ids(samples))),
            "seeds": run_seeds,
            "table5": json.loads(table.to_json(orient="records")),
            "comparisons": json.loads(comparisons.to_json(orient="records")),
            "effects": json.loads(effects.to_json(orient="records")),
            "context_decoding": json.loads(decoding.to_json(orient="records")),
        },
    )
    written.append(summary)
    return written


def _effects(
    predictions: pd.DataFrame,
    scored: pd.DataFrame,
    pairs: list[tuple[str, str]],
    groups: tuple[str, str],
    exploratory: bool = False,
) -> pd.DataFrame:
    """effects.csv with its families, one per question and outcome.

    Correctness: *ethnicity vs dataset* (the two confound terms) and *row
    comparisons* (each pair and its row × ethnicity interaction), each confirmatory
    (Holm) with ≥ 2 seeds and exploratory (BH) with one or in a benchmark declared
    exploratory; log-loss: exploratory.
    """
    observed = observations(predictions, scored)
    table = recognition_effects(observed, pairs, groups)
    single = observed["seed"].nunique() < 2
    question = np.where(
        table["effect"].isin(["ethnicity within dataset", "dataset within ethnicity"]),
        "ethnicity vs dataset",
        "row comparisons",
    )
    outcome = np.where(table["outcome"] == "correct", "correctness", "log-loss")
    suffix = (" (single seed)" if single else "") + (" (exploratory study)" if exploratory else "")
    family = [f"{q} (GEE, {o}){suffix}" for q, o in zip(question, outcome, strict=True)]
    confirmatory = (table["outcome"] == "correct") & (not single) & (not exploratory)
    kind = np.where(confirmatory, "confirmatory", "exploratory")
    return add_family(
        table,
        "p",
        pd.Series(family, index=table.index),
        pd.Series(kind, index=table.index),
    )
