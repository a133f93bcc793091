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
- ``cde.*``: the MEGC2019 composite database evaluation, UF1 and UAR overall and
  per dataset (:func:`ethnicmer.studies.benchmark_scores.cde_rows`);
- ``published.*`` (with ``benchmark.published``): the published results on the
  same protocol, shipped with their sources (:mod:`ethnicmer.studies.published`);
- ``predictions.csv``, ``confusion_<row>.png`` and ``summary.json``.

Each row is scored on the samples it predicted; rows whose context needs a
per-subject label test only the labelled subjects, per-group tables never hold
subjects of unknown ethnicity, and ``summary.json`` counts those left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ethnicmer.config import BenchmarkConfig, ModelConfig, StudyConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.devices import resolve_compute
from ethnicmer.evaluation.colour import colour_decoding
from ethnicmer.evaluation.decoding import context_decoding
from ethnicmer.evaluation.executors import default_threads
from ethnicmer.evaluation.protocols import (
    context_labels,
    labelled,
    row_samples,
    subject_ids,
    unlabelled_counts,
)
from ethnicmer.io import write_csv_atomic, write_json_atomic
from ethnicmer.report.tables import confusion_figure, write_table
from ethnicmer.stats.effects import observations, recognition_effects
from ethnicmer.stats.fairness import fairness_table
from ethnicmer.stats.multiple import add_family
from ethnicmer.studies.benchmark_scores import (
    RowPredictions,
    cde_rows,
    ensemble_predictions,
    ensemble_row,
    group_rows,
    prediction_matrix,
    row_predictions,
    seed_rows,
    table5_row,
)
from ethnicmer.studies.comparisons import compare_rows
from ethnicmer.studies.published import published_results


def _pairs(bench: BenchmarkConfig) -> list[tuple[str, str]]:
    """The configured pairs, or every row against the first."""
    if bench.compare is not None:
        return [tuple(pair) for pair in bench.compare]  # type: ignore[misc]
    first = bench.models[0].name
    return [(m.name, first) for m in bench.models[1:]]


def _fairness(cfg: StudyConfig, rows: list[RowPredictions]) -> pd.DataFrame:
    """fairness.csv: every row × grouping (ethnicity, dataset × ethnicity), labelled
    subjects only."""
    bench = cfg.stages.benchmark
    assert bench is not None
    parts = []
    for row in rows:
        keep = labelled(row.samples)
        samples, preds = row.samples[keep], row.preds[:, keep]
        groupings = {
            "ethnicity": samples["ethnicity"].astype(str).to_numpy(),
            "dataset x ethnicity": (samples["dataset"] + " / " + samples["ethnicity"]).to_numpy(),
        }
        for grouping, groups in groupings.items():
            if len(np.unique(groups)) < 2:
                continue
            table = fairness_table(
                samples["label_id"].to_numpy(),
                preds,
                subject_ids(samples),
                groups,
                list(EMOTION_CLASSES),
                bench.bootstrap,
                cfg.seed,
            )
            parts.append(table.assign(model=row.name, grouping=grouping))
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
        keep = labels >= 0  # subjects with the label (the row trains on no others)
        for grey, what in (
            (False, "raw crops"),
            (model.apex_colour == "grey", "as the row reads them"),
        ):
            key = (model.context, seed, f"{grey}")
            if key in done and what == "raw crops":
                continue
            done.add(key)
            for record in colour_decoding(
                scored[keep], labels[keep], grey, bench.bootstrap, cfg.seed
            ):
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


