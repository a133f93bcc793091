"""The statistics layer (issue 16): units, families, detectable effects, and its validation.

The moved tests of the four former resampling implementations live here, beside
checks of the layer itself on synthetic data with subject random effects: with no
effect the tests reject at about the nominal 5 %, and with an effect equal to the
minimum detectable effect they reject about 80 % of the time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, recall_score
from statsmodels.stats.multitest import multipletests

from ethnicmer.evaluation.decoding import decoding_scores
from ethnicmer.explain.attribution import attribute
from ethnicmer.stats.classification import (
    macro_f1_from_counts,
    paired_comparison,
    score_interval,
    subject_confusions,
    uar_from_counts,
)
from ethnicmer.stats.effects import observations, recognition_effects
from ethnicmer.stats.fairness import fairlearn_check, fairness_table
from ethnicmer.stats.groups import compare_groups, stratified_effect
from ethnicmer.stats.multiple import add_family, adjust
from ethnicmer.stats.power import minimum_detectable_effect
from ethnicmer.stats.resampling import (
    bootstrap_weights,
    p_value,
    permuted_labels,
    seed_weights,
    subjects_of,
)

# --- resampling primitives -------------------------------------------------------------


def test_bootstrap_keeps_each_stratum_size_and_is_seeded():
    subjects = subjects_of(
        np.repeat([f"s{i}" for i in range(10)], 3), np.repeat([0] * 4 + [1] * 6, 3)
    )
    weights = bootstrap_weights(subjects, 200, seed=3)
    assert weights.shape == (200, 10)
    assert (weights[:, :4].sum(axis=1) == 4).all() and (weights[:, 4:].sum(axis=1) == 6).all()
    np.testing.assert_array_equal(weights, bootstrap_weights(subjects, 200, seed=3))
    assert not np.array_equal(weights, bootstrap_weights(subjects, 200, seed=4))
    seeds = seed_weights(3, 50, seed=0)
    assert np.allclose(seeds.sum(axis=1), 1) and seed_weights(1, 5, 0).tolist() == [[1.0]] * 5


def test_permutations_stay_within_strata_and_p_has_the_plus_one():
    labels = np.array(["a", "a", "b", "b", "a", "b"])
    strata = np.array([0, 0, 0, 1, 1, 1])
    shuffled = permuted_labels(labels, strata, 100, seed=0)
    for row in shuffled:
        assert sorted(row[:3]) == ["a", "a", "b"] and sorted(row[3:]) == ["a", "b", "b"]
    assert p_value(5.0, np.zeros(99)) == pytest.approx(0.01)
    assert p_value(0.0, np.zeros(99)) == 1.0
    assert p_value(1.0, np.array([2.0, -2.0, 0.0]), "greater") == pytest.approx(0.5)


def test_subject_weighted_by_strata_error():
    with pytest.raises(ValueError, match="lies in strata"):
        subjects_of(np.array(["s1", "s1"]), np.array(["casme2", "samm"]))


# --- classification scores from confusion counts ---------------------------------------------


def test_counts_give_sklearns_macro_f1_and_uar():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    subjects = subjects_of(np.repeat(np.arange(30), 10).astype(str))
    total = subject_confusions(y, p, subjects, 3).sum(axis=0)
    assert macro_f1_from_counts(total) == pytest.approx(f1_score(y, p, average="macro"))
    assert uar_from_counts(total) == pytest.approx(recall_score(y, p, average="macro"))
    absent = subject_confusions(
        np.array([0, 1]), np.array([0, 2]), subjects_of(np.array(["a", "b"])), 3
    )
    assert macro_f1_from_counts(absent.sum(axis=0)) == pytest.approx(0.5)  # Surprise absent


def test_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    subjects = subjects_of(np.repeat(np.arange(30), 10).astype(str))
    interval = score_interval(y, p[None], subjects, 3, 300, seed=0)
    assert interval.low < f1_score(y, p, average="macro") < interval.high
    assert interval.high - interval.low < 0.3 and interval.se > 0


def test_paired_comparison():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    subjects = subjects_of(np.repeat(np.arange(40), 10).astype(str))
    good = np.where(rng.random(400) < 0.9, y, rng.integers(0, 3, 400))
    bad = np.where(rng.random(400) < 0.3, y, rng.integers(0, 3, 400))
    same = paired_comparison(y, good[None], good[None], subjects, 3, 200, seed=0)
    assert same.difference == 0 and same.p_value == 1.0
    clear = paired_comparison(y, good[None], bad[None], subjects, 3, 200, seed=0)
    assert clear.difference > 0.3 and clear.ci_low > 0 and clear.p_value < 0.01
    # the MDE is the swap test's own sensitivity (its null spread), well below this gap
    assert 0 < clear.mde < clear.difference and same.mde == 0
    two_seeds = paired_comparison(
        y, np.stack([good, good]), np.stack([bad, good]), subjects, 3, 100, 0
    )
    assert two_seeds.n_seeds == 2 and two_seeds.difference == pytest.approx(clear.difference / 2)
    assert two_seeds.seed_differences[1] == 0


def test_minimum_detectable_effect_factor():
    assert minimum_detectable_effect(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    # few subjects: t quantiles (22 degrees of freedom: 2.074 + 0.858)
    assert minimum_detectable_effect(1.0, df=22) == pytest.approx(2.0739 + 0.8583, abs=1e-3)
    assert np.isnan(minimum_detectable_effect(1.0, df=0))


def test_wald_mde_uses_the_spread_under_the_alternative():
    from ethnicmer.stats.power import wald_mde, wald_mde_by_direction

    # a constant SE: the usual (q_test + q_power) · se
    assert wald_mde(lambda d: 0.5, df=20) == pytest.approx(
        minimum_detectable_effect(0.5, df=20), abs=1e-6
    )
    # an SE that grows with |δ| (a log odds ratio moving a rate towards 1): larger,
    # and exactly where |δ| = q_test · se(0) + q_power · se(δ)
    growing = lambda d: 0.5 * (1 + 0.2 * abs(d))  # noqa: E731
    mde = wald_mde(growing, df=20)
    from scipy.stats import t

    assert mde > minimum_detectable_effect(0.5, df=20)
    assert mde == pytest.approx(t.ppf(0.975, 20) * 0.5 + t.ppf(0.8, 20) * growing(mde), abs=1e-6)
    # each direction its own; wald_mde the larger of the two
    lopsided = lambda d: 0.5 * (1 + 0.2 * max(d, 0.0))  # noqa: E731
    up, down = wald_mde_by_direction(lopsided, df=20)
    assert up == pytest.approx(mde, abs=1e-6)
    assert down == pytest.approx(minimum_detectable_effect(0.5, df=20), abs=1e-6)
    assert wald_mde(lopsided, df=20) == pytest.approx(mde, abs=1e-6)
    # a spread that outgrows every effect (separation) one way: not detectable that way
    assert wald_mde_by_direction(lambda d: 0.5 * np.exp(max(d, 0.0)), df=20)[0] == float("inf")
    assert wald_mde(lambda d: 0.5 * np.exp(abs(d)), df=20) == float("inf")
    assert np.isnan(wald_mde(lambda d: 0.5, df=0))
    assert np.isnan(wald_mde(lambda d: 0.0, df=20))  # no spread: no test


def test_detectable_odds_ratios_sentence():
    from ethnicmer.report.findings import detectable_odds_ratios

    assert detectable_odds_ratios({"mde": 2.5, "mde_below": 0.3}) == (
        "an odds ratio ≥ 2.50 or ≤ 0.30"
    )
    assert detectable_odds_ratios({"mde": None, "mde_below": 0.3}) == (
        "an odds ratio ≤ 0.30 but none above 1 (up to 22,026)"
    )
    assert detectable_odds_ratios({"mde": 2.0}) == "an odds ratio ≥ 2.00 or ≤ 0.50"
    # exp(-inf) = 0: no detectable size below 1
    assert detectable_odds_ratios({"mde": 2.0, "mde_below": 0.0}) == (
        "an odds ratio ≥ 2.00 but none below 1 (down to 1/22,026)"
    )


# --- families -----------------------------------------------------------------------


def test_families_adjust_within_themselves():
    p = np.array([0.01, 0.02, 0.04, np.nan])
    np.testing.assert_allclose(
        adjust(p, "confirmatory")[:3], multipletests(p[:3], method="holm")[1]
    )
    np.testing.assert_allclose(
        adjust(p, "exploratory")[:3], multipletests(p[:3], method="fdr_bh")[1]
    )
    assert np.isnan(adjust(p, "confirmatory")[3])
    table = pd.DataFrame({"p": [0.01, 0.02, 0.03, 0.5]})
    table = add_family(
        table,
        "p",
        pd.Series(["A", "A", "B", "B"]),
        pd.Series(["confirmatory"] * 2 + ["exploratory"] * 2),
    )
    assert table["family_size"].tolist() == [2, 2, 2, 2]
    assert table["p_adjusted"].tolist() == pytest.approx([0.02, 0.02, 0.06, 0.5])
    with pytest.raises(ValueError, match="mixes kinds"):
        add_family(table, "p", "X", pd.Series(["confirmatory", "exploratory"] * 2))


# --- groups of subjects (moved from test_activation_maps) -----------------------------------


def test_compare_groups_uses_subjects_as_the_unit() -> None:
    rng = np.random.default_rng(1)
    rows = [
        (f"s{s}", "A" if s < 8 else "B", rng.normal(1.0 if s < 8 else 0.0, 0.3))
        for s in range(16)
        for _ in range(5)
    ]
    frame = pd.DataFrame(rows, columns=["subject_id", "group", "value"])
    result = compare_groups(frame, "A", "B", 2000, 1000, 0)
    assert result["subjects_a"] == 8 and result["samples_a"] == 40
    assert result["p_permutation"] < 0.01 and result["ci_low"] > 0.5
    # the MDE: analytic SE of the difference of subject means, t quantiles (14 df)
    means = frame.groupby(["subject_id", "group"])["value"].mean().groupby("group")
    se = float(np.sqrt((means.var() / means.count()).sum()))
    assert result["mde"] == pytest.approx(minimum_detectable_effect(se, df=14))
    assert result["se"] == pytest.approx(se, rel=0.15)  # the bootstrap's, for the interval
    frame["value"] = rng.normal(0, 1, len(frame))
    assert compare_groups(frame, "A", "B", 2000, 1000, 0)["p_permutation"] > 0.05
    small = frame[frame["subject_id"].isin(["s0", "s8", "s9"])]
    assert "not tested" in compare_groups(small, "A", "B", 200, 200, 0)["note"]


def _crossed(effect_of: str, seed: int = 0) -> pd.DataFrame:
    """24 subjects, both groups in both datasets; a shift of 1 follows ``effect_of``."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(24):
        dataset, group = ("casme2" if s < 12 else "samm"), ("Asian" if s % 2 else "Non-Asian")
        shift = {"ethnicity": group == "Asian", "dataset": dataset == "casme2"}.get(effect_of, 0)
        for _ in range(3):
            rows.append((dataset, f"s{s}", group, "Surprise", rng.normal(float(shift), 0.4)))
    return pd.DataFrame(rows, columns=["dataset", "subject", "ethnicity", "label", "m"])


