"""The LOSO benchmark: resumable folds, executor equivalence, result tables."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import ethnicmer.evaluation.executors as executors
from ethnicmer.cli import app
from ethnicmer.config import load_config
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import BENCHMARK, DATABASE
from tests.conftest import tiny_benchmark_config

runner = CliRunner()
MOTION = {"name": "motion"}
DUAL = {"name": "dual", "context": "ethnicity", "context_input": "apex_rgb"}


def _predictions(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "benchmark" / "predictions.csv", dtype={"subject": str})
    return (
        frame.drop(columns=["seconds"])
        .sort_values(["model", "seed", "dataset", "subject", "filename"])
        .reset_index(drop=True)
    )


def _run(path: Path):
    cfg = load_config(path)
    run_stage(DATABASE, cfg)
    run_stage(BENCHMARK, cfg)
    return cfg


def test_tiny_benchmark_tables(tiny_megc: Path, tmp_path: Path):
    cfg = _run(tiny_benchmark_config(tmp_path, tiny_megc, [MOTION, DUAL], seeds=[0, 1]))
    out = cfg.run_dir / "benchmark"
    table = pd.read_csv(out / "table5.csv")
    assert table["model"].tolist() == ["motion", "dual"]
    assert {
        "f1_Negative",
        "f1_Positive",
        "f1_Surprise",
        "macro_f1",
        "mf1_ci_low",
        "uf1",
        "uar",
        "mf1_Asian",
        "mf1_Non-Asian",
        "gap_Asian_minus_Non-Asian",
    } <= set(table.columns)
    assert (table["seeds"] == 2).all()
    predictions = _predictions(cfg.run_dir)
    assert len(predictions) == 2 * 2 * 24  # rows x seeds x samples
    assert set(predictions.columns) >= {
        "y_true",
        "y_pred",
        "logit_0",
        "logit_2",
        "context_true",
        "context_pred",
    }
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert comparisons[["a", "b", "seeds"]].values.tolist() == [["dual", "motion", 2]]
    pair = comparisons.iloc[0]
    assert (pair["family"], pair["family_kind"], pair["family_size"]) == (
        "Table V pairs",
        "confirmatory",
        1,
    )
    assert pair["p_permutation_adjusted"] == pytest.approx(pair["p_permutation"])
    assert pair["mde"] > 0 and pair["ci_low"] <= pair["difference"] <= pair["ci_high"]
    effects = pd.read_csv(out / "effects.csv")
    assert set(effects["effect"]) == {
        "ethnicity within dataset",
        "dataset within ethnicity",
        "row",
        "row × ethnicity",
    }
    wanted = {"estimate", "ci_low", "ci_high", "p", "p_adjusted", "mde", "mde_below", "family"}
    assert wanted <= set(effects.columns)
    fairness = pd.read_csv(out / "fairness.csv")
    assert {"equal_opportunity_gap", "equalized_odds_difference", "recall", "macro_f1"} == set(
        fairness["metric"]
    )
    assert set(fairness["grouping"]) == {"ethnicity", "dataset x ethnicity"}
    groups = pd.read_csv(out / "groups.csv")
    cell = groups[(groups["model"] == "motion") & (groups["group"] == "samm / Asian")].iloc[0]
    assert not cell["comparable"] and "fewer than 5" in cell["note"]
    assert (out / "confusion_dual.png").stat().st_size > 1000
    assert (out / "table5.tex").read_text().startswith("\\begin{table}")
    decoding = pd.read_csv(out / "context_decoding.csv")
    heads = decoding[decoding["decoder"] == "context head"]
    assert heads[["model", "seed"]].drop_duplicates().values.tolist() == [
        ["dual", 0],
        ["dual", 1],
    ]
    colour = decoding[decoding["decoder"].str.startswith("colour statistics")]
    assert set(colour["decoder"]) == {
        "colour statistics (raw crops: colour)",
        "colour statistics (as the row reads them: grey)",
    }
    assert (decoding["family"] == "context decoding").all()
    assert decoding["balanced_accuracy"].dropna().between(0, 1).all()
    checkpoints = list((out / "models" / "dual" / "seed-0" / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 6
    # per-seed scores: Table V's macro-F1 is their mean, min and max bound them
    seeds = pd.read_csv(out / "seeds.csv")
    assert seeds[["model", "seed"]].values.tolist() == [
        ["motion", 0],
        ["motion", 1],
        ["dual", 0],
        ["dual", 1],
    ]
    assert {"mf1_Asian", "mf1_Non-Asian", "mf1_casme2", "mf1_samm", "uar"} <= set(seeds.columns)
    means = seeds.groupby("model", sort=False)["macro_f1"].agg(["mean", "min", "max"])
    for _, row in table.iterrows():
        assert means.loc[row["model"], "mean"] == pytest.approx(row["macro_f1"])
        assert means.loc[row["model"], "min"] == pytest.approx(row["seed_mf1_min"])
    per_seed = seeds.pivot(index="seed", columns="model", values="macro_f1")
    differences = per_seed["dual"] - per_seed["motion"]
    pair = comparisons.iloc[0]
    assert pair["seed_difference_min"] == pytest.approx(differences.min())
    assert pair["seed_difference_max"] == pytest.approx(differences.max())
    assert pair["seeds_a_higher"] == (differences > 0).sum()


@pytest.mark.parametrize("kind", ["process", "ray"])
def test_executors_give_identical_predictions(kind, tiny_megc: Path, tmp_path: Path):
    models = (
        [MOTION] if kind == "ray" else [MOTION, DUAL]
    )  # Ray workers start slowly: keep it small
    inline = _run(tiny_benchmark_config(tmp_path / "inline", tiny_megc, models, max_folds=2))
    other = _run(
        tiny_benchmark_config(
            tmp_path / kind,
            tiny_megc,
            models,
            max_folds=2,
            executor={"kind": kind, "workers": 2, "threads_per_fold": 1},
        )
    )
    pd.testing.assert_frame_equal(_predictions(inline.run_dir), _predictions(other.run_dir))


def test_changed_model_settings_restart_that_row(
    tiny_megc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    cfg = _run(tiny_benchmark_config(tmp_path, tiny_megc, [MOTION], max_folds=2))
    marker = (
        cfg.run_dir / "benchmark" / "models" / "motion" / "seed-0" / "folds" / "casme2_sub01.csv"
    )
    before = marker.stat().st_mtime_ns
    _run(
        tiny_benchmark_config(
            tmp_path, tiny_megc, [{"name": "motion", "loss_weights": [2, 1, 1]}], max_folds=2
        )
    )
    assert marker.stat().st_mtime_ns != before
    message = " ".join(capsys.readouterr().err.split())
    assert (
        "changed since its folds were trained (model: the row's model settings; "
        "settings: the training schedule); discarding 2 finished folds" in message
    )


def test_benchmark_cli_json(tiny_megc: Path, tmp_path: Path):
    path = tiny_benchmark_config(tmp_path, tiny_megc, [MOTION], max_folds=1)
    result = runner.invoke(app, ["benchmark", str(path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["folds"] == 1 and payload["full_loso"] is False
    assert payload["table5"][0]["model"] == "motion"


def test_benchmark_without_flow_images_names_the_sample(synthetic_root: Path, tmp_path: Path):
    from tests.conftest import synthetic_data_section, write_config

    path = write_config(
        tmp_path,
        {
            "study": "s",
            "data": synthetic_data_section(synthetic_root),
            "stages": {"benchmark": {"models": [MOTION]}},
        },
    )
    result = runner.invoke(app, ["benchmark", str(path)])
    assert result.exit_code == 2
    assert "have no flow image, e.g. casme2/sub01/" in result.stderr


# ---------------------------------------------------------------- real data


def test_real_data_smoke_every_table5_row(
    real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every Table V row of configs/megc2019-flow.yaml on 2 real LOSO folds, 1 epoch, 32 px."""
    import yaml

    shipped = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "megc2019-flow.yaml").read_text()
    )
    shipped["runs_dir"] = str(tmp_path / "runs")
    for later in ("cam", "report"):  # cam needs checkpoints; tested in test_activation_maps
        shipped["stages"].pop(later)
    # the two control rows are the dual-flow model with other labels: same code path
    shipped["stages"]["benchmark"]["models"] = shipped["stages"]["benchmark"]["models"][:4]
    shipped["stages"]["benchmark"]["compare"] = shipped["stages"]["benchmark"]["compare"][:3]
    shipped["stages"]["benchmark"].update(
        {
            "epochs": 1,
            "input_size": 32,
            "rgb_size": 32,
            "max_folds": 2,
            "bootstrap": 20,
            "save_checkpoints": False,
            "seeds": [0],
        }
    )
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(shipped))
    cfg = _run(path)
    table = pd.read_csv(cfg.run_dir / "benchmark" / "table5.csv")
    assert table["model"].tolist() == [
        "resnet18-motion",
        "resnet18-dual-flow",
        "resnet18-dual-rgb",
        "resnet18-tinyvit-rgb",
    ]
    assert table["macro_f1"].between(0, 1).all()
    assert table.set_index("model").loc["resnet18-dual-rgb", "context_input"] == "apex (grey)"
    comparisons = pd.read_csv(cfg.run_dir / "benchmark" / "comparisons.csv")
    # one seed: every comparison is labelled exploratory, none confirmatory
    assert (comparisons["family_kind"] == "exploratory").all()
    assert comparisons["evidence"].str.startswith("single seed").all()
    decoding = pd.read_csv(cfg.run_dir / "benchmark" / "context_decoding.csv")
    decoding = decoding[decoding["decoder"] == "context head"]
    assert set(decoding["model"]) == set(table["model"]) - {"resnet18-motion"}
    assert set(decoding["scope"]) == {"all", "within casme2"}  # both folds are CASME II
    predictions = _predictions(cfg.run_dir)
    assert set(predictions["fold"]) == {"casme2/sub01", "casme2/sub02"}
    samples = pd.read_parquet(cfg.run_dir / "database" / "samples.parquet")
    held_out = samples[
        (samples["dataset"] == "casme2") & samples["subject"].isin(["sub01", "sub02"])
    ]
    assert len(predictions) == 4 * len(held_out) == 4 * (3 + 9)
    # ethnicmer compare on real predictions: a study's row against its own row read as
    # another study's gives the study's own comparison (same test, same numbers)
    from ethnicmer.studies.cross_study import compare_studies, parse_ref

    own = comparisons.iloc[0]
    cross = compare_studies(
        [(parse_ref(f"{cfg.run_dir}:{own['a']}"), parse_ref(f"{cfg.run_dir}:{own['b']}"))], 20, 0
    ).iloc[0]
    for column in ("difference", "ci_low", "ci_high", "p_permutation", "mde", "samples"):
        assert cross[column] == pytest.approx(own[column])


