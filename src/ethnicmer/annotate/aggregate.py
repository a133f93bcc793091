"""Per-subject labels from per-sample predictions, and their heuristic correction.

Aggregation (one label per subject and field): a vote over the subject's samples
weighted by each prediction's confidence; ``Error`` rows (no face) do not vote
and are counted. A tie between labels is resolved in favour of the label seen
first in sample order and flagged ``tie`` so that a reviewer sees it.

Correction (paper III-A, Fig. 1, "heuristic screening"): rules flag subjects
whose vote is weak — fewer than ``min_valid`` valid samples, or a winning share
below ``min_agreement`` — and an overrides file (dataset, subject, field, value,
reason) sets the final labels. The audit table lists every subject whose final
label differs from its raw vote, or that a rule flagged, with the rule or reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ethnicmer.annotate.estimators import FIELDS
from ethnicmer.data.demographics import RACES, apply_overrides


def aggregate_subjects(predictions: pd.DataFrame) -> pd.DataFrame:
    """Confidence-weighted vote per (dataset, subject) and field.

    Args:
        predictions: per-sample rows with ``dataset, subject, filename``, the
            :data:`FIELDS` (nullable ints), ``<field>_confidence`` and ``error``.

    Returns:
        One row per subject: ``dataset, subject, samples, valid``, per field the
        winning value, ``<field>_share`` (its weighted share of the valid votes),
        ``<field>_tie`` and ``<field>_votes`` (JSON: value → weighted votes).
    """
    rows = []
    for (dataset, subject), part in predictions.groupby(["dataset", "subject"], sort=True):
        valid = part[part["error"].fillna("") == ""]
        record: dict[str, object] = {
            "dataset": dataset,
            "subject": subject,
            "samples": len(part),
            "valid": len(valid),
        }
        for field in FIELDS:
            votes: dict[int, float] = {}
            for value, weight in zip(valid[field], valid[f"{field}_confidence"], strict=True):
                if pd.isna(value):
                    continue
                votes[int(value)] = votes.get(int(value), 0.0) + float(weight)
            if not votes:
                record.update(
                    {
                        field: pd.NA,
                        f"{field}_share": 0.0,
                        f"{field}_tie": False,
                        f"{field}_votes": "{}",
                    }
                )
                continue
            best = max(votes.values())
            winners = [v for v in votes if votes[v] == best]  # dict keeps first-seen order
            record[field] = winners[0]
            record[f"{field}_share"] = best / sum(votes.values())
            record[f"{field}_tie"] = len(winners) > 1
            record[f"{field}_votes"] = json.dumps({str(k): round(v, 3) for k, v in votes.items()})
        rows.append(record)
    out = pd.DataFrame(rows)
    for field in FIELDS:
        out[field] = out[field].astype("Int64")
    return out


def correct_subjects(
    votes: pd.DataFrame, min_valid: int, min_agreement: float, overrides: Path | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the rules and the overrides file; return the demographics table and the audit.

    Returns:
        ``(demographics, audit)``: demographics has ``dataset, subject, race_code,
        race, gender, age_bin, source`` (the database stage reads it); audit has
        ``dataset, subject, field, raw_vote, final, share, rule, reason``.

    Raises:
        DataError: a subject has no usable vote for a field and no override (the
            message names it), or the overrides file is invalid.
    """
    flags: list[dict[str, object]] = []
    for row in votes.itertuples():
        for field in FIELDS:
            share, tie = getattr(row, f"{field}_share"), getattr(row, f"{field}_tie")
            rule = ""
            if row.valid < min_valid:
                rule = f"fewer than {min_valid} valid samples ({row.valid})"
            elif share < min_agreement:
                rule = f"agreement {share:.2f} below {min_agreement:.2f}"
            elif tie:
                rule = "tie between labels"
            if rule:
                flags.append(
                    {"dataset": row.dataset, "subject": row.subject, "field": field, "rule": rule}
                )
    table = votes[["dataset", "subject", *FIELDS]].copy()
    table["source"] = "vote"
    log = pd.DataFrame(columns=["dataset", "subject", "field", "old_value", "new_value", "reason"])
    if overrides is not None:
        filled = table.fillna({f: 0 for f in FIELDS}).astype({f: "int64" for f in FIELDS})
        filled["race"] = [RACES[c] for c in filled["race_code"]]
        corrected, log = apply_overrides(filled, overrides)
        for field in FIELDS:
            overridden = set(
                zip(
                    log.loc[log["field"] == field, "dataset"],
                    log.loc[log["field"] == field, "subject"],
                    strict=True,
                )
            )
            keep_na = [
                pd.isna(v) and (d, s) not in overridden
                for d, s, v in zip(table["dataset"], table["subject"], table[field], strict=True)
            ]
            corrected[field] = corrected[field].astype("Int64").mask(keep_na)
        table = corrected
    from ethnicmer.errors import DataError

    for field in FIELDS:
        missing = table[table[field].isna()]
        if not missing.empty:
            names = ", ".join(
                f"{d}/{s}" for d, s in zip(missing["dataset"], missing["subject"], strict=True)
            )
            raise DataError(f"no usable {field} vote and no override for: {names}")
    table = table.astype({f: "int64" for f in FIELDS})
    table["race"] = [RACES[c] for c in table["race_code"]]
    audit_rows = []
    raw = votes.set_index(["dataset", "subject"])
    final = table.set_index(["dataset", "subject"])
    flagged = {(f["dataset"], f["subject"], f["field"]): f["rule"] for f in flags}
    reasons = {(r.dataset, r.subject, r.field): r.reason for r in log.itertuples()}
    for (dataset, subject), row in raw.iterrows():
        for field in FIELDS:
            key = (dataset, subject, field)
            before, after = row[field], final.loc[(dataset, subject), field]
            changed = pd.isna(before) or int(before) != int(after)
            if changed or key in flagged:
                audit_rows.append(
                    {
                        "dataset": dataset,
                        "subject": subject,
                        "field": field,
                        "raw_vote": before,
                        "final": int(after),
                        "share": round(float(row[f"{field}_share"]), 3),
                        "votes": row[f"{field}_votes"],
                        "rule": flagged.get(key, ""),
                        "reason": reasons.get(
                            key, "" if not changed else "(changed without a recorded reason)"
                        ),
                    }
                )
    audit = pd.DataFrame(
        audit_rows,
        columns=[
            "dataset",
            "subject",
            "field",
            "raw_vote",
            "final",
            "share",
            "votes",
            "rule",
            "reason",
        ],
    )
    columns = ["dataset", "subject", "race_code", "race", "gender", "age_bin", "source"]
    return table[columns].reset_index(drop=True), audit
