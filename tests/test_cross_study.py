"""Paired comparisons of rows of two studies (``ethnicmer compare``)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ethnicmer.cli import app
from ethnicmer.errors import DataError
from ethnicmer.studies.comparisons import compare_rows
from ethnicmer.studies.cross_study import FAMILY, compare_studies, parse_ref

runner = CliRunner()


def _samples(n_subjects: int = 8, per_subject: int = 6) -> pd.DataFrame:
    rows = [
        ("casme2" if s % 2 else "samm", f"s{s:02d}", f"clip{k}", k % 3)
        for s in range(n_subjects)
        for k in range(per_subject)
    ]
    return pd.DataFrame(rows, columns=["dataset", "subject", "filename", "y_true"])


def _write_study(runs: Path, study: str, rows: dict[str, float], samples: pd.DataFrame) -> Path:
    """predictions.csv of ``study``: each row right with the given probability, seeds 0-2."""
    rng = np.random.default_rng(len(study))
    frames = []
    for name, accuracy in rows.items():
        for seed in range(3):
            right = rng.random(len(samples)) < accuracy
            wrong = (samples["y_true"] + rng.integers(1, 3, len(samples))) % 3
            frames.append(
                samples.assign(
                    seed=seed, y_pred=np.where(right, samples["y_true"], wrong), model=name
                )
            )
    out = runs / study / "benchmark"
    out.mkdir(parents=True)
    pd.concat(frames).to_csv(out / "predictions.csv", index=False)
    return runs / study


def test_cross_study_comparison_equals_the_in_study_test_and_counts_left_out(tmp_path: Path):
    samples = _samples()
    a = _write_study(tmp_path, "new", {"recipe": 0.8}, samples)
    # study "old" predicted one more sample (left out of the pair, and counted)
    extra = pd.DataFrame([("samm", "s00", "clipX", 1)], columns=samples.columns)
    b = _write_study(tmp_path, "old", {"paper": 0.6}, pd.concat([samples, extra]))
    table = compare_studies([(parse_ref(f"{a}:recipe"), parse_ref(f"{b}:paper"))], 200, 0)
    row = table.iloc[0]
    assert (row["a"], row["b"]) == ("new:recipe", "old:paper")
    assert (row["samples"], row["only_a"], row["only_b"], row["seeds"]) == (len(samples), 0, 1, 3)
    assert row["family"] == FAMILY and row["family_kind"] == "exploratory"
    # the same numbers as a study's own comparison of those predictions
    preds = {
        label: pd.read_csv(root / "benchmark" / "predictions.csv", dtype={"subject": str})
        for label, root in (("x", a), ("y", b))
    }
    keys = ["dataset", "subject", "filename"]
    index = pd.MultiIndex.from_frame(samples[keys])
    matrices = {
        label: np.stack(
            [p.set_index(keys)["y_pred"].reindex(index).to_numpy() for _, p in part.groupby("seed")]
        )
        for label, part in preds.items()
    }
    scored = samples.rename(columns={"y_true": "label_id"}).sort_values(keys)
    order = scored.index.to_numpy()
    matrices = {k: v[:, order] for k, v in matrices.items()}
    own = compare_rows(scored.reset_index(drop=True), matrices, [("x", "y")], 3, 200, 0).iloc[0]
    for column in ("difference", "ci_low", "ci_high", "p_permutation", "mde"):
        assert row[column] == pytest.approx(own[column])
    assert row["difference"] > 0


def test_cross_study_errors_name_the_row_and_what_differs(tmp_path: Path):
    samples = _samples(4, 3)
    a = _write_study(tmp_path, "a", {"r": 0.7}, samples)
    with pytest.raises(DataError, match=r"no row 'missing' \(rows: r\)"):
        compare_studies([(parse_ref(f"{a}:missing"), parse_ref(f"{a}:r"))])
    with pytest.raises(DataError, match="no benchmark predictions"):
        parse_ref(f"{tmp_path / 'nowhere'}:r")
    with pytest.raises(DataError, match="<run dir>:<row>"):
        parse_ref(str(a))
    relabelled = _write_study(
        tmp_path, "b", {"r": 0.7}, samples.assign(y_true=(samples.y_true + 1) % 3)
    )
    with pytest.raises(DataError, match=r"differently, e.g. .*not the same database"):
        compare_studies([(parse_ref(f"{a}:r"), parse_ref(f"{relabelled}:r"))])
    other = _write_study(tmp_path, "c", {"r": 0.7}, samples)
    path = other / "benchmark" / "predictions.csv"
    table = pd.read_csv(path)
    table[table["seed"] < 2].to_csv(path, index=False)
    with pytest.raises(DataError, match=r"c:r has \[0, 1\]: a paired comparison needs the same"):
        compare_studies([(parse_ref(f"{a}:r"), parse_ref(f"{other}:r"))])


def test_compare_cli_writes_the_table_and_refuses_an_odd_count(tmp_path: Path):
    samples = _samples(4, 3)
    a = _write_study(tmp_path, "a", {"r": 0.9, "s": 0.5}, samples)
    out = tmp_path / "cmp"
    result = runner.invoke(
        app, ["compare", f"{a}:r", f"{a}:s", "--out", str(out), "--resamples", "50"]
    )
    assert result.exit_code == 0, result.output
    assert "a:r − a:s: ΔMF1 +" in result.output and "BH p" in result.output
    assert len(pd.read_csv(out.with_suffix(".csv"))) == 1
    odd = runner.invoke(app, ["compare", f"{a}:r"])
    assert odd.exit_code == 2 and "pairs of rows" in odd.output
