"""Experiment tracking with MLflow (``tracking: {kind: mlflow}``; off by default).

After the benchmark stage has written its tables, each row becomes one MLflow run in
the experiment ``tracking.experiment`` (default: the study name):

- params: the row's model settings, its training schedule (its own epochs, lr and
  batch size where it sets them), input sizes, protocol, seeds, device and precision,
  torch threads per fold, the ethnicmer version (ensemble rows are not logged: they
  have no fold of their own);
- metrics: the row's Table V record (per-class F1, macro-F1 with its interval, UF1,
  UAR, macro-F1 per group and dataset) and its CDE record (UF1/UAR per dataset), and
  per fold (``step`` = fold index, one series per seed) the fold's accuracy, test
  samples and seconds;
- artifacts: every table the benchmark wrote (``.csv``/``.md``/``.tex``), the row's
  confusion matrix and ``summary.json``;
- tags: the study, the row, and ``ethnicmer.results`` (a digest of the row's
  predictions and of the result tables), so re-running an up-to-date benchmark does not
  log the row again, and changed tables (another bootstrap, grouping or pair) do.

The default store is local: ``sqlite:///runs/<study>/mlflow/mlflow.db``, artifacts in
``runs/<study>/mlflow/artifacts`` (MLflow's own file store is deprecated). Read it
with ``mlflow ui --backend-store-uri sqlite:///runs/<study>/mlflow/mlflow.db`` or
``mlflow.tracking.MlflowClient``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ethnicmer import __version__
from ethnicmer.config import StudyConfig
from ethnicmer.errors import ConfigError
from ethnicmer.progress import log
from ethnicmer.studies.benchmark import row_settings


def tracking_uri(cfg: StudyConfig) -> tuple[str, str]:
    """``(tracking URI, artifact location)`` of the study's store."""
    assert cfg.tracking is not None
    folder = (cfg.run_dir / "mlflow").resolve()
    if cfg.tracking.uri is not None:
        return cfg.tracking.uri, (folder / "artifacts").as_uri()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: json.dumps(value) if isinstance(value, list | tuple) else str(value)}


def _metrics(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value == value:  # not NaN
            out[f"{prefix}{key}"] = float(value)
    return out


def log_benchmark(cfg: StudyConfig, out_dir: Path) -> list[str]:
    """Log every benchmark row of ``out_dir`` (``runs/<study>/benchmark``) to MLflow.

    Returns:
        The MLflow run ids, one per row (existing ones for rows already logged).

    Raises:
        ConfigError: the tracking store cannot be reached or written (names the URI).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    bench = cfg.stages.benchmark
    assert bench is not None and cfg.tracking is not None
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri, artifacts = tracking_uri(cfg)
    name = cfg.tracking.experiment or cfg.study
    summary = json.loads((out_dir / "summary.json").read_text())
    predictions = pd.read_csv(out_dir / "predictions.csv", dtype={"subject": str})
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        # a local store keeps its artifacts beside it; a server decides where its go
        location = artifacts if cfg.tracking.uri is None else None
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(name, artifact_location=location)
        )
    except Exception as exc:  # MLflow raises many types for unreachable stores
        raise ConfigError(
            f"tracking.uri {uri}: cannot reach the MLflow store ({type(exc).__name__}: {exc})"
        ) from exc
    table5 = {row["model"]: row for row in summary["table5"]}
    cde = {row["model"]: row for row in summary.get("cde", [])}
    common = {
        "protocol": summary.get("protocol", "loso"),
        "seeds": summary["seeds"],
        "compute": summary.get("compute", {}),
        "threads_per_fold": summary.get("threads_per_fold"),
        "ethnicmer": __version__,
    }
    tables = hashlib.sha256()
    for table in (
        "table5.csv",
        "cde.csv",
        "groups.csv",
        "comparisons.csv",
        "fairness.csv",
        "effects.csv",
        "context_decoding.csv",
    ):
        if (out_dir / table).is_file():
            tables.update((out_dir / table).read_bytes())
    run_ids = []
    for model in bench.models:
        rows = predictions[predictions["model"] == model.name]
        # the row's predictions and every table (a changed bootstrap, grouping or pair
        # re-logs the row)
        digest = hashlib.sha256(
            rows.drop(columns=["seconds"]).to_csv(index=False).encode() + tables.digest()
        ).hexdigest()[:16]
        done = client.search_runs(
            [experiment_id],
            f"tags.`ethnicmer.row` = '{model.name}' and tags.`ethnicmer.results` = '{digest}'",
        )
        if done:
            run_ids.append(done[0].info.run_id)
            continue
        mlflow.set_tracking_uri(uri)
        tags = {
            "ethnicmer.study": cfg.study,
            "ethnicmer.row": model.name,
            "ethnicmer.results": digest,
        }
        with mlflow.start_run(experiment_id=experiment_id, run_name=model.name, tags=tags) as run:
            schedule = row_settings(bench, model)
            sizes = {
                "input_size": model.input_size or bench.input_size,
                "rgb_size": model.rgb_size or bench.rgb_size,
            }
            params = {
                **_flat("model", json.loads(model.model_dump_json())),
                **_flat("", common),
                **_flat("", {**schedule.__dict__, **sizes}),
            }
            mlflow.log_params(params)
            mlflow.log_metrics(_metrics(table5[model.name]))
            if model.name in cde:
                mlflow.log_metrics(_metrics(cde[model.name], "cde."))
            for seed, part in rows.groupby("seed", sort=True):
                for step, (_, fold) in enumerate(part.groupby("fold", sort=True)):
                    values = {
                        f"fold_accuracy.seed{seed}": float(
                            (fold["y_true"] == fold["y_pred"]).mean()
                        ),
                        f"fold_samples.seed{seed}": float(len(fold)),
                        f"fold_seconds.seed{seed}": float(fold["seconds"].iloc[0]),
                    }
                    mlflow.log_metrics(values, step=step)
            for path in sorted(out_dir.glob("*")):
                if path.suffix in (".csv", ".md", ".tex") and path.name != "predictions.csv":
                    mlflow.log_artifact(str(path), artifact_path="tables")
            mlflow.log_artifact(str(out_dir / "summary.json"))
            figure = out_dir / f"confusion_{model.name}.png"
            if figure.is_file():
                mlflow.log_artifact(str(figure), artifact_path="figures")
            run_ids.append(run.info.run_id)
    log(f"tracking: {len(run_ids)} benchmark row(s) in MLflow experiment {name!r} at {uri}")
    return run_ids