@pytest.mark.parametrize("effect_of", ["ethnicity", "dataset", "nothing"])
def test_attribution_names_the_variable_that_carries_the_effect(effect_of: str) -> None:
    table = attribute(_crossed(effect_of), ["m"], "label", 2000, 0, 0.05, bootstrap=200)
    row = table.iloc[0]
    assert row["ethnicity_strata"] == "casme2,samm" and row["dataset_strata"] == "Asian,Non-Asian"
    assert row["attribution"] == {"nothing": "neither"}.get(effect_of, effect_of)
    if effect_of == "ethnicity":
        assert row["ethnicity_effect"] == pytest.approx(1.0, abs=0.3)
    if effect_of == "dataset":
        assert row["dataset_effect"] == pytest.approx(1.0, abs=0.3)
    assert row["ethnicity_mde"] > 0 and row["dataset_mde"] > 0


def test_attribution_on_the_real_layout_says_what_cannot_be_separated() -> None:
    # CASME II holds Asian subjects only: ethnicity varies within SAMM alone
    frame = _crossed("dataset")
    frame = frame[~((frame["dataset"] == "casme2") & (frame["ethnicity"] == "Non-Asian"))]
    row = attribute(frame, ["m"], "label", 2000, 0, 0.05).iloc[0]
    assert row["ethnicity_strata"] == "samm" and row["dataset_strata"] == "Asian"
    assert row["attribution"] == "dataset"
    one_dataset = frame[frame["dataset"] == "casme2"]
    assert attribute(one_dataset, ["m"], "label", 200, 0, 0.05).empty
    verdict = stratified_effect(
        frame[frame["ethnicity"] == "Asian"].assign(subject_id=lambda f: f["subject"], value=1.0),
        "ethnicity",
        "dataset",
        "Asian",
        "Non-Asian",
        100,
        0,
    )
    assert np.isnan(verdict["effect"]) and "not separable" in verdict["note"]


