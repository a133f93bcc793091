"""Beyond two datasets (issue 17): SMIC, unknown demographics, the table source, the
cross-dataset protocols and the MEGC2019 composite database evaluation (CDE)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ethnicmer.cli import app
from ethnicmer.config import SimulateConfig, load_config
from ethnicmer.data.composite import build_composite
from ethnicmer.data.synthetic import write_synthetic_study
from ethnicmer.errors import ConfigError, DataError
from ethnicmer.evaluation.protocols import protocol_folds, row_samples, subject_ids
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import BENCHMARK, DATABASE, FLOW, REPORT
from tests.conftest import SMIC_SUBJECTS, synthetic_data_section, write_config, write_megc_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def three_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A texture study in the CASME II, SAMM and SMIC-E-HS layouts; SMIC subjects have no
    demographics row."""
    root = tmp_path_factory.mktemp("three")
    write_synthetic_study(
        SimulateConfig(
            out=root,
            subjects_per_dataset=3,
            samples_per_subject=3,
            smic_subjects=3,
            smic_demographics=False,
        ),
        seed=0,
    )
    return root


def _three_sources(root: Path, **demographics: object) -> dict:
    data = synthetic_data_section(root)
    data["sources"].append(
        {
            "kind": "smic",
            "table": str(root / "SMIC" / "smic_hs_e.csv"),
            "frames": str(root / "SMIC" / "SMIC_HS_E"),
        }
    )
    data["demographics"] = {"table": str(root / "demographics.csv"), **demographics}
    return data


def test_simulated_smic_release_reads_and_excludes_and_computes_flows(
    three_datasets: Path, tmp_path: Path
):
    # the simulator writes the SMIC-E-HS layout
    table = pd.read_csv(three_datasets / "SMIC" / "smic_hs_e.csv")
    assert list(table.columns) == [
        "data",
        "subject",
        "clip",
        "label",
        "onset_frame",
        "apex_frame",
        "offset_frame",
    ]
    first = table.iloc[0]
    frame = f"image{first['onset_frame']}.jpg"
    assert (three_datasets / "SMIC" / "SMIC_HS_E" / "s1" / first["clip"] / frame).is_file()
    # without demographics for SMIC the default stops and says how to go on
    strict = load_config(
        write_config(tmp_path / "strict", {"study": "s", "data": _three_sources(three_datasets)})
    )
    with pytest.raises(DataError, match=r"smic/s1 has no demographics row .*missing: unknown"):
        build_composite(strict.data)
    # a missing apex frame of one SMIC clip is an exclusion naming the file
    missing = three_datasets / "SMIC" / "SMIC_HS_E" / "s2" / table.iloc[3]["clip"]
    apex = missing / f"image{table.iloc[3]['apex_frame']}.jpg"
    hidden = apex.with_suffix(".hidden")
    apex.rename(hidden)
    try:
        data = _three_sources(three_datasets, missing="unknown")
        data["on_problem"] = "exclude"
        payload = {"study": "s", "data": data, "stages": {"flow": {"align": "none", "workers": 1}}}
        config = write_config(tmp_path, payload)
        cfg = load_config(config)
        run_stage(DATABASE, cfg)
        run_stage(FLOW, cfg)
        # db summary: counts per dataset and the Unknown group (SMIC, no demographics)
        result = runner.invoke(app, ["db", "summary", str(config), "--json"])
        totals = json.loads(result.stdout)["totals"]
    finally:
        hidden.rename(apex)
    samples = pd.read_parquet(cfg.run_dir / "database" / "samples.parquet")
    exclusions = pd.read_csv(cfg.run_dir / "database" / "exclusions.csv", dtype=str)
    # the CASME II / SAMM "others" samples are dropped by the paper mapping, with the reason
    assert exclusions["reason"].str.contains("'others' is dropped|no image for frame").all()
    smic_excluded = exclusions[exclusions["dataset"] == "smic"]
    assert smic_excluded[["subject", "filename"]].values.tolist() == [["s2", table.iloc[3]["clip"]]]
    reason = smic_excluded["reason"].iloc[0]
    assert f"no image for frame {table.iloc[3]['apex_frame']}" in reason
    smic = samples[samples["dataset"] == "smic"]
    assert len(smic) == 8 and set(smic["subject"]) == {"s1", "s2", "s3"}
    assert set(smic["ethnicity"]) == {"Unknown"} and smic["race_code"].isna().all()
    assert smic["label"].tolist() == [
        ["Negative", "Positive", "Surprise"][int(v)]
        for v in table.set_index("clip").loc[smic["filename"], "label"]
    ]
    # the flow stage computes flow images from the SMIC raw frames
    flows = pd.read_csv(cfg.run_dir / "flow" / "flows.csv", dtype=str)
    assert (flows["dataset"] == "smic").sum() == 8
    assert all(Path(p).is_file() for p in flows["flow_path"])
    assert totals["samples_by_dataset"] == {"casme2": 8, "samm": 7, "smic": 8}
    assert totals["subjects_by_ethnicity"]["Unknown"] == 3
    # the restored frame is seen: the database stage re-runs and keeps the clip
    run_stage(DATABASE, cfg)
    assert len(pd.read_parquet(cfg.run_dir / "database" / "samples.parquet")) == 24


