"""The prima facie study (paper Table IV) with repeated draws and the transfer protocol."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ethnicmer.cli import app
from ethnicmer.errors import ConfigError
from ethnicmer.studies.prima_facie import draw_scenarios
from tests.conftest import write_config

runner = CliRunner()
GROUPS = ("Asian", "Non-Asian")


def test_draws_have_the_right_sizes_and_mix():
    pools = {
        "Asian": [f"casme2/sub{i:02d}" for i in range(1, 31)],
        "Non-Asian": [f"samm/{i:03d}" for i in range(6, 23)],
    }
    rng = np.random.default_rng(0)
    draw = draw_scenarios(pools, 16, rng, GROUPS)
    assert len(draw["Asian"]) == len(set(draw["Asian"])) == 16 and set(draw["Asian"]) <= set(
        pools["Asian"]
    )
    assert len(draw["Non-Asian"]) == 16 and set(draw["Non-Asian"]) <= set(pools["Non-Asian"])
    mixed = draw["Mixed"]
    assert (
        sum(s.startswith("casme2") for s in mixed) == 8
        and sum(s.startswith("samm") for s in mixed) == 8
    )
    again = draw_scenarios(pools, 16, np.random.default_rng(0), GROUPS)
    assert again == draw  # seeded


def test_too_few_subjects_says_how_many_exist():
    pools = {"Asian": ["a/1", "a/2", "a/3"], "Non-Asian": ["b/1", "b/2"]}
    with pytest.raises(ConfigError, match="the Non-Asian group has 2 subjects; a scenario needs 3"):
        draw_scenarios(pools, 3, np.random.default_rng(0), GROUPS)


def _config(tmp_path: Path, root: Path, **settings: object) -> Path:
    prima = {
        "subjects": 2,
        "draws": 3,
        "feature_size": 32,
        "n_estimators": 20,
        "permutations": 9,
        "null_draws": 1,
        **settings,
    }
    payload = {
        "study": "pf",
        "seed": 1,
        "data": {"sources": [{"kind": "megc2019_flow", "root": str(root)}]},
        "stages": {"prima_facie": prima},
    }
    return write_config(tmp_path, payload)


def test_tiny_prima_facie(tiny_megc: Path, tmp_path: Path):
    result = runner.invoke(app, ["prima-facie", str(_config(tmp_path, tiny_megc)), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["train/test data"] for r in payload["table4"]] == ["Asian", "Non-Asian", "Mixed"]
    assert [r["draws"] for r in payload["summary"]] == [3, 3, 3]
    assert {t["comparison"] for t in payload["tests"]} == {"Mixed - Asian", "Mixed - Non-Asian"}
    assert all(0 < t["p"] <= t["p_adjusted"] <= 1 for t in payload["tests"])
    assert {t["family_kind"] for t in payload["tests"]} == {"confirmatory"}
    assert all(t["null replicates"] == 9 and t["mde"] > 0 for t in payload["tests"])
    assert {(t["train"], t["test"]) for t in payload["transfer"]} == {
        ("Asian", "Non-Asian"),
        ("Non-Asian", "Asian"),
    }
    out = tmp_path / "runs" / "pf" / "prima_facie"
    draws = pd.read_csv(out / "draws.csv")
    assert len(draws) == 9 and draws["average"].between(0, 1).all()
    assert (out / "scores.png").stat().st_size > 5000
    # the same config and seed give the same numbers
    again = runner.invoke(
        app, ["prima-facie", str(_config(tmp_path / "again", tiny_megc)), "--json"]
    )
    assert json.loads(again.stdout)["summary"] == payload["summary"]


def test_the_null_does_not_depend_on_the_number_of_draws(tiny_megc: Path, tmp_path: Path):
    """Draws are resamples of one pool: more of them must not make the test sharper."""
    nulls = []
    for draws in (2, 6):
        path = _config(tmp_path / str(draws), tiny_megc, draws=draws, transfer=False)
        result = runner.invoke(app, ["prima-facie", str(path), "--json"])
        assert result.exit_code == 0, result.output
        nulls.append(
            pd.read_csv(tmp_path / str(draws) / "runs" / "pf" / "prima_facie" / "null.csv")
        )
    pd.testing.assert_frame_equal(nulls[0], nulls[1])


def test_dataset_matched_design(tiny_megc: Path, tmp_path: Path):
    # tiny_megc's SAMM subjects: 006, 007 Non-Asian; 012 Asian -> at most 1 per scenario
    bad = runner.invoke(
        app, ["prima-facie", str(_config(tmp_path, tiny_megc, matched_dataset="samm", draws=1))]
    )
    assert (
        bad.exit_code == 2
        and "at most 1 subjects per scenario (Asian 1, Non-Asian 2)" in bad.stderr
    )
    casme = runner.invoke(
        app,
        ["prima-facie", str(_config(tmp_path / "c", tiny_megc, matched_dataset="casme2", draws=1))],
    )
    assert casme.exit_code == 2 and "Non-Asian 0" in casme.stderr


def test_svc_option(tiny_megc: Path, tmp_path: Path):
    result = runner.invoke(
        app,
        [
            "prima-facie",
            str(_config(tmp_path, tiny_megc, classifier="svc", draws=1, transfer=False)),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["transfer"] == []


def test_real_prima_facie_and_the_within_samm_design(real_data: Path, tmp_path: Path):
    """Table IV on the real flows (two draws), and the dataset-matched control: SAMM
    has 11 Asian and 17 Non-Asian subjects."""
    payload = {
        "study": "pf-samm",
        "data": {"sources": [{"kind": "megc2019_flow", "root": str(real_data / "megc2019-flow")}]},
        "stages": {
            "prima_facie": {
                "draws": 2,
                "n_estimators": 50,
                "permutations": 1,
                "null_draws": 1,
                "transfer": False,
                "matched_dataset": "samm",
            }
        },
    }
    result = runner.invoke(app, ["prima-facie", str(write_config(tmp_path, payload)), "--json"])
    assert result.exit_code == 0, result.output
    table4 = json.loads(result.stdout)["table4"]
    assert [r["samples"] > 50 for r in table4] == [True, True, True]
    assert all(0 <= r["Average"] <= 1 for r in table4)
    matched = json.loads(result.stdout)["matched"]
    assert (matched["dataset"], matched["subjects"], matched["maximum"]) == ("samm", 11, 11)
    assert [r["train/test data"] for r in matched["table4"]] == ["Asian", "Non-Asian", "Mixed"]
