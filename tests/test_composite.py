"""The composite database: rules, exclusions and every bad-input case."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ethnicmer.data.composite import SAMPLE_COLUMNS, build_composite
from ethnicmer.data.frames import index_frames
from ethnicmer.errors import DataError
from tests.conftest import synthetic_data_section


@pytest.fixture
def copy_root(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic study that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    index_frames.cache_clear()
    return root


def test_synthetic_build(synthetic_root: Path, make_config):
    cfg = make_config(synthetic_data_section(synthetic_root))
    db = build_composite(cfg.data)
    samples = db.samples
    assert list(samples.columns) == SAMPLE_COLUMNS
    assert not samples.duplicated(["dataset", "subject", "filename"]).any()
    # 24 rows in the sheets; every 'others' row is an exclusion with its reason.
    assert len(samples) + len(db.exclusions) == 24
    assert (db.exclusions["reason"] == "emotion 'others' is dropped by the paper mapping").all()
    assert set(samples["ethnicity"]) == {"Asian", "Non-Asian"}
    assert all(Path(p).is_file() for p in samples["onset_path"])
    assert all(
        Path(p).name.startswith("img") for p in samples.query("dataset == 'casme2'")["apex_path"]
    )
    assert samples["label_id"].tolist() == [
        ["Negative", "Positive", "Surprise"].index(x) for x in samples["label"]
    ]


def test_missing_frame_file_is_an_error_naming_the_sample(copy_root: Path, make_config):
    cfg = make_config(synthetic_data_section(copy_root))
    victim = build_composite(cfg.data).samples.iloc[0]
    Path(victim["apex_path"]).unlink()
    index_frames.cache_clear()
    with pytest.raises(DataError) as info:
        build_composite(cfg.data)
    message = str(info.value)
    assert f"{victim['dataset']}/{victim['subject']}/{victim['filename']}" in message
    assert f"no image for frame {victim['apex']}" in message
    assert "row" in message


def test_missing_frame_folder_lenient_is_listed(copy_root: Path, make_config):
    cfg = make_config(synthetic_data_section(copy_root, on_problem="exclude"))
    victim = build_composite(cfg.data).samples.iloc[-1]
    shutil.rmtree(Path(victim["onset_path"]).parent)
    index_frames.cache_clear()
    db = build_composite(cfg.data)
    row = db.exclusions[db.exclusions["filename"] == victim["filename"]]
    assert len(row) == 1 and "does not exist" in row["reason"].iloc[0]
    assert victim["filename"] not in set(db.samples["filename"])


def test_unreadable_image(copy_root: Path, make_config):
    cfg = make_config(synthetic_data_section(copy_root))
    victim = build_composite(cfg.data).samples.iloc[1]
    Path(victim["onset_path"]).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"onset frame .* cannot be decoded"):
        build_composite(cfg.data)


def test_duplicate_key_is_an_error(copy_root: Path, make_config):
    sheet = copy_root / "CASME2" / "CASME2-coding-synthetic.xlsx"
    table = pd.read_excel(sheet)
    pd.concat([table, table.iloc[[0]]]).to_excel(sheet, index=False)
    cfg = make_config(synthetic_data_section(copy_root))
    with pytest.raises(DataError) as info:
        build_composite(cfg.data)
    assert "duplicate (dataset, subject, filename)" in str(info.value)
    assert "row 2" in str(info.value) and "row 14" in str(info.value)


def test_subject_without_demographics(copy_root: Path, make_config):
    table = pd.read_csv(copy_root / "demographics.csv")
    table[table["subject"] != "sub02"].to_csv(copy_root / "demographics.csv", index=False)
    cfg = make_config(synthetic_data_section(copy_root))
    with pytest.raises(DataError, match="subject casme2/sub02 has no demographics row"):
        build_composite(cfg.data)
    lenient = make_config(synthetic_data_section(copy_root, on_problem="exclude"))
    db = build_composite(lenient.data)
    assert "sub02" not in set(db.samples["subject"])
    assert db.exclusions["reason"].str.contains("sub02 has no demographics").any()


def test_empty_source_is_an_error(tmp_path: Path, make_config):
    (tmp_path / "c.csv").write_text("dataset,sub,filename_o,label,apex,imagename,sub_filename\n")
    cfg = make_config(
        {"sources": [{"kind": "megc2019_flow", "root": str(tmp_path), "csv": "c.csv"}]}
    )
    with pytest.raises(DataError, match="no sample rows"):
        build_composite(cfg.data)


def _set_apex(root: Path, row: int, value: object) -> None:
    sheet = root / "CASME2" / "CASME2-coding-synthetic.xlsx"
    table = pd.read_excel(sheet)
    table["ApexFrame"] = table["ApexFrame"].astype(object)
    table.loc[row, "ApexFrame"] = value
    table.to_excel(sheet, index=False)


def test_apex_policies(copy_root: Path, make_config):
    _set_apex(copy_root, 0, "/")  # sub01 EP01_01, onset 40 offset 47
    _set_apex(copy_root, 1, 999)  # outside [onset, offset]
    db = build_composite(make_config(synthetic_data_section(copy_root)).data)  # default: midpoint
    first = db.samples.set_index(["subject", "filename"]).loc[("sub01", "EP01_01")]
    assert first["apex"] == (40 + 47) // 2 and "'/' holds no frame number" in first["apex_note"]
    second = db.samples.set_index(["subject", "filename"]).loc[("sub01", "EP02_01")]
    assert "outside [onset 47, offset 54]" in second["apex_note"]

    excluded = build_composite(
        make_config(synthetic_data_section(copy_root, apex_policy="exclude")).data
    )
    assert excluded.exclusions["reason"].str.contains("apex_policy: exclude").sum() == 2

    with pytest.raises(DataError, match=r"row 2: apex cell '/' holds no frame number"):
        build_composite(make_config(synthetic_data_section(copy_root, apex_policy="error")).data)

    corrections = copy_root / "apex.csv"
    corrections.write_text(
        "dataset,subject,filename,apex,reason\ncasme2,1,EP01_01,42,published correction\n"
    )
    with pytest.raises(DataError, match="has no correction"):
        build_composite(
            make_config(
                synthetic_data_section(
                    copy_root, apex_policy="corrections", apex_corrections=str(corrections)
                )
            ).data
        )
    corrections.write_text(
        "dataset,subject,filename,apex,reason\n"
        "casme2,1,EP01_01,42,published correction\ncasme2,sub01,EP02_01,50,x\n"
    )
    db = build_composite(
        make_config(
            synthetic_data_section(
                copy_root, apex_policy="corrections", apex_corrections=str(corrections)
            )
        ).data
    )
    assert db.samples.set_index(["subject", "filename"]).loc[("sub01", "EP01_01"), "apex"] == 42


def test_demographic_overrides_are_applied_and_logged(
    synthetic_root: Path, tmp_path: Path, make_config
):
    overrides = tmp_path / "overrides.csv"
    overrides.write_text(
        "dataset,subject,field,value,reason\ncasme2,sub01,race_code,0,annotator checked video\n"
    )
    data = synthetic_data_section(synthetic_root)
    data["demographics"]["overrides"] = str(overrides)
    db = build_composite(make_config(data).data)
    assert set(db.samples.query("subject == 'sub01'")["ethnicity"]) == {"Non-Asian"}
    assert db.overrides.to_dict("records") == [
        {
            "dataset": "casme2",
            "subject": "sub01",
            "field": "race_code",
            "old_value": 2,
            "new_value": 0,
            "reason": "annotator checked video",
            "source_line": 2,
        }
    ]
    overrides.write_text("dataset,subject,field,value,reason\ncasme2,sub01,race_code,9,x\n")
    with pytest.raises(
        DataError,
        match=r"overrides\.csv, line 2: race_code '9'|overrides\.csv, line 2: race_code 9",
    ):
        build_composite(make_config(data).data)
    overrides.write_text("dataset,subject,field,value,reason\ncasme2,sub01,race_code,0,\n")
    with pytest.raises(DataError, match="needs a reason"):
        build_composite(make_config(data).data)


def test_custom_grouping(synthetic_root: Path, make_config):
    data = synthetic_data_section(synthetic_root)
    data["demographics"]["grouping"] = {
        "White": "W",
        "Black": "other",
        "Asian": "other",
        "Indian": "other",
        "Others": "other",
    }
    data["demographics"]["paper_groups"] = {"Asian": "other", "Non-Asian": "W"}
    db = build_composite(make_config(data).data)
    assert set(db.samples["ethnicity"]) == {"W", "other"}


# ---------------------------------------------------------------- real data


def _megc_source(real_data: Path, **extra: object) -> dict:
    return {"kind": "megc2019_flow", "root": str(real_data / "megc2019-flow"), **extra}


def test_real_megc_composite_counts(real_data: Path, make_config):
    db = build_composite(make_config({"sources": [_megc_source(real_data)]}).data)
    s = db.samples
    assert len(s) == 278 and db.exclusions.empty
    assert s[["dataset", "subject"]].drop_duplicates().shape[0] == 52
    assert s["ethnicity"].value_counts().to_dict() == {"Asian": 187, "Non-Asian": 91}
    assert s.drop_duplicates(["dataset", "subject"])["ethnicity"].value_counts().to_dict() == {
        "Asian": 35,
        "Non-Asian": 17,
    }
    counts = pd.crosstab(s["dataset"], s["label"]).to_dict("index")
    assert counts == {
        "casme2": {"Negative": 88, "Positive": 32, "Surprise": 25},
        "samm": {"Negative": 92, "Positive": 26, "Surprise": 15},
    }
    assert s.groupby("dataset")["subject"].nunique().to_dict() == {"casme2": 24, "samm": 28}
    # The confound (DESIGN): SAMM Asian subjects have 1 Positive and 5 Surprise among 42 samples.
    samm_asian = s.query("dataset == 'samm' and ethnicity == 'Asian'")["label"].value_counts()
    assert (
        len(s.query("dataset == 'samm' and ethnicity == 'Asian'")),
        samm_asian["Positive"],
        samm_asian["Surprise"],
    ) == (42, 1, 5)


def test_real_megc_labels_agree_with_official_sheets(real_data: Path, make_config):
    source = _megc_source(
        real_data,
        casme2_sheet=str(real_data / "annotations" / "CASME2-coding-20140508.xlsx"),
        samm_sheet=str(real_data / "annotations" / "SAMM_Micro_FACS_Codes_v2.xlsx"),
    )
    db = build_composite(make_config({"sources": [source]}).data)
    assert len(db.samples) == 278 and db.exclusions.empty
    assert db.samples["onset"].notna().all() and (db.samples["action_units"] != "").all()


def test_real_megc_label_disagreement_is_reported(real_data: Path, tmp_path: Path, make_config):
    root = tmp_path / "megc"
    shutil.copytree(real_data / "megc2019-flow", root)
    csv = root / "combined_3_class2_for_optical_flow.csv"
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table.loc[0, "label"] = "2" if table.loc[0, "label"] != "2" else "0"
    table.to_csv(csv, index=False)
    source = {
        "kind": "megc2019_flow",
        "root": str(root),
        "casme2_sheet": str(real_data / "annotations" / "CASME2-coding-20140508.xlsx"),
    }
    with pytest.raises(
        DataError, match=r"casme2/sub01/EP02_01f .*disagrees with the sheet's emotion 'happiness'"
    ):
        build_composite(make_config({"sources": [source]}).data)


def test_real_sheets_paper_mapping(real_data: Path, make_config):
    data = {
        "sources": [
            {
                "kind": "casme2",
                "sheet": str(real_data / "annotations" / "CASME2-coding-20140508.xlsx"),
            },
            {
                "kind": "samm",
                "sheet": str(real_data / "annotations" / "SAMM_Micro_FACS_Codes_v2.xlsx"),
            },
        ]
    }
    db = build_composite(make_config(data).data)
    assert len(db.samples) == 289 and len(db.exclusions) == 99 + 26
    assert db.samples["label"].value_counts().to_dict() == {
        "Negative": 191,
        "Positive": 58,
        "Surprise": 40,
    }
    # The 2019 revision: its '/' apex is handled by the policy, its labels differ on 3 rows.
    data["sources"][0]["sheet"] = str(real_data / "annotations" / "CASME2-coding-20190701.xlsx")
    revised = build_composite(make_config(data).data)
    note = revised.samples.query("subject == 'sub04' and filename == 'EP12_01f'")["apex_note"].iloc[
        0
    ]
    assert "holds no frame number; set to the midpoint" in note
    assert revised.samples["label"].value_counts().to_dict() == {
        "Negative": 188,
        "Positive": 58,
        "Surprise": 43,
    }


def test_shipped_demographics_match_the_released_labels(real_data: Path):
    from ethnicmer.data.demographics import load_demographics

    table = load_demographics()
    labels = real_data / "ethnicmer-labels"
    casme = pd.read_csv(labels / "results_casme2.csv", dtype=str)
    samm = pd.read_csv(labels / "results_ethnic_selected.csv", dtype=str)
    assert len(table) == len(casme) + len(samm) == 55
    for dataset, frame, fmt in (("casme2", casme, str), ("samm", samm, lambda s: f"{int(s):03d}")):
        for _, row in frame.iterrows():
            ours = table[
                (table["dataset"] == dataset) & (table["subject"] == fmt(row["Subject"]))
            ].iloc[0]
            assert (ours["race_code"], ours["gender"], ours["age_bin"]) == (
                int(row["Race"]),
                int(row["Gender"]),
                int(row["Age"]),
            )
