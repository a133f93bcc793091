"""Readers of the official sheets, frame folders and MEGC flow sets."""

from pathlib import Path

import pandas as pd
import pytest

from ethnicmer.data.casme2 import read_coding_sheet
from ethnicmer.data.frames import find_frame, index_frames
from ethnicmer.data.megc import read_megc_flow_set
from ethnicmer.data.samm import find_header_row, read_samm_sheet
from ethnicmer.errors import DataError


def test_synthetic_casme2_sheet(synthetic_root: Path):
    table = read_coding_sheet(synthetic_root / "CASME2" / "CASME2-coding-synthetic.xlsx")
    assert len(table) == 12
    assert table["subject"].iloc[0] == "sub01"
    assert table["source_row"].iloc[0] == 2  # header is sheet row 1
    assert str(table["onset"].dtype) == "Int64"


def test_samm_header_row_is_found_not_assumed(synthetic_root: Path):
    sheet = synthetic_root / "SAMM" / "SAMM_Micro_FACS_Codes_synthetic.xlsx"
    assert find_header_row(sheet) == 13
    table = read_samm_sheet(sheet)
    assert table["subject"].iloc[0] == "006"
    assert table["source_row"].iloc[0] == 15


def test_samm_header_elsewhere(tmp_path: Path):
    header = [
        "Subject",
        "Filename",
        "Onset Frame",
        "Apex Frame",
        "Offset Frame",
        "Action Units",
        "Estimated Emotion",
    ]
    rows = [["preamble", None, None, None, None, None, None]] * 3 + [
        header,
        [7, "007_3_1", 10, 12, 20, "12", "Happiness"],
    ]
    path = tmp_path / "samm.xlsx"
    pd.DataFrame(rows).to_excel(path, header=False, index=False)
    table = read_samm_sheet(path)
    assert table.loc[0, "subject"] == "007" and table.loc[0, "source_row"] == 5


def test_missing_column_names_file_and_columns(tmp_path: Path):
    path = tmp_path / "casme.xlsx"
    pd.DataFrame({"Subject": [1], "Filename": ["EP01"], "OnsetFrame": [1]}).to_excel(
        path, index=False
    )
    with pytest.raises(DataError) as info:
        read_coding_sheet(path)
    assert str(path) in str(info.value) and "ApexFrame" in str(info.value)


def test_empty_sheet_is_an_error(tmp_path: Path):
    path = tmp_path / "casme.xlsx"
    columns = [
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
    ]
    pd.DataFrame(columns=columns).to_excel(path, index=False)
    with pytest.raises(DataError, match="no sample rows"):
        read_coding_sheet(path)


def test_missing_sheet_file(tmp_path: Path):
    with pytest.raises(DataError, match="file not found"):
        read_coding_sheet(tmp_path / "none.xlsx")