def test_the_table_source_gives_the_samples_of_the_built_in_readers(
    three_datasets: Path, tmp_path: Path
):
    """One CSV of (dataset, subject, filename, emotion | label, frame paths) reads the
    same samples, labels and frames as the sheets; any dataset name is accepted."""
    reference = build_composite(
        load_config(
            write_config(
                tmp_path / "ref",
                {"study": "r", "data": _three_sources(three_datasets, missing="unknown")},
            )
        ).data
    ).samples
    rows = reference.assign(
        emotion=reference["emotion_raw"].where(reference["dataset"] != "smic", ""),
        label=reference["label"].where(reference["dataset"] == "smic", ""),
    )[["dataset", "subject", "filename", "emotion", "label", "onset_path", "apex_path"]]
    rows["onset_path"] = [os.path.relpath(p, tmp_path) for p in rows["onset_path"]]
    extra = rows.iloc[:2].assign(dataset="My Lab", subject="p1", race="White", gender=1, age_bin=3)
    table = tmp_path / "samples.csv"
    pd.concat([rows, extra]).to_csv(table, index=False)
    data = {
        "sources": [{"kind": "table", "path": str(table)}],
        "demographics": {"table": str(three_datasets / "demographics.csv"), "missing": "unknown"},
    }
    samples = build_composite(
        load_config(write_config(tmp_path, {"study": "t", "data": data})).data
    ).samples
    keys = ["dataset", "subject", "filename"]
    ours = samples[samples["dataset"] != "my_lab"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        ours[[*keys, "label", "onset_path", "apex_path", "onset_sha256", "ethnicity"]],
        reference[[*keys, "label", "onset_path", "apex_path", "onset_sha256", "ethnicity"]],
    )
    lab = samples[samples["dataset"] == "my_lab"]
    assert len(lab) == 2 and set(lab["ethnicity"]) == {"Non-Asian"}  # White → Non-Asian
    # bad rows are named at their line
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,subject,filename,emotion,flow_path\nx,p1,c1,joy,a.png\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 2: unknown emotion word 'joy'"):
        build_composite(
            load_config(
                write_config(
                    tmp_path / "b",
                    {"study": "b", "data": {"sources": [{"kind": "table", "path": str(bad)}]}},
                )
            ).data
        )