def test_context_decoding_is_tested_over_subjects():
    rng = np.random.default_rng(0)
    rows = []
    for s in range(16):
        label = s % 2
        for _ in range(4):
            rows.append((f"s{s}", label, label if rng.random() < 0.9 else 1 - label))
    frame = pd.DataFrame(rows, columns=["subject_id", "context_true", "context_pred"])
    decoded = decoding_scores(frame, 500, 0)
    assert decoded["balanced_accuracy"] > 0.8 and decoded["p_permutation"] < 0.01
    # detectable rise above chance: 2.49 null SDs; 16 subjects of 4 samples, SD ~0.12
    assert 0.15 < decoded["mde_over_chance"] < 0.5
    frame["context_pred"] = rng.integers(0, 2, len(frame))
    assert decoding_scores(frame, 500, 0)["p_permutation"] > 0.05
    one_class = frame[frame["context_true"] == 0]
    assert "one class" in decoding_scores(one_class, 10, 0)["note"]


# --- fairness and effects -------------------------------------------------------------------


def _predictions(n_subjects: int, seeds: int, rng: np.random.Generator, group_effect: float = 0.0):
    """Synthetic predictions with subject random effects: two rows, two datasets, two groups."""
    rows = []
    for s in range(n_subjects):
        dataset = "casme2" if s < n_subjects // 2 else "samm"
        group = "Asian" if (dataset == "casme2" or s % 2) else "Non-Asian"
        ability = rng.normal(0.0, 0.8)
        for k in range(6):
            truth = int(rng.integers(0, 3))
            for model in ("a", "b"):
                for seed in range(seeds):
                    logit = 0.5 + ability + (group_effect if group == "Non-Asian" else 0.0)
                    correct = rng.random() < 1 / (1 + np.exp(-logit))
                    pred = truth if correct else int((truth + 1 + rng.integers(0, 2)) % 3)
                    logits = np.full(3, -1.0)
                    logits[pred] = 1.0
                    rows.append(
                        {
                            "model": model,
                            "seed": seed,
                            "dataset": dataset,
                            "subject": f"{s:03d}",
                            "filename": f"f{k}",
                            "y_true": truth,
                            "y_pred": pred,
                            **{f"logit_{j}": logits[j] for j in range(3)},
                            "ethnicity": group,
                            "label": ["Negative", "Positive", "Surprise"][truth],
                        }
                    )
    frame = pd.DataFrame(rows)
    samples = frame.drop_duplicates(["dataset", "subject", "filename"])[
        ["dataset", "subject", "filename", "ethnicity", "label"]
    ]
    return frame.drop(columns=["ethnicity", "label"]), samples