def test_frames_exact_number_matching(tmp_path: Path):
    folder = tmp_path / "sub01" / "EP01"
    folder.mkdir(parents=True)
    for name in ("img46.jpg", "img460.jpg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    index_frames.cache_clear()
    assert find_frame(tmp_path, "sub01", "EP01", 46).name == "img46.jpg"
    with pytest.raises(DataError, match="no image for frame 4 "):
        find_frame(tmp_path, "sub01", "EP01", 4)


def test_frames_cropped_and_samm_names(tmp_path: Path):
    cropped = tmp_path / "sub02" / "EP03"
    cropped.mkdir(parents=True)
    (cropped / "reg_img7.jpg").write_bytes(b"x")
    samm = tmp_path / "006" / "006_1_2"
    samm.mkdir(parents=True)
    (samm / "006_05562.jpg").write_bytes(b"x")
    index_frames.cache_clear()
    assert find_frame(tmp_path, "sub02", "EP03", 7).name == "reg_img7.jpg"
    assert find_frame(tmp_path, "006", "006_1_2", 5562).name == "006_05562.jpg"


def test_two_images_for_one_frame_is_an_error(tmp_path: Path):
    folder = tmp_path / "sub01" / "EP01"
    folder.mkdir(parents=True)
    (folder / "img5.jpg").write_bytes(b"x")
    (folder / "reg_img5.jpg").write_bytes(b"x")
    index_frames.cache_clear()
    with pytest.raises(DataError, match="frame 5 appears twice"):
        find_frame(tmp_path, "sub01", "EP01", 5)


def test_missing_frame_folder(tmp_path: Path):
    index_frames.cache_clear()
    with pytest.raises(DataError, match="does not exist"):
        find_frame(tmp_path, "sub09", "EP01", 1)


def test_megc_csv_bad_label_names_line(tmp_path: Path):
    (tmp_path / "c.csv").write_text(
        "dataset,sub,filename_o,label,apex,imagename,sub_filename\ncasme2,sub01,EP01,3,,x.jpg,\n"
    )
    with pytest.raises(DataError, match=r"c\.csv, line 2: label '3'"):
        read_megc_flow_set(tmp_path, "c.csv")


def test_megc_csv_with_smic_rows_and_a_dataset_filter(tmp_path: Path):
    """The full composite's spellings: SMIC rows s01 / s01_ne_01 (files named so) are the
    release's s1 / s1_ne_01; a row of a dataset ethnicmer does not read is skipped by the
    filter before it is read."""
    (tmp_path / "c.csv").write_text(
        "dataset,sub,filename_o,label,apex,imagename,sub_filename\n"
        "casme2,sub01,EP01,0,,sub01_EP01.jpg,\n"
        "smic,s01,s01_ne_01,0,,s01_s1_ne_01.jpg,\n"
        "smic,s12,s12_sur_01,2,,s12_s12_sur_01.jpg,\n"
        "mmew,S1,clip,1,,x.jpg,\n"
    )
    with pytest.raises(DataError, match=r"line 5: unknown dataset 'mmew'"):
        read_megc_flow_set(tmp_path, "c.csv")
    table, skipped = read_megc_flow_set(tmp_path, "c.csv", ["casme2", "smic"])
    assert list(zip(table["subject"], table["filename"], strict=True)) == [
        ("sub01", "EP01"),
        ("s1", "s1_ne_01"),
        ("s12", "s12_sur_01"),
    ]
    assert Path(table["flow_path"].iloc[1]).name == "s01_s01_ne_01 .png"
    assert Path(table["apex_crop_path"].iloc[1]).name == "s01_s1_ne_01.jpg"
    assert table["label"].tolist() == ["Negative", "Negative", "Surprise"]
    assert skipped[["dataset", "source_row"]].values.tolist() == [["mmew", 5]]


# ---------------------------------------------------------------- real data


def test_real_casme2_sheets(real_data: Path):
    old = read_coding_sheet(real_data / "annotations" / "CASME2-coding-20140508.xlsx")
    new = read_coding_sheet(real_data / "annotations" / "CASME2-coding-20190701.xlsx")
    assert len(old) == len(new) == 255
    assert old["subject"].nunique() == 26
    slash = new[new["apex"].isna()]
    assert list(zip(slash["subject"], slash["filename"], slash["apex_raw"], strict=True)) == [
        ("sub04", "EP12_01f", "/")
    ]
    assert old["emotion"].value_counts()["others"] == 99


def test_real_samm_sheet(real_data: Path):
    sheet = real_data / "annotations" / "SAMM_Micro_FACS_Codes_v2.xlsx"
    assert find_header_row(sheet) == 13
    table = read_samm_sheet(sheet)
    assert len(table) == 159 and table["subject"].nunique() == 29
    assert set(table["subject"]) >= {"006", "037"}
    assert table["emotion"].value_counts()["others"] == 26


def test_real_megc_csv(real_data: Path):
    table, skipped = read_megc_flow_set(real_data / "megc2019-flow")
    assert len(table) == 278 and skipped.empty
    assert all(Path(p).is_file() for p in table["flow_path"])
    assert all(Path(p).name.endswith(" .png") for p in table["flow_path"])
    assert all(Path(p).is_file() for p in table["apex_crop_path"])
