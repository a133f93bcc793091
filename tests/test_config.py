from pathlib import Path

import pytest

from ethnicmer.config import load_config
from ethnicmer.errors import ConfigError
from tests.conftest import write_config


def test_env_vars_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MY_DATA", "/data/here")
    path = write_config(
        tmp_path,
        {"study": "s", "data": {"sources": [{"kind": "megc2019_flow", "root": "${MY_DATA}/megc"}]}},
    )
    cfg = load_config(path)
    assert cfg.data.sources[0].root == Path("/data/here/megc")
    assert cfg.run_dir == tmp_path / "runs" / "s"


def test_unset_env_var_names_variable_key_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    path = write_config(
        tmp_path,
        {
            "study": "s",
            "data": {"sources": [{"kind": "megc2019_flow", "root": "${NOPE_NOT_SET}/x"}]},
        },
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "NOPE_NOT_SET" in message and "data.sources.0.root" in message and str(path) in message


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path: Path):
    path = write_config(
        tmp_path,
        {
            "study": "s",
            "data": {"sources": [{"kind": "casme2", "sheet": "a.xlsx", "frame": "typo"}]},
        },
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "data.sources.0.casme2.frame: unknown key" in str(info.value)
    assert str(path) in str(info.value)


def test_wrong_type_is_an_error(tmp_path: Path):
    path = write_config(
        tmp_path,
        {"study": "s", "seed": "abc", "data": {"sources": [{"kind": "samm", "sheet": "a.xlsx"}]}},
    )
    with pytest.raises(ConfigError, match="seed"):
        load_config(path)


def test_unknown_stage_is_an_error(tmp_path: Path):
    path = write_config(
        tmp_path,
        {
            "study": "s",
            "data": {"sources": [{"kind": "samm", "sheet": "a.xlsx"}]},
            "stages": {"bogus": {}},
        },
    )
    with pytest.raises(ConfigError, match=r"stages\.bogus: unknown key"):
        load_config(path)


def test_grouping_must_cover_every_race(tmp_path: Path):
    path = write_config(
        tmp_path,
        {
            "study": "s",
            "data": {
                "sources": [{"kind": "samm", "sheet": "a.xlsx"}],
                "demographics": {"grouping": {"White": "A", "Black": "A", "Asian": "B"}},
            },
        },
    )
    with pytest.raises(ConfigError, match="missing: \\['Indian', 'Others'\\]"):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_validate(monkeypatch: pytest.MonkeyPatch):
    for variable in ("ETHNICMER_REAL_DATA", "CASME2_ROOT", "SAMM_ROOT"):
        monkeypatch.setenv(variable, "/somewhere")
    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert "demo.yaml" in names and "megc2019-flow.yaml" in names
    for path in root.glob("*.yaml"):
        assert load_config(path).study