def test_fairness_gaps_match_fairlearn():
    rng = np.random.default_rng(5)
    predictions, samples = _predictions(24, 1, rng)
    part = predictions[predictions["model"] == "a"].merge(
        samples, on=["dataset", "subject", "filename"]
    )
    ids = (part["dataset"] + "/" + part["subject"]).to_numpy()
    table = fairness_table(
        part["y_true"].to_numpy(),
        part["y_pred"].to_numpy()[None],
        ids,
        part["ethnicity"].to_numpy(),
        ["Negative", "Positive", "Surprise"],
        200,
        0,
    )
    check = fairlearn_check(
        part["y_true"], part["y_pred"], part["ethnicity"], ["Negative", "Positive", "Surprise"]
    )
    gaps = table[table["group"] == "(gap)"].set_index(["metric", "class"])["value"]
    for key, value in check.items():
        metric, name = key.rsplit("_", 1)
        assert gaps[(metric, name)] == pytest.approx(value), key
    # the MetricFrame point estimates and the confusion-count path of the bootstrap agree
    from ethnicmer.stats.fairness import _metrics

    names = sorted(part["ethnicity"].unique())
    totals = np.zeros((len(names), 3, 3))
    for h, name in enumerate(names):
        rows = part[part["ethnicity"] == name]
        np.add.at(totals[h], (rows["y_true"].to_numpy(), rows["y_pred"].to_numpy()), 1)
    by_counts = _metrics(totals, ["Negative", "Positive", "Surprise"])
    indexed = table.set_index(["group", "metric", "class"])["value"]
    for (kind, metric, name), value in by_counts.items():
        expected = [float(value)] if kind == "gap" else list(value)
        keys = ["(gap)"] if kind == "gap" else names
        for group, number in zip(keys, expected, strict=True):
            assert indexed[(group, metric, name)] == pytest.approx(number, nan_ok=True)
    intervals = table.dropna(subset=["ci_low"])
    assert (
        (intervals["ci_low"] <= intervals["value"] + 1e-9)
        & (intervals["value"] <= intervals["ci_high"] + 1e-9)
    ).mean() > 0.9


