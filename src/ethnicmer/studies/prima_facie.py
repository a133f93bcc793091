"""The prima facie study (paper III-B, IV-A, Table IV) as a measurement with uncertainty.

Three scenarios of ``subjects`` subjects (16 in the paper) drawn from the
composite database: Asian-only, Non-Asian-only and Mixed (half and half). Labels
are Negative vs Non-negative. Off-the-shelf frozen-backbone features of the flow
images feed a random forest (paper; SVC with C = 100 as in the published code is
an option), evaluated by LOSO within each scenario; F1 per class and their
average on predictions concatenated over folds.

The paper reports one random draw. We repeat the draw R times (``draws``; R = 1
is the paper's design) and report draw 1 as Table IV, the mean and 95 % interval
over draws, the class balance per scenario, and whether Mixed differs from each
mono-ethnic scenario. The interval over draws measures how much the result
depends on which subjects were drawn; it is not a confidence interval for a
population of subjects, and draws are not independent replicates (they are
overlapping resamples of one fixed pool of subjects), so no p-value counts them.

The test of Mixed against each mono-ethnic scenario takes its null from the
subjects: the statistic is the mean over draws of Mixed − mono; each of
``permutations`` null replicates relabels ethnicity across subjects within each
dataset (:func:`ethnicmer.stats.resampling.permuted_labels`), re-draws
``null_draws`` scenario sets from the relabelled pools and recomputes the
statistic; ``p = (1 + #{|T*| ≥ |T|}) / (1 + B)``. More draws make the observed
statistic less noisy but leave the null as it is, so the p-value does not shrink
as ``draws`` grows (with ``null_draws`` < ``draws`` the test is conservative).
The two tests form the confirmatory family of Table IV (Holm). The minimum
detectable difference is 2.8 × the standard deviation of the null.

Note: the Non-Asian pool has 17 subjects in the
MEGC2019 composite set, so 16-subject Non-Asian draws barely vary, and in that
set every CASME II subject is Asian: read these scenarios against the dataset.

Cross-ethnicity transfer (beyond the paper): per draw, train on the scenario's
subjects of one group and test on the other group's subjects (equal counts); the
reference is LOSO within the test group's subjects. The drop is reference −
transfer, with its interval over draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.svm import SVC

from ethnicmer.config import PrimaFacieConfig, StudyConfig
from ethnicmer.errors import ConfigError
from ethnicmer.evaluation.features import extract_features
from ethnicmer.evaluation.protocols import labelled, subject_ids, unlabelled_counts
from ethnicmer.io import save_figure_atomic, write_csv_atomic, write_json_atomic
from ethnicmer.progress import progress
from ethnicmer.report.tables import write_table
from ethnicmer.stats.multiple import add_family
from ethnicmer.stats.power import minimum_detectable_effect
from ethnicmer.stats.resampling import p_value, permuted_labels, standard_error

CLASSES = ("Negative", "Non-negative")
SCENARIOS = ("Asian", "Non-Asian", "Mixed")
PAPER_TABLE_IV = {"Asian": 0.4546, "Non-Asian": 0.4785, "Mixed": 0.4375}
"""The paper's Table IV average F1 per scenario, keyed by the paper's roles."""


@dataclass(frozen=True)
class ScenarioScore:
    """Scores of one scenario in one draw (F1 per class and their average)."""

    f1_negative: float
    f1_non_negative: float
    average: float
    negative_share: float
    n_samples: int


def _groups(samples: pd.DataFrame, groups: tuple[str, str]) -> dict[str, list[str]]:
    ids = pd.Series(subject_ids(samples), index=samples.index)
    return {g: sorted(set(ids[samples["ethnicity"] == g])) for g in groups}


def draw_scenarios(
    pools: dict[str, list[str]], n: int, rng: np.random.Generator, groups: tuple[str, str]
) -> dict[str, list[str]]:
    """One draw of the three scenarios' subject lists (``dataset/subject``).

    Raises:
        ConfigError: a group has fewer subjects than a scenario needs (the message
            says how many exist).
    """
    first, second = groups
    for group, need in ((first, n), (second, n), (first, n // 2), (second, n - n // 2)):
        if len(pools[group]) < need:
            raise ConfigError(
                f"prima facie: the {group} group has {len(pools[group])} subjects; "
                f"a scenario needs {need}"
            )
    return {
        first: sorted(rng.choice(pools[first], n, replace=False)),
        second: sorted(rng.choice(pools[second], n, replace=False)),
        "Mixed": sorted(
            [
                *rng.choice(pools[first], n // 2, replace=False),
                *rng.choice(pools[second], n - n // 2, replace=False),
            ]
        ),
    }


def _classifier(cfg: PrimaFacieConfig, seed: int) -> Any:
    if cfg.classifier == "svc":
        return SVC(C=cfg.svc_c)
    return RandomForestClassifier(n_estimators=cfg.n_estimators, random_state=seed, n_jobs=1)


def _score(y_true: np.ndarray, y_pred: np.ndarray) -> ScenarioScore:
    per_class = f1_score(y_true, y_pred, labels=[0, 1], average=None, zero_division=0)
    return ScenarioScore(
        float(per_class[0]),
        float(per_class[1]),
        float(per_class.mean()),
        float(np.mean(y_true == 0)),
        len(y_true),
    )


def loso_scores(
    features: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    subjects: list[str],
    cfg: PrimaFacieConfig,
    seed: int,
) -> ScenarioScore:
    """LOSO within ``subjects``: fit on the others, predict the held-out subject, score all."""
    rows = np.flatnonzero(np.isin(ids, subjects))
    y_true, y_pred = [], []
    for subject in subjects:
        test = rows[ids[rows] == subject]
        train = rows[ids[rows] != subject]
        model = _classifier(cfg, seed).fit(features[train], labels[train])
        y_true.append(labels[test])
        y_pred.append(model.predict(features[test]))
    return _score(np.concatenate(y_true), np.concatenate(y_pred))


def transfer_score(
    features: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    train_subjects: list[str],
    test_subjects: list[str],
    cfg: PrimaFacieConfig,
    seed: int,
) -> ScenarioScore:
    """Fit on all of ``train_subjects``, score on ``test_subjects`` (disjoint groups)."""
    train = np.flatnonzero(np.isin(ids, train_subjects))
    test = np.flatnonzero(np.isin(ids, test_subjects))
    model = _classifier(cfg, seed).fit(features[train], labels[train])
    return _score(labels[test], model.predict(features[test]))


def _interval(values: pd.Series) -> tuple[float, float]:
    return float(values.quantile(0.025)), float(values.quantile(0.975))


def _subjects(samples: pd.DataFrame, groups: tuple[str, str]) -> pd.DataFrame:
    """One row per subject of the two groups: ``id``, ``dataset``, ``ethnicity``."""
    table = samples[samples["ethnicity"].isin(groups)].drop_duplicates(["dataset", "subject"])
    return pd.DataFrame(
        {
            "id": subject_ids(table),
            "dataset": table["dataset"].to_numpy(),
            "ethnicity": table["ethnicity"].to_numpy(),
        }
    ).sort_values("id", ignore_index=True)


def relabelled_null(
    pf: PrimaFacieConfig,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    subjects: pd.DataFrame,
    n_subjects: int,
    groups: tuple[str, str],
    seed: int,
) -> dict[str, np.ndarray]:
    """The Mixed − mono statistic under subject relabelling (see the module doc).

    Args:
        data: ``(features, labels, ids)`` of every sample.
        subjects: ``id``, ``dataset``, ``ethnicity`` per subject of the pools.
        n_subjects: subjects per scenario.

    Returns:
        mono group → ``(permutations,)`` null statistics.
    """
    features, labels, ids = data
    relabelled = permuted_labels(
        subjects["ethnicity"].to_numpy(), subjects["dataset"].to_numpy(), pf.permutations, seed
    )
    rng = np.random.default_rng([seed, 2])
    out: dict[str, list[float]] = {g: [] for g in groups}
    for ethnicity in progress(relabelled, "prima facie null (relabelled subjects)"):
        pools = {g: sorted(subjects["id"][ethnicity == g]) for g in groups}
        differences: dict[str, list[float]] = {g: [] for g in groups}
        for _ in range(pf.null_draws):
            scenarios = draw_scenarios(pools, n_subjects, rng, groups)
            draw_seed = int(rng.integers(2**31))
            scores = {
                name: loso_scores(features, labels, ids, members, pf, draw_seed).average
                for name, members in scenarios.items()
            }
            for g in groups:
                differences[g].append(scores["Mixed"] - scores[g])
        for g in groups:
            out[g].append(float(np.mean(differences[g])))
    return {g: np.asarray(v) for g, v in out.items()}


def run_prima_facie(cfg: StudyConfig, samples: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Run R draws of the three scenarios (and the transfer protocol); write the tables.

    With ``matched_dataset`` the same design also runs with every subject drawn
    from that one dataset (files prefixed ``matched_``), so that ethnicity is not
    confounded with the dataset.

    Returns:
        The files written under ``out_dir``.
    """
    pf = cfg.stages.prima_facie
    assert pf is not None
    left_out = unlabelled_counts(samples)
    samples = samples[labelled(samples)]  # the scenarios draw subjects by ethnicity group
    samples = samples.sort_values(["dataset", "subject", "filename"]).reset_index(drop=True)
    roles = cfg.data.demographics.paper_groups
    groups = (roles["Asian"], roles["Non-Asian"])
    present = sorted(samples["ethnicity"].unique())
    if not set(groups) <= set(present):
        raise ConfigError(
            f"prima facie compares the groups {list(groups)} (data.demographics.paper_groups); "
            f"the samples hold {present}"
        )
    features = extract_features(
        samples,
        pf.features,
        pf.weights,
        pf.feature_size,
        cfg.run_dir / "cache" / "features",
        device=pf.device,
    )
    labels = (samples["binary_label"] != "Negative").to_numpy(dtype=np.int64)
    ids = subject_ids(samples)
    data = (features, labels, ids)
    written, summaries = _design(
        cfg,
        data,
        _subjects(samples, groups),
        pf.subjects,
        groups,
        out_dir,
        "",
        "cross-dataset, as in the paper",
    )
    if pf.matched_dataset is not None:
        within = samples[samples["dataset"] == pf.matched_dataset]
        pools = _groups(within, groups)
        matched_subjects = _subjects(within, groups)
        maximum = min(len(pools[g]) for g in groups)
        n = pf.matched_subjects or maximum
        if n > maximum or maximum < 2:
            raise ConfigError(
                f"prima facie matched_dataset {pf.matched_dataset}: at most {maximum} subjects per "
                f"scenario ({', '.join(f'{g} {len(pools[g])}' for g in groups)}); asked for {n}"
            )
        more, matched = _design(
            cfg,
            data,
            matched_subjects,
            n,
            groups,
            out_dir,
            "matched_",
            f"all subjects from {pf.matched_dataset} (at most {maximum} possible)",
        )
        written += more
        summaries["matched"] = {
            "dataset": pf.matched_dataset,
            "subjects": n,
            "maximum": maximum,
            **matched,
        }
    summaries["left_out"] = left_out
    summary_json = out_dir / "summary.json"
    write_json_atomic(summary_json, summaries)
    written.append(summary_json)
    return written