def test_full_disk_stops_before_training_and_says_what_to_do(
    tiny_megc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import shutil as shutil_module

    import ethnicmer.studies.benchmark as benchmark

    free = 1 << 30  # 1 GiB: less than the margin plus 4 folds x 2 dual checkpoints
    usage = shutil_module.disk_usage(tmp_path)._replace(free=free)
    monkeypatch.setattr(benchmark.shutil, "disk_usage", lambda _path: usage)
    path = tiny_benchmark_config(tmp_path, tiny_megc, [MOTION, DUAL], max_folds=2)
    cfg = load_config(path)
    run_stage(DATABASE, cfg)
    result = runner.invoke(app, ["benchmark", str(path)])
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert "4 fold checkpoints" in message and "['dual', 'motion']" in message
    assert "1.1 GB free" in message and "save_checkpoints: false" in message
    assert not list((cfg.run_dir / "benchmark").rglob("*.csv"))  # nothing trained

    # Without checkpoints nothing needs the space: the same folds run.
    path = tiny_benchmark_config(
        tmp_path, tiny_megc, [MOTION, DUAL], max_folds=2, save_checkpoints=False
    )
    result = runner.invoke(app, ["benchmark", str(path)])
    assert result.exit_code == 0, result.output
    assert len(list((cfg.run_dir / "benchmark").rglob("folds/*.csv"))) == 4


def test_checkpoint_size_estimate_matches_the_saved_file(tiny_megc: Path, tmp_path: Path):
    from ethnicmer.config import ModelConfig
    from ethnicmer.evaluation.training import checkpoint_bytes

    cfg = _run(tiny_benchmark_config(tmp_path, tiny_megc, [MOTION, DUAL], max_folds=1))
    for name, n_context in (("motion", 2), ("dual", 2)):
        (saved,) = (cfg.run_dir / "benchmark" / "models" / name).rglob("*.pt")
        spec = {"motion": MOTION, "dual": DUAL}[name]
        # the default checkpoint_precision is float16: half of float32
        estimate = checkpoint_bytes(ModelConfig(**spec), n_context, "float16")
        assert 0.97 < saved.stat().st_size / estimate < 1.03
        full = checkpoint_bytes(ModelConfig(**spec), n_context, "float32")
        assert 0.49 < estimate / full < 0.51


def test_report_command_renders_a_benchmark_only_study(tiny_megc: Path, tmp_path: Path):
    import yaml

    path = tiny_benchmark_config(tmp_path, tiny_megc, [MOTION], max_folds=2)
    payload = yaml.safe_load(path.read_text())
    payload["stages"]["report"] = {}
    path.write_text(yaml.safe_dump(payload))
    result = runner.invoke(app, ["report", str(path)])  # runs database + benchmark first
    assert result.exit_code == 0, result.output
    report = tmp_path / "runs" / "tiny" / "report.md"
    markdown = report.read_text()
    assert "## LOSO benchmark (Table V)" in markdown and "| motion " in markdown
    assert "nan" not in markdown  # missing cells print as "–"
    assert "Context head" not in markdown  # no dual row: nothing to decode
    before = report.stat().st_mtime_ns
    result = runner.invoke(app, ["report", str(path), "--force"])
    assert result.exit_code == 0 and report.stat().st_mtime_ns != before


def test_a_failing_fold_stops_the_pool_and_names_the_fold(tiny_megc: Path, tmp_path: Path):
    """The process pool stops at the first failing fold: queued folds are cancelled,
    finished folds kept, and the error names the row, seed and held-out subject."""
    import dataclasses

    from ethnicmer.config import ExecutorConfig
    from ethnicmer.errors import FoldError
    from ethnicmer.stages import samples_with_flows
    from ethnicmer.studies.benchmark import plan_tasks

    path = tiny_benchmark_config(tmp_path, tiny_megc, [MOTION], save_checkpoints=False)
    cfg = load_config(path)
    run_stage(DATABASE, cfg)
    samples = samples_with_flows(cfg).sort_values(["dataset", "subject", "filename"])
    samples = samples.reset_index(drop=True)
    out = cfg.run_dir / "benchmark"
    tasks = plan_tasks(cfg, samples, out)
    assert len(tasks) == 6
    spec = json.loads((out / "models" / "motion" / "seed-0" / "spec.json").read_text())
    assert all(task.libraries == spec["libraries"] for task in tasks)  # workers check these
    broken = dataclasses.replace(tasks[0], flow_file=str(tmp_path / "missing.npy"))
    with pytest.raises(FoldError) as info:
        executors.execute([broken, *tasks[1:]], ExecutorConfig(kind="process", workers=1))
    message = str(info.value)
    assert "row motion, seed 0, test subject casme2/sub01" in message
    assert "missing.npy" in message and "re-run to resume" in message
    finished = list((out / "models" / "motion" / "seed-0" / "folds").glob("*.csv"))
    assert len(finished) < 5  # queued folds did not run
    with pytest.raises(FoldError, match="row motion, seed 0, test subject casme2/sub01"):
        executors.execute([broken], ExecutorConfig(kind="inline"))
