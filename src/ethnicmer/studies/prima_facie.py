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
mono-ethnic scenario (paired by draw: the share of draws on each side of zero,
two-sided with the +1 correction). The interval over draws measures how much the
result depends on which subjects were drawn; it is not a confidence interval for
a population of subjects. Note: the Non-Asian pool has 17 subjects in the
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
from ethnicmer.evaluation.protocols import subject_ids
from ethnicmer.pipeline import write_json_atomic
from ethnicmer.progress import progress
from ethnicmer.report.tables import write_table

CLASSES = ("Negative", "Non-negative")
SCENARIOS = ("Asian", "Non-Asian", "Mixed")
PAPER_TABLE_IV = {"Asian": 0.4546, "Non-Asian": 0.4785, "Mixed": 0.4375}


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
    samples = samples.sort_values(["dataset", "subject", "filename"]).reset_index(drop=True)
    groups = tuple(sorted(samples["ethnicity"].unique()))
    if len(groups) != 2:
        raise ConfigError(f"prima facie needs exactly two ethnicity groups; found {list(groups)}")
    features = extract_features(
        samples, pf.features, pf.weights, pf.feature_size, cfg.run_dir / "cache" / "features"
    )
    labels = (samples["binary_label"] != "Negative").to_numpy(dtype=np.int64)
    ids = subject_ids(samples)
    data = (features, labels, ids)
    written, summaries = _design(
        cfg,
        data,
        _groups(samples, groups),
        pf.subjects,
        groups,
        out_dir,
        "",
        "cross-dataset, as in the paper",
    )
    if pf.matched_dataset is not None:
        within = samples[samples["dataset"] == pf.matched_dataset]
        pools = _groups(within, groups)
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
            pools,
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
    summary_json = out_dir / "summary.json"
    write_json_atomic(summary_json, summaries)
    written.append(summary_json)
    return written


def _design(
    cfg: StudyConfig,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    pools: dict[str, list[str]],
    n_subjects: int,
    groups: tuple[str, str],
    out_dir: Path,
    prefix: str,
    label: str,
) -> tuple[list[Path], dict[str, Any]]:
    """R draws of one scenario design; writes ``<prefix>table4`` etc.; returns files and records."""
    pf = cfg.stages.prima_facie
    assert pf is not None
    features, labels, ids = data
    paper = PAPER_TABLE_IV if not prefix else {}
    rng = np.random.default_rng(cfg.seed)
    records, transfer = [], []
    for draw in progress(range(1, pf.draws + 1), "prima facie draws"):
        scenarios = draw_scenarios(pools, n_subjects, rng, groups)
        seed = int(rng.integers(2**31))
        for name, subjects in scenarios.items():
            score = loso_scores(features, labels, ids, subjects, pf, seed)
            records.append(
                {"draw": draw, "scenario": name, **score.__dict__, "subjects": " ".join(subjects)}
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
    draws = pd.DataFrame(records)
    written = []
    draws_file = out_dir / f"{prefix}draws.csv"
    draws.to_csv(draws_file, index=False)
    written.append(draws_file)

    first = draws[draws["draw"] == 1].set_index("scenario").reindex([groups[0], groups[1], "Mixed"])
    table4 = pd.DataFrame(
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
    written += write_table(
        table4,
        out_dir / f"{prefix}table4",
        f"Prima facie (paper Table IV), {label}: draw 1 of {pf.draws}, "
        f"{n_subjects} subjects per scenario",
    )

    summary_rows = []
    for name in (groups[0], groups[1], "Mixed"):
        part = draws[draws["scenario"] == name]
        low, high = _interval(part["average"])
        summary_rows.append(
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
    summary = pd.DataFrame(summary_rows)
    written += write_table(
        summary,
        out_dir / f"{prefix}summary",
        f"Prima facie, {label}: {pf.draws} draws, mean and 95 % interval of the average F1",
    )

    wide = draws.pivot(index="draw", columns="scenario", values="average")
    tests = []
    for mono in groups:
        diff = wide["Mixed"] - wide[mono]
        low, high = _interval(diff)
        share_below = float(np.mean(diff < 0))
        tail = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
        p_two_sided = min(1.0, 2 * (tail + 1) / (len(diff) + 1))
        tests.append(
            {
                "comparison": f"Mixed - {mono}",
                "draws": len(diff),
                "mean difference": diff.mean(),
                "2.5%": low,
                "97.5%": high,
                "share of draws Mixed lower": share_below,
                "p (two-sided, over draws)": p_two_sided,
            }
        )
    tests_frame = pd.DataFrame(tests)
    written += write_table(
        tests_frame,
        out_dir / f"{prefix}tests",
        "Does Mixed differ from each mono-ethnic scenario? (paired by draw)",
    )

    if transfer:
        tr = pd.DataFrame(transfer)
        tr_file = out_dir / f"{prefix}transfer_draws.csv"
        tr.to_csv(tr_file, index=False)
        written.append(tr_file)
        rows = []
        for (source, target), part in tr.groupby(["train", "test"], sort=False):
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
        written += write_table(
            pd.DataFrame(rows),
            out_dir / f"{prefix}transfer",
            "Cross-ethnicity transfer: train on one group, test on the other "
            "(drop = within-group LOSO - transfer)",
        )

    figure = out_dir / f"{prefix}scores.png"
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
            ax.scatter(
                [i], [PAPER_TABLE_IV[s]], marker="x", c="red", label="paper" if i == 1 else None
            )
    ax.set_ylabel("average F1 (Negative, Non-negative)")
    ax.set_title(f"Prima facie ({label}): {pf.draws} draws of {n_subjects} subjects", fontsize=9)
    if paper:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure)
    plt.close(fig)
    written.append(figure)

    records_out = {
        "table4": table4.to_dict(orient="records"),
        "summary": summary.to_dict(orient="records"),
        "tests": tests_frame.to_dict(orient="records"),
        "transfer": pd.DataFrame(rows).to_dict(orient="records") if transfer else [],
    }
    return written, records_out
