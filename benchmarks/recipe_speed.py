"""Fold time of the stronger recipe and of the paper's ResNet-18 rows (issue 18).

Trains real LOSO folds of the 278-sample MEGC2019 flow set, one torch thread per
fold (as ``executor: auto`` does), for each row of ``configs/megc2019-best.yaml`` and
the paper's motion-only ResNet-18, and reports the median seconds per fold over
``--folds`` folds, the ratio to the paper row measured in the same run, and the
projected wall time of a full LOSO (52 folds, one seed) with two folds at a time on
a 2-core CPU. The rows alternate fold by fold so that drift in the machine's load
hits all alike. Output: ``benchmarks/results/recipe_speed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from common import real_data, write

from ethnicmer.config import BenchmarkConfig, ModelConfig
from ethnicmer.evaluation.inputs import read_images
from ethnicmer.evaluation.protocols import loso_folds
from ethnicmer.evaluation.training import build_model, predict, train_model
from ethnicmer.studies.benchmark import row_settings

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "megc2019-best.yaml"
SUBJECTS = 52


def _rows() -> tuple[BenchmarkConfig, list[ModelConfig]]:
    raw = yaml.safe_load(CONFIG.read_text())["stages"]["benchmark"]
    bench = BenchmarkConfig.model_validate(raw)
    paper = ModelConfig(name="resnet18-motion-paper")
    return bench, [paper, *(m for m in bench.models if m.context in ("none", "ethnicity"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = real_data() / "megc2019-flow"
    table = pd.read_csv(root / "combined_3_class2_for_optical_flow.csv", dtype=str)
    table = table.rename(columns={"sub": "subject", "filename_o": "filename"})
    table = table.sort_values(["dataset", "subject", "filename"]).reset_index(drop=True)
    paths = [
        str(root / "datasets" / "STSNet_whole_norm_u_v_os" / f"{s}_{f} .png")
        for s, f in zip(table["subject"], table["filename"], strict=True)
    ]
    flow_all = torch.from_numpy(read_images(paths, 28, "flows"))
    labels_all = torch.from_numpy(table["label"].astype(int).to_numpy())
    context_all = torch.from_numpy((table["dataset"] == "samm").astype(int).to_numpy())
    bench, rows = _rows()
    folds = loso_folds(table)[:: max(1, SUBJECTS // args.folds)][: args.folds]
    seconds: dict[str, list[float]] = {row.name: [] for row in rows}
    for fold in folds:
        for row in rows:
            settings = row_settings(bench, row)
            train = torch.from_numpy(fold.train)
            context_input = flow_all[train] if row.context != "none" else None
            context = context_all[train] if row.context != "none" else None
            torch.manual_seed(0)
            start = time.perf_counter()
            net = build_model(row, 2)
            train_model(
                net,
                flow_all[train],
                context_input,
                labels_all[train],
                context,
                settings,
                0,
                options=row.training,
                context_is_flow=True,
            )
            test = torch.from_numpy(fold.test)
            predict(net, flow_all[test], flow_all[test] if row.context != "none" else None)
            seconds[row.name].append(time.perf_counter() - start)
            print(row.name, fold.test_subject, f"{seconds[row.name][-1]:.1f} s", flush=True)
    paper = statistics.median(seconds[rows[0].name])
    results = {}
    for row in rows:
        median = statistics.median(seconds[row.name])
        results[row.name] = {
            "backbone": row.emotion_backbone
            + ("" if row.context == "none" else f" + {row.context_backbone}"),
            "epochs": row_settings(bench, row).epochs,
            "median_fold_seconds": round(median, 2),
            "fold_seconds": [round(s, 2) for s in seconds[row.name]],
            "ratio_to_paper_row": round(median / paper, 3),
            "full_loso_minutes_two_folds_at_a_time": round(median * SUBJECTS / 2 / 60, 1),
        }
    write(
        "recipe_speed",
        {
            "folds": [f.test_subject for f in folds],
            "threads_per_fold": 1,
            "rows": results,
            "note": "one fold at a time on one thread; the projection assumes the second "
            "core runs a second fold at the same speed (executor: auto); context heads read "
            "the 28 px flow (the apex row's cost is that of its backbone on a 28 px input; "
            "the study feeds it 32 px greyscale crops)",
            "numpy": np.__version__,
        },
    )


if __name__ == "__main__":
    main()
