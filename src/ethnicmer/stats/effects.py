"""Recognition effect models: per-sample correctness with subject clustering (GEE).

Each benchmark prediction (row × seed × sample) is one observation of whether
the sample was recognised (``correct``, binomial) and of its log-loss (nats,
Gaussian). Generalised estimating equations (statsmodels ``GEE``) with an
exchangeable working correlation within subject treat every subject as one
cluster: its samples and its seeds are repeated measures of the same face, not
independent replicates. Standard errors are the bias-reduced sandwich
(Mancl–DeRouen), which holds the type-I error with few clusters better than the
plain sandwich; Wald tests, intervals and detectable effects use t quantiles with
(subjects − parameters) degrees of freedom rather than the normal limit, the
usual small-sample reference for GEE with few clusters (checked in
``tests/test_stats.py`` and ``benchmarks/stats_validation.py``: with normal
quantiles, 24 subjects gave a type-I error of 0.06 and 0.71 power at the stated
detectable effect).

Covariates: row (model), ethnicity group, dataset and emotion class. Because
both ethnicity and dataset are in the model, the ethnicity term is the effect
of ethnicity **within dataset** and the dataset term the effect of dataset
**within ethnicity**; a term the data cannot identify (no dataset holds both
groups; no group spans two datasets) is left out of the model and reported as
not estimable, never dropped silently. Per compared pair (A, B) a model of the
two rows gives A's odds ratio against B, and a second model with the
row × ethnicity interaction says whether A helps one group more than the other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.stats.power import minimum_detectable_effect, wald_mde_by_direction

MIN_SUBJECTS = 2
"""A level needs this many subjects inside a stratum for a within-stratum effect."""

OUTCOMES = {
    "correct": "odds ratio of recognition (correct prediction)",
    "log_loss": "difference in log-loss (nats; lower is better)",
}


def observations(predictions: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (row, seed, sample): ``correct``, ``log_loss`` and the covariates.

    Args:
        predictions: the benchmark's predictions (``model, seed, dataset, subject,
            filename, y_true, y_pred, logit_0..``).
        samples: the samples table (``ethnicity``, ``label`` per key).

    Returns:
        Columns ``model, seed, subject_id, dataset, ethnicity, label, correct,
        log_loss``.
    """
    keys = ["dataset", "subject", "filename"]
    logits = predictions[[c for c in predictions if c.startswith("logit_")]].to_numpy(float)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    truth = predictions["y_true"].to_numpy(int)
    frame = predictions[["model", "seed", *keys]].copy()
    frame["correct"] = (predictions["y_pred"].to_numpy() == truth).astype(int)
    frame["log_loss"] = -log_probs[np.arange(len(truth)), truth]
    frame = frame.merge(samples[[*keys, "ethnicity", "label"]], on=keys, how="left")
    frame["subject_id"] = frame["dataset"].astype(str) + "/" + frame["subject"].astype(str)
    return frame


def _within(frame: pd.DataFrame, factor: str, stratum: str) -> list[str]:
    """Strata in which ``factor`` has at least two levels of ≥ MIN_SUBJECTS subjects."""
    subjects = frame.drop_duplicates("subject_id")
    out = []
    for name, part in subjects.groupby(stratum):
        counts = part[factor].value_counts()
        if (counts >= MIN_SUBJECTS).sum() >= 2:
            out.append(str(name))
    return out


def _informative(frame: pd.DataFrame, outcome: str) -> tuple[pd.DataFrame, str]:
    """Drop emotion classes whose outcome never varies (binomial only).

    A class recognised always (or never) separates the data: its class effect
    is infinite and the fit fails. Under class fixed effects such samples carry
    no information about the other terms (as in a conditional logit), so they are
    left out, and the note says which and how many.
    """
    if outcome != "correct":
        return frame, ""
    rates = frame.groupby("label")["correct"].agg(["min", "max", "size"])
    constant = rates[rates["min"] == rates["max"]]
    if constant.empty:
        return frame, ""
    kept = frame[~frame["label"].isin(constant.index)]
    words = ", ".join(
        f"{label} ({int(row['size'])} observations, always "
        f"{'correct' if row['min'] == 1 else 'wrong'})"
        for label, row in constant.iterrows()
    )
    return kept, f"left out as uninformative: {words}"