def _run_draws(
    cfg: StudyConfig,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    pools: dict[str, list[str]],
    n_subjects: int,
    groups: tuple[str, str],
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """R draws of the three scenarios: per-draw scores and the transfer protocol's rows."""
    pf = cfg.stages.prima_facie
    assert pf is not None
    features, labels, ids = data
    rng = np.random.default_rng(cfg.seed)
    records, transfer = [], []
    for draw in progress(range(1, pf.draws + 1), "prima facie draws"):
        scenarios = draw_scenarios(pools, n_subjects, rng, groups)
        seed = int(rng.integers(2**31))
        for name, members in scenarios.items():
            score = loso_scores(features, labels, ids, members, pf, seed)
            records.append(
                {"draw": draw, "scenario": name, **score.__dict__, "subjects": " ".join(members)}
            )
        if pf.transfer:
            for source, target in (groups, groups[::-1]):
                reference = loso_scores(features, labels, ids, scenarios[target], pf, seed)
                crossed = transfer_score(
                    features, labels, ids, scenarios[source], scenarios[target], pf, seed
                )
                transfer.append(
                    {
                        "draw": draw,
                        "train": source,
                        "test": target,
                        "transfer": crossed.average,
                        "within_test_group_loso": reference.average,
                        "drop": reference.average - crossed.average,
                    }
                )
    return pd.DataFrame(records), transfer


def _table4(draws: pd.DataFrame, groups: tuple[str, str], paper: dict[str, float]) -> pd.DataFrame:
    """Table IV's layout from the first draw, beside the paper's published averages."""
    first = draws[draws["draw"] == 1].set_index("scenario").reindex([groups[0], groups[1], "Mixed"])
    return pd.DataFrame(
        {
            "train/test data": first.index,
            "protocol": "LOSO (CDE)",
            "Negative": first["f1_negative"].to_numpy(),
            "Non-negative": first["f1_non_negative"].to_numpy(),
            "Average": first["average"].to_numpy(),
            "paper Average": [paper.get(s, np.nan) for s in first.index],
            "samples": first["n_samples"].to_numpy(),
            "Negative share": first["negative_share"].to_numpy(),
        }
    )


def _draw_summary(
    draws: pd.DataFrame, groups: tuple[str, str], paper: dict[str, float]
) -> pd.DataFrame:
    """Per scenario: mean and 95 % interval over draws of the average F1."""
    rows = []
    for name in (groups[0], groups[1], "Mixed"):
        part = draws[draws["scenario"] == name]
        low, high = _interval(part["average"])
        rows.append(
            {
                "scenario": name,
                "draws": len(part),
                "mean Average F1": part["average"].mean(),
                "2.5%": low,
                "97.5%": high,
                "mean F1 Negative": part["f1_negative"].mean(),
                "mean F1 Non-negative": part["f1_non_negative"].mean(),
                "mean Negative share": part["negative_share"].mean(),
                "distinct subject sets": part["subjects"].nunique(),
                "paper Average": paper.get(name, np.nan),
            }
        )
    return pd.DataFrame(rows)


def _mixed_tests(
    pf: PrimaFacieConfig,
    draws: pd.DataFrame,
    null: dict[str, np.ndarray],
    groups: tuple[str, str],
    label: str,
) -> pd.DataFrame:
    """Mixed vs each mono-ethnic scenario against the relabelling null (one Holm family)."""
    wide = draws.pivot(index="draw", columns="scenario", values="average")
    tests = []
    for mono in groups:
        diff = wide["Mixed"] - wide[mono]
        low, high = _interval(diff)
        observed = float(diff.mean())
        tests.append(
            {
                "comparison": f"Mixed - {mono}",
                "draws": len(diff),
                "mean difference": observed,
                "2.5% over draws": low,
                "97.5% over draws": high,
                "share of draws Mixed lower": float(np.mean(diff < 0)),
                "null replicates": len(null[mono]),
                "null draws each": pf.null_draws,
                "p": p_value(observed, null[mono]),
                "mde": minimum_detectable_effect(standard_error(null[mono])),
            }
        )
    return add_family(
        pd.DataFrame(tests), "p", f"prima facie: Mixed vs mono-ethnic ({label})", "confirmatory"
    )


def _transfer_table(transfer: list[dict[str, Any]]) -> pd.DataFrame:
    """Per direction: mean transfer F1, within-group LOSO F1, and the drop with its interval."""
    rows = []
    for (source, target), part in pd.DataFrame(transfer).groupby(["train", "test"], sort=False):
        low, high = _interval(part["drop"])
        rows.append(
            {
                "train": source,
                "test": target,
                "draws": len(part),
                "mean transfer F1": part["transfer"].mean(),
                "mean within-group LOSO F1": part["within_test_group_loso"].mean(),
                "mean drop": part["drop"].mean(),
                "2.5%": low,
                "97.5%": high,
            }
        )
    return pd.DataFrame(rows)


def _scores_figure(
    draws: pd.DataFrame,
    groups: tuple[str, str],
    paper: dict[str, float],
    title: str,
    path: Path,
) -> Path:
    """Box plot of each scenario's average F1 over draws (the paper's values as crosses)."""
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    order = [groups[0], groups[1], "Mixed"]
    ax.boxplot([draws.loc[draws["scenario"] == s, "average"] for s in order], tick_labels=order)
    for i, s in enumerate(order, start=1):
        ax.scatter(
            [i] * (draws["scenario"] == s).sum(),
            draws.loc[draws["scenario"] == s, "average"],
            s=6,
            alpha=0.4,
        )
        if s in paper:
            ax.scatter([i], [paper[s]], marker="x", c="red", label="paper" if i == 1 else None)
    ax.set_ylabel("average F1 (Negative, Non-negative)")
    ax.set_title(title, fontsize=9)
    if paper:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def _design(
    cfg: StudyConfig,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    subjects: pd.DataFrame,
    n_subjects: int,
    groups: tuple[str, str],
    out_dir: Path,
    prefix: str,
    label: str,
) -> tuple[list[Path], dict[str, Any]]:
    """R draws of one scenario design; writes ``<prefix>table4`` etc.; returns files and records."""
    pf = cfg.stages.prima_facie
    assert pf is not None
    pools = {g: sorted(subjects.loc[subjects["ethnicity"] == g, "id"]) for g in groups}
    roles = cfg.data.demographics.paper_groups
    paper = (
        {roles.get(role, role): value for role, value in PAPER_TABLE_IV.items()}
        if not prefix
        else {}
    )
    draws, transfer = _run_draws(cfg, data, pools, n_subjects, groups)
    written = [write_csv_atomic(draws, out_dir / f"{prefix}draws.csv")]
    table4 = _table4(draws, groups, paper)
    written += write_table(
        table4,
        out_dir / f"{prefix}table4",
        f"Prima facie (paper Table IV), {label}: draw 1 of {pf.draws}, "
        f"{n_subjects} subjects per scenario",
    )
    summary = _draw_summary(draws, groups, paper)
    written += write_table(
        summary,
        out_dir / f"{prefix}summary",
        f"Prima facie, {label}: {pf.draws} draws, mean and 95 % interval of the average F1",
    )
    null = (
        relabelled_null(pf, data, subjects, n_subjects, groups, cfg.seed)
        if pf.permutations
        else {g: np.array([]) for g in groups}
    )
    null_table = pd.DataFrame(
        [
            {"replicate": i + 1, "comparison": f"Mixed - {g}", "statistic": v}
            for g in groups
            for i, v in enumerate(null[g])
        ],
        columns=["replicate", "comparison", "statistic"],
    )
    written.append(write_csv_atomic(null_table, out_dir / f"{prefix}null.csv"))
    tests_frame = _mixed_tests(pf, draws, null, groups, label)
    written += write_table(
        tests_frame,
        out_dir / f"{prefix}tests",
        "Does Mixed differ from each mono-ethnic scenario? Null from relabelling ethnicity "
        "across subjects within dataset (scenarios re-drawn); Holm over the two tests",
    )
    transfer_table = pd.DataFrame()
    if transfer:
        written.append(
            write_csv_atomic(pd.DataFrame(transfer), out_dir / f"{prefix}transfer_draws.csv")
        )
        transfer_table = _transfer_table(transfer)
        written += write_table(
            transfer_table,
            out_dir / f"{prefix}transfer",
            "Cross-ethnicity transfer: train on one group, test on the other "
            "(drop = within-group LOSO - transfer)",
        )
    title = f"Prima facie ({label}): {pf.draws} draws of {n_subjects} subjects"
    written.append(_scores_figure(draws, groups, paper, title, out_dir / f"{prefix}scores.png"))
    records_out = {
        "table4": table4.to_dict(orient="records"),
        "summary": summary.to_dict(orient="records"),
        "tests": tests_frame.to_dict(orient="records"),
        "transfer": transfer_table.to_dict(orient="records"),
    }
    return written, records_out