def test_protocols_hold_out_datasets_and_never_leak(three_datasets: Path, tmp_path: Path):
    cfg = load_config(
        write_config(
            tmp_path,
            {"study": "p", "data": _three_sources(three_datasets, missing="unknown")},
        )
    )
    samples = build_composite(cfg.data).samples
    groups = subject_ids(samples)

    def folds(**bench: object):
        payload = {"models": [{"name": "m"}], **bench}
        from ethnicmer.config import BenchmarkConfig

        return protocol_folds(samples, BenchmarkConfig.model_validate(payload))

    lodo = folds(protocol="leave_one_dataset_out")
    assert [f.test_subject for f in lodo] == ["dataset casme2", "dataset samm", "dataset smic"]
    assert [f.slug for f in lodo] == ["dataset_casme2", "dataset_samm", "dataset_smic"]
    for fold in lodo:
        dataset = fold.test_subject.split()[1]
        assert set(samples["dataset"].iloc[fold.test]) == {dataset}
        assert dataset not in set(samples["dataset"].iloc[fold.train])
        assert not set(groups[fold.test]) & set(groups[fold.train])
    (one,) = folds(protocol="train_test", train_datasets=["casme2", "samm"], test_datasets=["smic"])
    assert one.slug == "casme2+samm_to_smic" and len(one.test) == 9 and len(one.train) == 15
    with pytest.raises(ConfigError, match="not in the samples"):
        folds(protocol="train_test", train_datasets=["casme2"], test_datasets=["mmew"])
    with pytest.raises(Exception, match="share"):
        folds(protocol="train_test", train_datasets=["casme2"], test_datasets=["casme2"])
    # an ethnicity-context row trains and tests on the labelled subjects only
    keep = row_samples(samples, "ethnicity")
    assert keep.sum() == 15 and not keep[(samples["dataset"] == "smic").to_numpy()].any()
    assert row_samples(samples, "none").all() and row_samples(samples, "dataset").all()


def _cde_config(tmp_path: Path, root: Path, **bench: object) -> Path:
    settings = {
        "epochs": 1,
        "input_size": 28,
        "rgb_size": 32,
        "batch_size": 8,
        "bootstrap": 20,
        "save_checkpoints": False,
        "executor": {"kind": "inline", "threads_per_fold": 1},
        "published": "megc2019-cde",
        "models": [
            {"name": "motion"},
            {"name": "dual", "context": "ethnicity", "context_input": "flow"},
        ],
        **bench,
    }
    payload = {
        "study": "cde",
        "seed": 0,
        "data": {
            "sources": [{"kind": "megc2019_flow", "root": str(root)}],
            "demographics": {"missing": "unknown"},
        },
        "stages": {"benchmark": settings, "report": {}},
    }
    return write_config(tmp_path, payload)


def test_cde_on_a_composite_with_smic_rows(tiny_cde: Path, tmp_path: Path):
    """LOSO over three datasets: UF1/UAR per dataset, the published table beside them,
    SMIC subjects (no demographics) in the emotion-only row and out of the ethnicity row."""
    cfg = load_config(_cde_config(tmp_path, tiny_cde))
    for stage in (DATABASE, BENCHMARK, REPORT):
        run_stage(stage, cfg)
    out = cfg.run_dir / "benchmark"
    cde = pd.read_csv(out / "cde.csv").set_index("model")
    assert {"uf1", "uar", "uf1_smic", "uar_smic", "uf1_casme2", "uf1_samm"} <= set(cde.columns)
    assert cde.loc["motion", "samples_smic"] == 12 and "samples_smic" in cde.columns
    assert np.isnan(cde.loc["dual", "samples_smic"])  # the ethnicity row tests no SMIC subject
    table5 = pd.read_csv(out / "table5.csv").set_index("model")
    assert table5.loc["motion", "samples"] == 36 and table5.loc["dual", "samples"] == 24
    summary = json.loads((out / "summary.json").read_text())
    assert summary["left_out_of_group_tables"]["subjects"] == 3
    assert summary["left_out_of_group_tables"]["by_dataset"] == {"smic": 12}
    groups = pd.read_csv(out / "groups.csv")
    assert "Unknown" not in set(groups["group"]) and "smic" in set(groups["group"])
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert comparisons["samples"].tolist() == [24]  # on the samples both rows predicted
    published = pd.read_csv(out / "published.csv")
    assert {"STSTNet (as published)", "HTNet"} <= set(published["method"])
    assert published.set_index("method").loc["HTNet", "epoch_selection"] == "test_subject"
    report = (cfg.run_dir / "report.md").read_text()
    assert "Composite database evaluation" in report and "HTNet" in report
    assert "12 samples of 3 subjects" in report


