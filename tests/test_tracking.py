"""Experiment tracking (issue 19): a tiny benchmark logged to a local MLflow store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ethnicmer.config import load_config
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import BENCHMARK, DATABASE
from tests.conftest import tiny_benchmark_config


def test_a_tiny_run_is_logged_and_read_back_with_mlflows_client(tiny_megc: Path, tmp_path: Path):
    import mlflow

    path = tiny_benchmark_config(
        tmp_path,
        tiny_megc,
        [{"name": "motion"}, {"name": "dual", "context": "ethnicity", "context_input": "flow"}],
        max_folds=2,
        save_checkpoints=False,
    )
    config = path.read_text() + "tracking: {kind: mlflow}\n"
    path.write_text(config)
    cfg = load_config(path)
    run_stage(DATABASE, cfg)
    run_stage(BENCHMARK, cfg)
    uri = f"sqlite:///{(cfg.run_dir / 'mlflow' / 'mlflow.db').resolve()}"
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.data.tags["ethnicmer.row"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"motion", "dual"}
    table5 = pd.read_csv(cfg.run_dir / "benchmark" / "table5.csv").set_index("model")
    dual = runs["dual"]
    assert dual.data.params["model.context"] == "ethnicity"
    assert dual.data.params["protocol"] == "loso" and dual.data.params["epochs"] == "1"
    assert dual.data.metrics["macro_f1"] == pytest.approx(table5.loc["dual", "macro_f1"])
    history = client.get_metric_history(dual.info.run_id, "fold_accuracy.seed0")
    assert [m.step for m in history] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(dual.info.run_id, "tables")}
    assert "tables/table5.csv" in artifacts and "tables/comparisons.csv" in artifacts
    figures = {a.path for a in client.list_artifacts(dual.info.run_id, "figures")}
    assert figures == {"figures/confusion_dual.png"}
    # the same results are not logged twice
    run_stage(BENCHMARK, cfg, force=True)
    assert len(client.search_runs([experiment.experiment_id])) == 2