def _score_tables(
    cfg: StudyConfig,
    models: list[ModelConfig],
    rows: list[RowPredictions],
    predictions: pd.DataFrame,
    out_dir: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """table5, groups, seeds, cde and the confusion figures; returns (table5, cde, files)."""
    bench = cfg.stages.benchmark
    assert bench is not None
    run_seeds = sorted(bench.seeds or [cfg.seed])  # the row order of every prediction matrix
    ensembles = {e.name: e.members for e in bench.ensembles}
    written: list[Path] = []
    table_rows, group_records, seed_records, cde_records = [], [], [], []
    for model, row in zip(models, rows, strict=True):
        seed_records += seed_rows(row, run_seeds[: len(row.preds)])
        groups = group_rows(row)
        group_records += groups
        record = table5_row(cfg, model, row, predictions, groups)
        if model.name in ensembles:
            record["context_input"] = f"ensemble of {', '.join(ensembles[model.name])}"
        table_rows.append(record)
        cde_records.append(cde_rows(row))
        written.append(
            confusion_figure(
                np.tile(row.y, len(row.preds)),
                row.preds.reshape(-1),
                list(EMOTION_CLASSES),
                f"{model.name} ({bench.protocol}, {len(row.preds)} seed(s))",
                out_dir / f"confusion_{model.name}.png",
            )
        )
    table = pd.DataFrame(table_rows)
    cde = pd.DataFrame(cde_records)
    written += write_table(
        table, out_dir / "table5", "LOSO benchmark (paper Table V): concatenated predictions"
    )
    written += write_table(
        pd.DataFrame(group_records),
        out_dir / "groups",
        "Macro-F1 per ethnicity group, dataset and dataset x ethnicity cell (subjects of "
        "unknown ethnicity in no ethnicity group)",
    )
    written += write_table(
        pd.DataFrame(seed_records),
        out_dir / "seeds",
        "Per-seed scores (each seed: its own run of the protocol; Table V gives their mean)",
    )
    written += write_table(
        cde,
        out_dir / "cde",
        "Composite database evaluation (MEGC2019): UF1 and UAR on pooled predictions, "
        "overall and per dataset, mean over seeds",
    )
    return table, cde, written


def _published(bench: BenchmarkConfig, out_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The published-results table the config names (``benchmark.published``)."""
    if bench.published is None:
        return pd.DataFrame(), []
    table = published_results(bench.published)
    return table, write_table(
        table,
        out_dir / "published",
        "Published results on the same protocol (as printed; see the notes and sources)",
    )


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
    first = {m.name: m for m in bench.models}
    derived = [ensemble_predictions(predictions, e.name, e.members) for e in bench.ensembles]
    every = pd.concat([predictions, *derived], ignore_index=True)
    models = [
        *bench.models,
        *(ensemble_row(first[e.members[0]], e.name) for e in bench.ensembles),
    ]
    rows = [row_predictions(every, model.name, scored) for model in models]
    table, cde, written = _score_tables(cfg, models, rows, every, out_dir)
    if derived:
        written.append(write_csv_atomic(pd.concat(derived), out_dir / "ensembles.csv"))
    pairs = _pairs(bench)
    exploratory = bench.purpose == "exploratory"
    matrices = {m.name: prediction_matrix(every, m.name, scored) for m in models}
    trained_on = {m.name: int(row_samples(samples, m.context).sum()) for m in bench.models}
    comparisons = compare_rows(
        scored,
        matrices,
        pairs,
        len(EMOTION_CLASSES),
        bench.bootstrap,
        cfg.seed,
        exploratory,
        trained_on,
    )
    written += write_table(
        comparisons,
        out_dir / "comparisons",
        "Paired comparisons (A - B) on the samples both rows predicted: two-level bootstrap "
        "(seeds, subjects within dataset), randomisation over subjects, family-adjusted p, "
        "minimum detectable effect",
    )
    groups = tuple(cfg.data.demographics.paper_groups[r] for r in ("Asian", "Non-Asian"))
    effects = _effects(predictions, scored, pairs, groups, exploratory)  # type: ignore[arg-type]
    written += write_table(
        effects,
        out_dir / "effects",
        "Recognition effects (GEE, binomial / Gaussian, exchangeable within subject): "
        "odds ratios of a correct prediction and log-loss differences",
    )
    fairness = _fairness(cfg, rows)
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
        "Context head on unseen (test) subjects, and what colour alone decodes: "
        "balanced accuracy vs chance over all samples and within each dataset "
        "(permutation over subjects)",
    )
    published, files = _published(bench, out_dir)
    written += files
    written.append(write_csv_atomic(predictions, out_dir / "predictions.csv"))
    folds = int(predictions["fold"].nunique())
    summary = write_json_atomic(
        out_dir / "summary.json",
        {
            "protocol": bench.protocol,
            "compute": resolve_compute(bench.device, bench.precision).spec(),
            "threads_per_fold": default_threads(bench.executor),
            "folds": folds,
            "samples_scored": len(scored),
            "full_loso": bench.protocol == "loso" and folds == len(set(subject_ids(samples))),
            "seeds": sorted(bench.seeds or [cfg.seed]),
            "left_out_of_group_tables": unlabelled_counts(scored),
            "table5": json.loads(table.to_json(orient="records")),
            "cde": json.loads(cde.to_json(orient="records")),
            "published": json.loads(published.to_json(orient="records")),
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