def test_effects_say_what_the_design_cannot_estimate():
    rng = np.random.default_rng(6)
    predictions, samples = _predictions(24, 2, rng)
    effects = recognition_effects(
        observations(predictions, samples), [("b", "a")], ("Asian", "Non-Asian")
    )
    eth = effects[
        (effects["effect"] == "ethnicity within dataset") & (effects["outcome"] == "correct")
    ].iloc[0]
    assert eth["strata"] == "samm" and 0 < eth["estimate"] and eth["mde"] > 1
    assert 0 < eth["mde_below"] < 1
    # every CASME II subject Asian and every SAMM subject Non-Asian: not separable
    separated = samples.assign(
        ethnicity=np.where(samples["dataset"] == "casme2", "Asian", "Non-Asian")
    )
    effects = recognition_effects(
        observations(predictions, separated), [("b", "a")], ("Asian", "Non-Asian")
    )
    eth = effects[
        (effects["effect"] == "ethnicity within dataset") & (effects["outcome"] == "correct")
    ].iloc[0]
    assert "not estimable" in eth["note"] and np.isnan(eth["estimate"])
    interaction = effects[effects["effect"] == "row × ethnicity"].iloc[0]
    assert "not estimable" in interaction["note"]
    # a third dataset with both groups (SMIC with user-supplied demographics) is a further
    # stratum of the ethnicity effect and a further level of the dataset effect
    third = samples.copy()
    third.loc[third["subject"].isin([f"{s:03d}" for s in range(6)]), "dataset"] = "smic"
    third.loc[third["subject"].isin([f"{s:03d}" for s in range(4)]), "ethnicity"] = "Non-Asian"
    moved = predictions.merge(third[["subject", "filename", "dataset"]], on=["subject", "filename"])
    moved = moved.drop(columns="dataset_x").rename(columns={"dataset_y": "dataset"})
    effects = recognition_effects(observations(moved, third), [], ("Asian", "Non-Asian"))
    correct = effects[effects["outcome"] == "correct"].set_index("effect")
    assert correct.loc["ethnicity within dataset", "strata"] == "samm,smic"
    dataset_rows = effects[(effects["effect"] == "dataset within ethnicity")]
    assert set(dataset_rows["comparison"]) == {"samm vs casme2", "smic vs casme2"}


