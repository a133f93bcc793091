import pytest

from ethnicmer.data.emotions import map_emotion, normalise_emotion, to_binary
from ethnicmer.data.subjects import normalise_dataset, normalise_filename, normalise_subject
from ethnicmer.errors import DataError


@pytest.mark.parametrize(
    ("word", "canonical"),
    [
        ("Happiness", "happiness"),
        (" surprise ", "surprise"),
        ("Other", "others"),
        ("ANGER", "anger"),
        ("repression", "repression"),
    ],
)
def test_emotion_spelling_variants(word, canonical):
    assert normalise_emotion(word, "sheet.xlsx, row 2") == canonical


def test_unknown_emotion_names_sheet_and_row():
    with pytest.raises(DataError, match=r"sheet\.xlsx, row 7: unknown emotion word 'joyful'"):
        normalise_emotion("joyful", "sheet.xlsx, row 7")


def test_paper_mapping_table_iii():
    # Table III: Anger, Contempt, Disgust, Fear, Repression, Sadness -> Negative.
    for word in ("anger", "contempt", "disgust", "fear", "repression", "sadness"):
        assert map_emotion("paper", "casme2", word) == ("Negative", "")
    assert map_emotion("paper", "samm", "happiness")[0] == "Positive"
    assert map_emotion("paper", "samm", "surprise")[0] == "Surprise"
    label, reason = map_emotion("paper", "casme2", "others")
    assert label is None and "others" in reason


def test_megc2019_mapping_is_dataset_specific():
    assert map_emotion("megc2019", "casme2", "repression")[0] == "Negative"
    assert map_emotion("megc2019", "casme2", "fear")[0] is None
    assert map_emotion("megc2019", "casme2", "sadness")[0] is None
    assert map_emotion("megc2019", "samm", "fear")[0] == "Negative"
    assert map_emotion("megc2019", "samm", "contempt")[0] == "Negative"


def test_binary_mapping():
    assert [to_binary(x) for x in ("Negative", "Positive", "Surprise")] == [
        "Negative",
        "Non-negative",
        "Non-negative",
    ]


def test_subject_normalisation():
    assert normalise_subject("casme2", 1) == "sub01"
    assert normalise_subject("casme2", "sub1") == "sub01"
    assert normalise_subject("samm", 6) == "006"
    assert normalise_subject("samm", "006") == "006"
    assert normalise_subject("samm", 6.0) == "006"
    assert normalise_dataset("CASME2") == "casme2"
    with pytest.raises(DataError, match="row 3"):
        normalise_subject("samm", "abc", "f.csv, row 3")
    # SMIC: the MEGC2019 CSV's s01 / s01_ne_01 are the release folders' s1 / s1_ne_01
    assert normalise_dataset("SMIC-HS") == "smic"
    assert normalise_subject("smic", "s01") == normalise_subject("smic", "s1") == "s1"
    assert normalise_subject("smic", 20) == "s20"
    assert normalise_filename("smic", "s1", "s01_ne_01") == "s1_ne_01"
    assert normalise_filename("smic", "s20", "s20_sur_5") == "s20_sur_05"
    with pytest.raises(DataError, match="belongs to s2, not s1"):
        normalise_filename("smic", "s1", "s02_po_01", "f.csv, line 4")
    with pytest.raises(DataError, match="line 5: SMIC clip 'EP02_01' is not"):
        normalise_filename("smic", "s1", "EP02_01", "f.csv, line 5")
    # other datasets: only through sources that accept any name (the table source)
    with pytest.raises(DataError, match="unknown dataset 'mmew'"):
        normalise_dataset("mmew", "f.csv, line 2")
    assert normalise_dataset("MMEW", custom=True) == "mmew"
    assert normalise_dataset("CAS(ME)³", custom=True) == "casme3"
    assert normalise_dataset("My Lab 2024", custom=True) == "my_lab_2024"
    assert normalise_subject("mmew", " S7 ") == "S7"
    assert normalise_filename("mmew", "S7", "clip 3") == "clip 3"
