"""Coded action units per ethnicity group (coders' ground truth for the paper's visual claims)."""

from pathlib import Path

import pandas as pd

from ethnicmer.data.composite import build_composite
from ethnicmer.studies.action_units import au_feature_table, parse_action_units


def test_parse_sheet_notation():
    coded = parse_action_units("R6A+R12")
    assert coded.has(6) and coded.has(12) and coded.unilateral(12)
    assert not parse_action_units("12").unilateral(12)
    assert not parse_action_units("L12+R12").unilateral(12)
    either = parse_action_units("(R6 or R12)+R15")
    assert either.ambiguous and either.has(6) and either.has(12) and either.has(15)
    assert parse_action_units("A1B+A2C").sides == {1: {"A"}, 2: {"A"}}
    assert parse_action_units("ref(7B)+43").has(7) and parse_action_units("10A/B").sides == {
        10: {"both"}
    }
    assert parse_action_units("A/L12").unilateral(12)


def test_feature_table_counts_and_fisher():
    samples = pd.DataFrame(
        {
            "dataset": "samm",
            "subject": [f"{i:03d}" for i in range(10)],
            "label": ["Positive"] * 6 + ["Surprise"] * 4,
            "ethnicity": ["A", "A", "A", "B", "B", "B", "A", "A", "B", "B"],
            "action_units": ["6+12", "6+12", "L12", "R12", "R12", "12", "1+2", "5", "26", "25+26"],
        }
    )
    table = au_feature_table(samples).set_index("feature")
    assert table["family_kind"].eq("exploratory").all() and table["family_size"].eq(5).all()
    assert (table.loc["AU6+AU12", "k_A"], table.loc["AU6+AU12", "n_A"]) == (2, 3)
    assert (
        table.loc["AU12 one-sided (of AU12)", "k_B"],
        table.loc["AU12 one-sided (of AU12)", "n_B"],
    ) == (2, 3)
    assert (
        table.loc["AU26 jaw drop", "share_B"] == 1.0
        and table.loc["AU26 jaw drop", "share_A"] == 0.0
    )
    assert 0 < table.loc["AU26 jaw drop", "p_fisher"] <= 1
    # the unit is the subject: two samples of one subject count once
    same_subject = samples.assign(subject=["000", "000", "002", "003", "003", "005"] + ["006"] * 4)
    table = au_feature_table(same_subject).set_index("feature")
    assert (table.loc["AU6+AU12", "k_A"], table.loc["AU6+AU12", "n_A"]) == (1, 2)
    assert table.loc["AU6+AU12", "samples_A"] == 3


def test_real_sheet_action_units(real_data: Path, make_config):
    source = {
        "kind": "megc2019_flow",
        "root": str(real_data / "megc2019-flow"),
        "casme2_sheet": str(real_data / "annotations" / "CASME2-coding-20140508.xlsx"),
        "samm_sheet": str(real_data / "annotations" / "SAMM_Micro_FACS_Codes_v2.xlsx"),
    }
    samples = build_composite(make_config({"sources": [source]}).data).samples
    assert not [t for t in samples["action_units"] if parse_action_units(t).unparsed]
    table = au_feature_table(samples, ("Asian", "Non-Asian")).set_index("feature")
    # Positive samples per group as in the composite (33 Asian, 25 Non-Asian), Surprise 30 / 10
    assert (table.loc["AU12", "samples_Asian"], table.loc["AU12", "samples_Non-Asian"]) == (33, 25)
    assert (
        table.loc["AU26 jaw drop", "samples_Asian"],
        table.loc["AU26 jaw drop", "samples_Non-Asian"],
    ) == (30, 10)
    # ... and the test counts subjects
    positive = samples[samples["label"] == "Positive"].drop_duplicates(["dataset", "subject"])
    subjects = positive.groupby("ethnicity").size()
    assert (table.loc["AU12", "n_Asian"], table.loc["AU12", "n_Non-Asian"]) == (
        subjects["Asian"],
        subjects["Non-Asian"],
    )
    assert table["p_fisher"].between(0, 1).all()