# --- validation: type-I error and power on synthetic data with subject effects ---------------

REPLICATES = 500


def _subject_values(rng: np.random.Generator, shift: float) -> pd.DataFrame:
    """20 + 20 subjects with 4 samples each, subject random effect sd 1, noise sd 1."""
    rows = []
    for s in range(40):
        group = "A" if s < 20 else "B"
        centre = rng.normal(shift if group == "A" else 0.0, 1.0)
        rows += [(f"s{s}", group, centre + rng.normal(0, 1.0)) for _ in range(4)]
    return pd.DataFrame(rows, columns=["subject_id", "group", "value"])


def test_group_test_holds_its_level_and_power_matches_the_mde():
    rng = np.random.default_rng(11)
    null = [
        compare_groups(_subject_values(rng, 0.0), "A", "B", 199, 199, i) for i in range(REPLICATES)
    ]
    rejected = np.mean([r["p_permutation"] < 0.05 for r in null])
    assert rejected <= 0.06 + 0.02, rejected  # 500 replicates: 2 binomial SE around 5 %
    mde = float(np.median([r["mde"] for r in null]))
    planted = [
        compare_groups(_subject_values(rng, mde), "A", "B", 199, 199, i)
        for i in range(REPLICATES // 2)
    ]
    power = np.mean([r["p_permutation"] < 0.05 for r in planted])
    assert abs(power - 0.80) <= 0.10, (power, mde)


def test_paired_comparison_holds_its_level_with_subject_effects():
    rng = np.random.default_rng(12)
    subjects = subjects_of(np.repeat(np.arange(30), 8).astype(str))
    rejected = []
    for i in range(REPLICATES):
        ability = np.repeat(rng.normal(0.8, 0.8, 30), 8)
        y = rng.integers(0, 3, 240)
        preds = []
        for _ in range(2):  # two exchangeable configurations, two seeds each
            correct = rng.random((2, 240)) < 1 / (1 + np.exp(-ability))
            preds.append(np.where(correct, y, (y + 1 + rng.integers(0, 2, (2, 240))) % 3))
        result = paired_comparison(y, preds[0], preds[1], subjects, 3, 199, i)
        rejected.append(result.p_value < 0.05)
    assert np.mean(rejected) <= 0.08, np.mean(rejected)


def test_gee_holds_its_level_with_subject_effects():
    rng = np.random.default_rng(13)
    rejected = []
    for _ in range(120):
        predictions, samples = _predictions(24, 1, rng)
        effects = recognition_effects(
            observations(predictions, samples), [], ("Asian", "Non-Asian"), outcomes=("correct",)
        )
        eth = effects[effects["effect"] == "ethnicity within dataset"].iloc[0]
        rejected.append(eth["p"] < 0.05)
    assert np.mean(rejected) <= 0.10, np.mean(rejected)  # 120 replicates: see benchmarks/ for 500


def test_gee_standard_error_under_the_alternative():
    from ethnicmer.stats.effects import _binomial_se_at, _fit

    rng = np.random.default_rng(14)
    predictions, samples = _predictions(24, 1, rng)
    frame = observations(predictions, samples)
    result = _fit(frame, "C(label) + C(ethnicity, Treatment('Non-Asian'))", "correct")
    name = "C(ethnicity, Treatment('Non-Asian'))[T.Asian]"
    se_at = _binomial_se_at(result, name)
    # the SE at δ scales the robust SE by statsmodels' own model-based variance
    # (exchangeable, logit) evaluated with the term set to δ
    index = list(result.params.index).index(name)
    assert se_at(float(result.params[name])) == pytest.approx(float(result.bse[name]))
    moved = result.params.to_numpy().copy()
    moved[index] = 2.0
    at_two = result.model.fit(start_params=moved, maxiter=0, cov_type="bias_reduced")
    ratio = np.asarray(at_two.cov_naive)[index, index] / np.asarray(result.cov_naive)[index, index]
    assert se_at(2.0) == pytest.approx(float(result.bse[name]) * np.sqrt(ratio), rel=1e-6)
    # an odds ratio of e^4 pushes the rate towards 1, where each sample says less
    assert se_at(4.0) > 1.5 * se_at(0.0)


def test_a_declared_exploratory_benchmark_labels_every_pair_exploratory():
    from ethnicmer.studies.comparisons import compare_rows

    rng = np.random.default_rng(8)
    scored = pd.DataFrame(
        {
            "dataset": np.repeat(["casme2", "samm"], 30),
            "subject": np.repeat([f"s{i}" for i in range(12)], 5),
            "label_id": rng.integers(0, 3, size=60),
        }
    )
    matrices = {name: rng.integers(0, 3, size=(3, 60)) for name in ("a", "b", "c")}
    matrices["c"][:, :5] = -1  # row c did not test subject s0 (e.g. no label)
    pairs = [("a", "b"), ("c", "b")]
    confirmatory = compare_rows(scored, matrices, pairs, 3, 50, 0)
    assert confirmatory["samples"].tolist() == [60, 55]
    assert confirmatory["subjects"].tolist() == [12, 11]
    assert set(confirmatory["family_kind"]) == {"confirmatory"}
    assert set(confirmatory["family"]) == {"Table V pairs"}
    declared = compare_rows(scored, matrices, pairs, 3, 50, 0, exploratory=True)
    assert set(declared["family_kind"]) == {"exploratory"}
    assert set(declared["family"]) == {"Table V pairs (exploratory study)"}
    assert declared["evidence"].str.endswith("exploratory study (benchmark.purpose)").all()
    np.testing.assert_allclose(declared["p_permutation"], confirmatory["p_permutation"])


def test_colour_alone_decodes_a_colour_confound_and_not_after_greyscale(tmp_path):
    """Group 1's crops are colour, group 0's grey (the MEGC2019 SAMM/CASME II layout)."""
    from PIL import Image

    from ethnicmer.evaluation.colour import colour_decoding, colour_statistics

    rng = np.random.default_rng(1)
    rows, labels = [], []
    for s in range(12):
        colour = s % 2 == 1
        for k in range(3):
            base = rng.integers(60, 200, size=(16, 16, 1)).astype(np.uint8)
            image = np.repeat(base, 3, axis=2)
            if colour:  # a warm cast of (almost) the same luminance (ITU-R 601)
                image[..., 0] += 40
                image[..., 1] -= 20
            path = tmp_path / f"s{s}_{k}.png"
            Image.fromarray(image).save(path)
            rows.append({"dataset": "d", "subject": f"s{s}", "apex_crop_path": str(path)})
            labels.append(int(colour))
    samples = pd.DataFrame(rows)
    labels = np.array(labels)
    assert colour_statistics(rows[3]["apex_crop_path"], grey=False)[6] > 0.05  # saturated
    assert colour_statistics(rows[3]["apex_crop_path"], grey=True)[6] == 0.0  # grey: none
    raw = colour_decoding(samples, labels, grey=False, permutations=200, seed=0)[0]
    grey = colour_decoding(samples, labels, grey=True, permutations=200, seed=0)[0]
    assert raw["balanced_accuracy"] == 1.0 and raw["p_permutation"] < 0.01
    assert grey["balanced_accuracy"] < 0.8 and grey["p_permutation"] > 0.05


def test_coded_au_difference_comes_with_its_detectable_size():
    from ethnicmer.stats.power import proportion_difference_mde

    # 8 vs 8 subjects: a difference of shares must be large to be detectable
    assert 0.6 < proportion_difference_mde((0.5, 0.5), (8, 8)) < 0.75
    assert proportion_difference_mde((0.5, 0.5), (80, 80)) < 0.25
    assert np.isnan(proportion_difference_mde((0.5, 0.5), (0, 8)))
    assert proportion_difference_mde((0.0, 0.0), (8, 8)) == proportion_difference_mde(
        (0.5, 0.5), (8, 8)
    )