def _fit(frame: pd.DataFrame, formula: str, outcome: str) -> Any:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    family = sm.families.Binomial() if outcome == "correct" else sm.families.Gaussian()
    model = smf.gee(
        f"{outcome} ~ {formula}",
        "subject_id",
        frame,
        family=family,
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(cov_type="bias_reduced", maxiter=100)


def _binomial_se_at(result: Any, name: str) -> Callable[[float], float]:
    """An approximate robust SE of a logistic GEE term ``name`` if its true value were δ.

    The robust SE at the estimate times the square root of the ratio of the
    model-based (naive) variances at δ and at the estimate, i.e. the ratio of
    robust to model-based variance is taken as constant. The model-based variance
    is the inverse information ``Σ_i X_i' A_i^½ R^-1 A_i^½ X_i`` of a logit GEE
    with exchangeable working correlation ρ (Liang & Zeger 1986;
    ``A = diag(μ(1 − μ))``, ``R^-1 = (I − ρ/(1 − ρ + n_i ρ) 11') / (1 − ρ)``),
    evaluated with the term set to δ and ρ and every other coefficient at their
    estimates (it equals statsmodels' ``cov_naive`` at the estimate). Used for the
    detectable effects (:func:`ethnicmer.stats.power.wald_mde_by_direction`): an odds ratio far
    from 1 pushes a group's recognition rate towards 0 or 1, where each sample
    carries less information. It overstates the estimate's spread somewhat near
    separation (0.81 against 0.68 measured at log odds ratio 1.93 in the
    validation design).

    Raises:
        ValueError: the model-based variance at the estimate is not finite or not
            positive (the caller falls back to the SE at the estimate); a singular
            information is pseudo-inverted, not an error.
    """
    from scipy.special import expit

    exog = np.asarray(result.model.exog, dtype=float)
    groups = np.asarray(result.model.groups)
    order = np.argsort(groups, kind="stable")
    exog = exog[order]
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    rho = float(np.atleast_1d(result.model.cov_struct.dep_params)[0])
    if not np.isfinite(rho):
        rho = 0.0
    # exchangeable R is positive definite for -1/(n_max - 1) < ρ < 1
    lowest = -1.0 / (sizes.max() - 1) + 1e-6 if sizes.max() > 1 else -0.99
    rho = min(max(rho, lowest), 0.99)
    weights = rho / (1 - rho + sizes * rho)
    params = np.asarray(result.params, dtype=float)
    index = list(result.params.index).index(name)

    def variance(beta: np.ndarray) -> float:
        mean = expit(exog @ beta)
        scaled = exog * np.sqrt(mean * (1 - mean))[:, None]
        sums = np.add.reduceat(scaled, starts, axis=0)  # clusters × parameters
        information = (scaled.T @ scaled - (sums.T * weights) @ sums) / (1 - rho)
        return float(np.linalg.pinv(information)[index, index])

    base = variance(params)
    se = float(result.bse[name])
    if not (np.isfinite(base) and base > 0):
        raise ValueError(f"model-based variance of {name} at the estimate is {base}")

    def se_at(delta: float) -> float:
        beta = params.copy()
        beta[index] = delta
        try:
            ratio = variance(beta) / base
        except np.linalg.LinAlgError:
            return float("inf")
        return se * float(np.sqrt(ratio)) if ratio > 0 and np.isfinite(ratio) else float("inf")

    return se_at


def _binomial_mde(result: Any, name: str, se: float, df: int) -> tuple[float, float, str]:
    """The term's detectable log odds ratios upwards and downwards (both > 0) and a
    note when they fell back to the SE at the estimate."""
    try:
        up, down = wald_mde_by_direction(_binomial_se_at(result, name), df=df)
        return up, down, ""
    except (ValueError, np.linalg.LinAlgError) as exc:
        mde = minimum_detectable_effect(se, df=df)
        return mde, mde, f"detectable effect from the SE at the estimate ({exc})"


def _term(result: Any, name: str, outcome: str) -> dict[str, Any]:
    if name not in result.params.index:
        return {
            "estimate": float("nan"),
            "term_note": f"term {name} is not in the fitted model (collinear with other terms)",
        }
    estimate = float(result.params[name])
    with np.errstate(invalid="ignore"):
        se = float(result.bse[name])
    if not np.isfinite(se) or not np.isfinite(estimate):
        return {
            "estimate": float("nan"),
            "term_note": "standard error not estimable (too few subjects or separation)",
        }
    from scipy.stats import t

    df = max(int(result.model.num_group) - len(result.params), 1)  # subjects − parameters
    half = float(t.ppf(0.975, df)) * se
    low, high = estimate - half, estimate + half
    p = float(2 * t.sf(abs(estimate / se), df)) if se > 0 else float("nan")
    if outcome == "correct":  # the SE of a log odds ratio depends on the effect
        up, down, fallback = _binomial_mde(result, name, se, df)
        with np.errstate(over="ignore"):
            return {
                **({"term_note": fallback} if fallback else {}),
                "estimate": float(np.exp(estimate)),  # report odds ratios
                "ci_low": float(np.exp(low)),
                "ci_high": float(np.exp(high)),
                "p": p,
                "se_link": se,
                "mde": float(np.exp(up)),
                "mde_below": float(np.exp(-down)),
                "df": df,
            }
    mde = minimum_detectable_effect(se, df=df)
    return {
        "estimate": estimate,
        "ci_low": low,
        "ci_high": high,
        "p": p,
        "se_link": se,
        "mde": mde,
        "mde_below": -mde,
        "df": df,
    }


def _levels(frame: pd.DataFrame, column: str, reference: str | None = None) -> list[str]:
    levels = sorted(frame[column].astype(str).unique())
    if reference is not None and reference in levels:
        levels.remove(reference)
        levels.insert(0, reference)
    return levels


def _treatment(column: str, reference: str) -> str:
    return f"C({column}, Treatment({reference!r}))"


def _row(effect: str, comparison: str, outcome: str, scope: str, **values: Any) -> dict[str, Any]:
    nan = float("nan")
    base = {
        "effect": effect,
        "comparison": comparison,
        "outcome": outcome,
        "scale": "odds ratio" if outcome == "correct" else "difference (nats)",
        "scope": scope,
        "estimate": nan,
        "ci_low": nan,
        "ci_high": nan,
        "p": nan,
        "se_link": nan,
        "mde": nan,
        "mde_below": nan,
        "df": nan,
        "strata": "",
        "note": "",
    }
    term_note = values.pop("term_note", "")
    base.update(values)
    base["note"] = "; ".join(n for n in (base["note"], term_note) if n)
    return base


def recognition_effects(
    observed: pd.DataFrame,
    pairs: list[tuple[str, str]],
    groups: tuple[str, str],
    outcomes: tuple[str, ...] = ("correct", "log_loss"),
) -> pd.DataFrame:
    """GEE estimates of the ethnicity, dataset, pair and pair × ethnicity effects.

    Args:
        observed: :func:`observations` (samples of other groups than ``groups``
            are left out, and counted in the notes).
        pairs: the compared rows (A, B); A's effect is relative to B.
        groups: the two ethnicity groups (A, B); B is the reference.
        outcomes: ``correct`` (odds ratios) and/or ``log_loss`` (differences).

    Returns:
        One row per (effect, comparison, outcome): ``estimate`` (odds ratio or
        difference), 95 % ``ci_low``/``ci_high``, ``p`` (Wald, bias-reduced
        sandwich), ``mde`` and ``mde_below`` (the smallest effects above and below
        no effect detectable with 80 % power at α 0.05, on the same scale: odds
        ratios ≥ ``mde`` or ≤ ``mde_below``; ``inf`` / 0 where none is; for
        log-loss ``±`` one value), ``subjects``, ``seeds``, ``strata`` and ``note``
        (e.g. why a term is not estimable).
    """
    frame = observed[observed["ethnicity"].isin(groups)].copy()
    left_out = observed.loc[~observed["ethnicity"].isin(groups), "subject_id"].nunique()
    frame["ethnicity"] = frame["ethnicity"].astype(str)
    frame["dataset"] = frame["dataset"].astype(str)
    frame["model"] = frame["model"].astype(str)
    frame["label"] = frame["label"].astype(str)
    group_a, group_b = groups
    common = {
        "subjects": frame["subject_id"].nunique(),
        "seeds": frame["seed"].nunique(),
    }
    leftover = f"{left_out} subject(s) of other groups left out" if left_out else ""
    rows: list[dict[str, Any]] = []
    eth_strata = _within(frame, "ethnicity", "dataset")
    ds_strata = _within(frame, "dataset", "ethnicity")
    datasets = _levels(frame, "dataset")
    terms = []
    if eth_strata:
        terms.append(_treatment("ethnicity", group_b))
    if ds_strata and len(datasets) > 1:
        terms.append(_treatment("dataset", datasets[0]))
    adjust = " + ".join(["C(label)", *terms])
    if frame["model"].nunique() > 1:
        adjust = f"C(model) + {adjust}"
    for outcome in outcomes:
        result = None
        data, note = _informative(frame, outcome)
        try:
            result = _fit(data, adjust, outcome)
        except Exception as exc:  # statsmodels raises several types on singular designs
            note = f"model did not fit ({type(exc).__name__}: {exc})"
        eth_name = f"{_treatment('ethnicity', group_b)}[T.{group_a}]"
        if not eth_strata:
            rows.append(
                _row(
                    "ethnicity within dataset",
                    f"{group_a} vs {group_b}",
                    outcome,
                    "all rows",
                    note="not estimable: no dataset holds ≥ 2 subjects of each group",
                    **common,
                )
            )
        else:
            values = _term(result, eth_name, outcome) if result is not None else {}
            rows.append(
                _row(
                    "ethnicity within dataset",
                    f"{group_a} vs {group_b}",
                    outcome,
                    "all rows",
                    strata=",".join(eth_strata),
                    note=note,
                    **values,
                    **common,
                )
            )
        for level in datasets[1:]:
            name = f"{_treatment('dataset', datasets[0])}[T.{level}]"
            comparison = f"{level} vs {datasets[0]}"
            if not ds_strata:
                rows.append(
                    _row(
                        "dataset within ethnicity",
                        comparison,
                        outcome,
                        "all rows",
                        note="not estimable: no group has ≥ 2 subjects in two datasets",
                        **common,
                    )
                )
                continue
            values = _term(result, name, outcome) if result is not None else {}
            rows.append(
                _row(
                    "dataset within ethnicity",
                    comparison,
                    outcome,
                    "all rows",
                    strata=",".join(ds_strata),
                    note=note,
                    **values,
                    **common,
                )
            )
        for a, b in pairs:
            part, dropped = _informative(frame[frame["model"].isin([a, b])], outcome)
            model_term = _treatment("model", b)
            base = " + ".join(["C(label)", *terms])
            name = f"{model_term}[T.{a}]"
            try:
                fitted = _fit(part, f"{model_term} + {base}", outcome)
                values, pair_note = _term(fitted, name, outcome), dropped
            except Exception as exc:
                values, pair_note = {}, f"model did not fit ({type(exc).__name__})"
            rows.append(
                _row(
                    "row",
                    f"{a} vs {b}",
                    outcome,
                    f"rows {a}, {b}",
                    note=pair_note,
                    **values,
                    **common,
                )
            )
            interaction = f"{name}:{_treatment('ethnicity', group_b)}[T.{group_a}]"
            if not eth_strata:
                rows.append(
                    _row(
                        "row × ethnicity",
                        f"({a} vs {b}) × ({group_a} vs {group_b})",
                        outcome,
                        f"rows {a}, {b}",
                        note="not estimable: ethnicity does not vary within a dataset",
                        **common,
                    )
                )
                continue
            try:
                fitted = _fit(
                    part, f"{model_term} * {_treatment('ethnicity', group_b)} + {base}", outcome
                )
                values, pair_note = _term(fitted, interaction, outcome), dropped
            except Exception as exc:
                values, pair_note = {}, f"model did not fit ({type(exc).__name__})"
            rows.append(
                _row(
                    "row × ethnicity",
                    f"({a} vs {b}) × ({group_a} vs {group_b})",
                    outcome,
                    f"rows {a}, {b}",
                    strata=",".join(eth_strata),
                    note=pair_note,
                    **values,
                    **common,
                )
            )
    table = pd.DataFrame(rows)
    if leftover:
        table["note"] = [f"{n}; {leftover}" if n else leftover for n in table["note"]]
    return table