def test_leave_one_dataset_out_benchmark(tiny_cde: Path, tmp_path: Path):
    cfg = load_config(
        _cde_config(
            tmp_path,
            tiny_cde,
            protocol="leave_one_dataset_out",
            models=[{"name": "motion"}],
            published=None,
        )
    )
    run_stage(DATABASE, cfg)
    run_stage(BENCHMARK, cfg)
    predictions = pd.read_csv(cfg.run_dir / "benchmark" / "predictions.csv", dtype=str)
    assert sorted(predictions["fold"].unique()) == [
        "dataset casme2",
        "dataset samm",
        "dataset smic",
    ]
    summary = json.loads((cfg.run_dir / "benchmark" / "summary.json").read_text())
    assert summary["protocol"] == "leave_one_dataset_out" and not summary["full_loso"]


# ---------------------------------------------------------------- real data


def test_real_megc_set_with_simulated_smic_rows_and_the_table_source(
    real_data: Path, tmp_path: Path
):
    """The real CASME II + SAMM flow set with SMIC rows appended loads as a three-dataset
    composite; a table source listing the real flow images gives the MEGC reader's samples."""
    source = real_data / "megc2019-flow"
    root = tmp_path / "megc442"
    for folder in ("STSNet_whole_norm_u_v_os", "combined_datasets_whole"):
        (root / "datasets" / folder).mkdir(parents=True)
        for path in (source / "datasets" / folder).iterdir():
            (root / "datasets" / folder / path.name).symlink_to(path)
    codes = ("ne", "po", "sur")
    rows = [
        ("smic", s, f"{s}_{codes[k % 3]}_{k + 1:02d}", k % 3)
        for s in SMIC_SUBJECTS
        for k in range(3)
    ]
    lines = write_megc_rows(root, rows, seed=2)
    csv = root / "combined_3_class2_for_optical_flow.csv"
    csv.write_text((source / csv.name).read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    data = {
        "sources": [{"kind": "megc2019_flow", "root": str(root)}],
        "demographics": {"missing": "unknown"},
    }
    composite = build_composite(
        load_config(write_config(tmp_path, {"study": "r", "data": data})).data
    )
    samples = composite.samples
    assert samples["dataset"].value_counts().to_dict() == {"samm": 133, "casme2": 145, "smic": 9}
    assert set(samples.loc[samples["dataset"] == "smic", "subject"]) == {"s1", "s2", "s3"}
    assert (samples.loc[samples["dataset"] != "smic", "ethnicity"] != "Unknown").all()
    # the same 278 real samples through a table source
    real = samples[samples["dataset"] != "smic"]
    table = real[["dataset", "subject", "filename", "label", "flow_path", "apex_crop_path"]]
    table.to_csv(tmp_path / "real.csv", index=False)
    data = {"sources": [{"kind": "table", "path": str(tmp_path / "real.csv")}]}
    again = build_composite(
        load_config(write_config(tmp_path / "t", {"study": "t", "data": data})).data
    ).samples
    columns = [
        "dataset",
        "subject",
        "filename",
        "label",
        "flow_sha256",
        "apex_crop_sha256",
        "ethnicity",
        "flow_side",
    ]
    pd.testing.assert_frame_equal(
        again[columns].reset_index(drop=True), real[columns].reset_index(drop=True)
    )
