"""The LOSO benchmark (paper IV-B, Table V): emotion-only vs dual-context models.

For every model row and seed, each LOSO fold trains a fresh network on all other
subjects for a fixed number of epochs and predicts the held-out subject in eval
mode. Fold predictions are files (``models/<row>/seed-<s>/folds/<subject>.csv``),
so a killed run resumes at the first unfinished fold and reaches the same numbers.

Outputs under ``runs/<study>/benchmark/``: ``table5.{csv,md,tex}`` (per-class F1,
macro-F1 with a 95 % CI over subjects, UF1, UAR, MF1 per ethnicity group and per
dataset, seed spread, compute time), ``groups.{csv,md,tex}`` (the dataset ×
ethnicity cells with class counts), ``comparisons.{csv,md,tex}`` (paired tests),
``predictions.csv`` (every sample, seed and row, with logits),
``confusion_<row>.png`` and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ethnicmer import __version__
from ethnicmer.config import BenchmarkConfig, ModelConfig, StudyConfig
from ethnicmer.data.emotions import EMOTION_CLASSES
from ethnicmer.errors import DiskSpaceError
from ethnicmer.evaluation.decoding import context_decoding
from ethnicmer.evaluation.executors import default_threads, execute
from ethnicmer.evaluation.inputs import load_inputs
from ethnicmer.evaluation.metrics import bootstrap_ci, classification_scores, macro_f1, paired_test
from ethnicmer.evaluation.protocols import Fold, context_labels, fold_seed, loso_folds, subject_ids
from ethnicmer.evaluation.training import FoldTask, TrainSettings, checkpoint_bytes
from ethnicmer.pipeline import write_json_atomic
from ethnicmer.progress import log
from ethnicmer.report.tables import confusion_figure, write_table

MIN_CLASS_COUNT = 5
"""A group with a class of fewer samples is marked; its macro-F1 is not compared."""


def _settings(bench: BenchmarkConfig, model: ModelConfig) -> TrainSettings:
    return TrainSettings(
        bench.epochs, bench.batch_size, bench.lr, bench.gamma, tuple(model.loss_weights)
    )


def _samples_digest(samples: pd.DataFrame) -> str:
    text = (
        samples[["dataset", "subject", "filename", "label_id", "ethnicity"]]
        .astype(str)
        .to_csv(index=False)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _model_dir(out_dir: Path, model: ModelConfig, seed: int) -> Path:
    return out_dir / "models" / model.name / f"seed-{seed}"


def _prepare_dir(model_dir: Path, spec: dict[str, Any]) -> None:
    """Keep finished folds only if they were made with exactly this spec.

    Folds made with another spec (model, settings, input sizes, samples, torch
    threads, seed or package version) are deleted, and the log says which keys
    changed and how many finished folds go.
    """
    spec_file = model_dir / "spec.json"
    if spec_file.is_file():
        try:
            old = json.loads(spec_file.read_text())
        except json.JSONDecodeError:
            old = {}
        if old != spec:
            changed = sorted(k for k in spec.keys() | old.keys() if old.get(k) != spec.get(k))
            finished = len(list((model_dir / "folds").glob("*.csv")))
            log(
                f"benchmark: {model_dir}: spec changed ({', '.join(changed)}); "
                f"discarding {finished} finished folds and re-training them"
            )
            shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(spec_file, spec, sort_keys=True)


def plan_tasks(
    cfg: StudyConfig, samples: pd.DataFrame, folds: list[Fold], out_dir: Path
) -> list[FoldTask]:
    """Every (row, seed, fold) whose predictions file does not exist yet."""
    bench = cfg.stages.benchmark
    assert bench is not None
    inputs_dir = cfg.run_dir / "inputs"
    labels = samples["label_id"].to_numpy(dtype=np.int64)
    keys = list(zip(samples["dataset"], samples["subject"], samples["filename"], strict=True))
    threads = default_threads(bench.executor)
    show_epochs = bench.executor.kind == "inline"
    prepared: dict[tuple[str, int], str] = {}

    def input_file(kind: str, size: int) -> str:
        """Build (or check) the cached input array once per (kind, size)."""
        if (kind, size) not in prepared:
            load_inputs(samples, kind, size, inputs_dir)
            prepared[(kind, size)] = str(inputs_dir / f"{kind}_{size}.npy")
        return prepared[(kind, size)]

    tasks = []
    for model in bench.models:
        size = model.input_size or bench.input_size
        flow_file = input_file("flow", size)
        context_file = None
        if model.context != "none":
            if model.context_input == "flow":
                context_file = flow_file
            else:
                context_file = input_file("apex_rgb", model.rgb_size or bench.rgb_size)
        for seed in bench.seeds or [cfg.seed]:
            context, classes = (None, [])
            if model.context != "none":
                context, classes = context_labels(samples, model.context, seed)
            model_dir = _model_dir(out_dir, model, seed)
            spec = {
                "model": json.loads(model.model_dump_json()),
                "settings": _settings(bench, model).__dict__,
                "input_size": size,
                "rgb_size": model.rgb_size or bench.rgb_size,
                "samples": _samples_digest(samples),
                "context_classes": classes,
                "threads": threads,
                "seed": seed,
                "ethnicmer": __version__,
            }
            _prepare_dir(model_dir, json.loads(json.dumps(spec)))
            for fold in folds:
                predictions = model_dir / "folds" / f"{fold.slug}.csv"
                if predictions.is_file():
                    continue
                tasks.append(
                    FoldTask(
                        model=model,
                        settings=_settings(bench, model),
                        seed=fold_seed(seed, fold.test_subject, model.name),
                        flow_file=flow_file,
                        context_file=context_file,
                        labels=labels,
                        context=context,
                        train=fold.train,
                        test=fold.test,
                        keys=[keys[i] for i in fold.test],
                        test_subject=fold.test_subject,
                        run_seed=seed,
                        predictions_file=str(predictions),
                        checkpoint_file=(
                            str(model_dir / "checkpoints" / f"{fold.slug}.pt")
                            if bench.save_checkpoints
                            else None
                        ),
                        threads=threads,
                        n_context=max(len(classes), 2),
                        show_epochs=show_epochs,
                        checkpoint_precision=bench.checkpoint_precision,
                    )
                )
    return tasks


DISK_MARGIN_BYTES = 1 << 30
"""Free space left over after the planned checkpoints (1 GiB) for tables, logs, temp files."""


def check_disk_space(tasks: list[FoldTask], out_dir: Path) -> int:
    """Fail before training if the fold checkpoints still to write do not fit on the disk.

    Args:
        tasks: the folds still to run (:func:`plan_tasks`).
        out_dir: ``runs/<study>/benchmark`` (its disk is the one checked).

    Returns:
        The bytes the planned checkpoints need.

    Raises:
        DiskSpaceError: need + 1 GiB exceeds the free space; the message gives both
            figures, the rows that write checkpoints, and the two ways out.
    """
    sizes: dict[tuple[str, int], int] = {}
    need = count = 0
    for task in tasks:
        if task.checkpoint_file is None:
            continue
        key = (task.model.name, task.n_context)
        if key not in sizes:
            sizes[key] = checkpoint_bytes(task.model, task.n_context, task.checkpoint_precision)
        need += sizes[key]
        count += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if need and need + DISK_MARGIN_BYTES > free:
        rows = sorted({name for name, _ in sizes})
        raise DiskSpaceError(
            f"{out_dir}: the {count} fold "
            f"checkpoints still to write (rows {rows}) need {need / 1e9:.1f} GB plus "
            f"{DISK_MARGIN_BYTES / 1e9:.1f} GB to spare, but that disk has "
            f"{free / 1e9:.1f} GB free. Free space, set benchmark.checkpoint_precision: "
            "float16 (half the size), or benchmark.save_checkpoints: false (the "
            "activation-map stage needs the checkpoints)."
        )
    return need


def collect_predictions(cfg: StudyConfig, folds: list[Fold], out_dir: Path) -> pd.DataFrame:
    """All fold predictions of all rows and seeds, with a ``model`` column.

    Raises:
        RuntimeError: a fold's predictions are missing (the run did not finish).
    """
    bench = cfg.stages.benchmark
    assert bench is not None
    frames = []
    for model in bench.models:
        for seed in bench.seeds or [cfg.seed]:
            for fold in folds:
                path = _model_dir(out_dir, model, seed) / "folds" / f"{fold.slug}.csv"
                if not path.is_file():
                    raise RuntimeError(f"fold predictions missing: {path}")
                frames.append(pd.read_csv(path, dtype={"subject": str}).assign(model=model.name))
    return pd.concat(frames, ignore_index=True)


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


def summarise_benchmark(
    cfg: StudyConfig, samples: pd.DataFrame, predictions: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """Write Table V, group tables, paired comparisons, confusion figures, summary.json."""
    bench = cfg.stages.benchmark
    assert bench is not None
    scored = samples[
        samples.set_index(["dataset", "subject", "filename"]).index.isin(
            predictions.set_index(["dataset", "subject", "filename"]).index
        )
    ].reset_index(drop=True)
    y = scored["label_id"].to_numpy()
    subjects = subject_ids(scored)
    classes = list(EMOTION_CLASSES)
    written: list[Path] = []
    table_rows, group_rows, seed_rows, matrices, seed_scores = [], [], [], {}, {}
    run_seeds = sorted(bench.seeds or [cfg.seed])  # the row order of every prediction matrix
    for model in bench.models:
        preds = _pred_matrix(predictions, model.name, scored)
        matrices[model.name] = preds
        per_seed = [classification_scores(y, p, classes) for p in preds]
        seed_mf1 = [s["macro_f1"] for s in per_seed]
        seed_scores[model.name] = seed_mf1
        seed_rows += _seed_rows(scored, preds, model.name, run_seeds, per_seed)
        low, high = bootstrap_ci(y, preds, subjects, len(classes), bench.bootstrap, cfg.seed)
        groups = _group_rows(scored, preds, model.name)
        group_rows += groups
        by = {(g["grouping"], g["group"]): g for g in groups}
        eth = {g["group"]: g["macro_f1"] for g in groups if g["grouping"] == "ethnicity"}
        seconds = (
            predictions.loc[predictions["model"] == model.name]
            .groupby(["seed", "fold"])["seconds"]
            .first()
        )
        row = {
            "model": model.name,
            "context": model.context,
            "context_input": model.context_input if model.context != "none" else "",
            "backbones": model.emotion_backbone
            + ("" if model.context == "none" else f" + {model.context_backbone}"),
            **{f"f1_{c}": float(np.mean([s[f"f1_{c}"] for s in per_seed])) for c in classes},
            "macro_f1": float(np.mean(seed_mf1)),
            "mf1_ci_low": low,
            "mf1_ci_high": high,
            "uf1": float(np.mean([s["uf1"] for s in per_seed])),
            "uar": float(np.mean([s["uar"] for s in per_seed])),
            **{f"mf1_{g}": v for g, v in sorted(eth.items())},
            **{
                f"mf1_{d}": by[("dataset", d)]["macro_f1"]
                for d in sorted(scored["dataset"].unique())
            },
            "seeds": len(preds),
            "seed_mf1_min": float(np.min(seed_mf1)),
            "seed_mf1_max": float(np.max(seed_mf1)),
            "compute_seconds": float(seconds.sum()),
        }
        if len(eth) == 2:
            (g1, v1), (g2, v2) = sorted(eth.items())
            row[f"gap_{g1}_minus_{g2}"] = v1 - v2
        table_rows.append(row)
        pooled_true = np.tile(y, len(preds))
        written.append(
            confusion_figure(
                pooled_true,
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
    groups = pd.DataFrame(group_rows)
    written += write_table(
        groups,
        out_dir / "groups",
        "Macro-F1 per ethnicity group, dataset and dataset x ethnicity cell",
    )

    written += write_table(
        pd.DataFrame(seed_rows),
        out_dir / "seeds",
        "Per-seed scores (each seed: its own LOSO run; Table V gives their mean)",
    )

    pairs = bench.compare
    if pairs is None:
        first = bench.models[0].name
        pairs = [(m.name, first) for m in bench.models[1:]]
    comparisons = []
    for a, b in pairs:
        result = paired_test(
            y, matrices[a], matrices[b], subjects, len(classes), bench.bootstrap, cfg.seed
        )
        seed_note = (
            "single seed: seed-to-seed noise not measured; do not credit the difference"
            if result.n_seeds < 2
            else ""
        )
        seed_differences = [fa - fb for fa, fb in zip(seed_scores[a], seed_scores[b], strict=True)]
        comparisons.append(
            {
                "a": a,
                "b": b,
                "mf1_a": result.mf1_a,
                "mf1_b": result.mf1_b,
                "difference": result.difference,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "p_permutation": result.p_value,
                "seeds": result.n_seeds,
                "seed_difference_min": min(seed_differences),
                "seed_difference_max": max(seed_differences),
                "seeds_a_higher": sum(d > 0 for d in seed_differences),
                "note": seed_note,
            }
        )
    comparison_frame = pd.DataFrame(
        comparisons,
        columns=[
            "a",
            "b",
            "mf1_a",
            "mf1_b",
            "difference",
            "ci_low",
            "ci_high",
            "p_permutation",
            "seeds",
            "seed_difference_min",
            "seed_difference_max",
            "seeds_a_higher",
            "note",
        ],
    )
    written += write_table(
        comparison_frame,
        out_dir / "comparisons",
        "Paired comparisons (A - B), bootstrap and permutation over subjects",
    )
    decoding = context_decoding(
        predictions,
        {m.name: m.context for m in bench.models if m.context != "none"},
        bench.bootstrap,
        cfg.seed,
    )
    written += write_table(
        decoding,
        out_dir / "context_decoding",
        "Context head on unseen (LOSO test) subjects: balanced accuracy vs chance, "
        "over all samples and within each dataset (permutation over subjects)",
    )
    all_predictions = out_dir / "predictions.csv"
    predictions.to_csv(all_predictions, index=False)
    written.append(all_predictions)
    summary = out_dir / "summary.json"
    write_json_atomic(
        summary,
        {
            "folds": int(predictions["fold"].nunique()),
            "samples_scored": len(scored),
            "full_loso": int(predictions["fold"].nunique()) == len(set(subject_ids(samples))),
            "table5": table.to_dict(orient="records"),
            "comparisons": comparison_frame.to_dict(orient="records"),
            "context_decoding": json.loads(decoding.to_json(orient="records")),
        },
    )
    written.append(summary)
    # sanity: the headline macro-F1 equals the fast-path value
    for model in bench.models:
        preds = matrices[model.name]
        assert (
            abs(
                np.mean([macro_f1(y, p, 3) for p in preds])
                - table.set_index("model").loc[model.name, "macro_f1"]
            )
            < 1e-9
        )
    return written


def run_benchmark(cfg: StudyConfig, samples: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Run (or resume) every fold of every row and seed, then write the result tables.

    Args:
        cfg: a study config with ``stages.benchmark``.
        samples: the samples table from the database stage.
        out_dir: ``runs/<study>/benchmark``.

    Returns:
        The result files written.
    """
    bench = cfg.stages.benchmark
    assert bench is not None
    samples = samples.sort_values(["dataset", "subject", "filename"]).reset_index(drop=True)
    folds = loso_folds(samples, bench.test_subjects, bench.max_folds)
    tasks = plan_tasks(cfg, samples, folds, out_dir)
    total = len(folds) * len(bench.models) * len(bench.seeds or [cfg.seed])
    done = total - len(tasks)
    log(f"benchmark: {done} of {total} folds done, {len(tasks)} to run ({bench.executor.kind})")
    need = check_disk_space(tasks, out_dir)
    if need:
        log(f"benchmark: fold checkpoints will take {need / 1e9:.1f} GB")
    execute(tasks, bench.executor, label="benchmark folds")
    predictions = collect_predictions(cfg, folds, out_dir)
    return summarise_benchmark(cfg, samples, predictions, out_dir)
