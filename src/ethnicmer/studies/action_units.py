"""Action units coded in the sheets, per ethnicity group (toward paper IV-C, Figs. 3–4).

The paper reads activation maps by eye: for Positive, Asians bilateral and larger
AU6/AU12, non-Asians one-sided AU12; for Surprise, non-Asians AU26 (jaw drop),
Asians the upper face (AU1/AU2/AU5). The FACS coders' action units are ground
truth independent of any model, so the same claims can be counted from the
coding sheets and tested with Fisher's exact test per feature, over subjects.

AU strings are parsed leniently: ``+`` separates AUs; a leading ``L``/``R`` marks
a unilateral AU, a leading ``A`` an asymmetric one; ``T``/``B`` prefixes (SAMM; not
explained in its symbol key) count as present without a side; a trailing letter
``A``–``E`` is the intensity (``10A/B``: intensity A or B); ``ref(X)`` (SAMM)
counts as X; ``(R6 or R12)`` counts every alternative as present and is
recorded as ambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
from scipy.stats import fisher_exact

_TOKEN = re.compile(r"^(?P<side>[LRATB])?(?P<au>\d+)(?P<intensity>[A-E])?$")


@dataclass
class CodedAUs:
    """The AUs of one sample: AU number → set of sides (``"L"``, ``"R"``, ``"A"``, ``"both"``)."""

    sides: dict[int, set[str]] = field(default_factory=dict)
    ambiguous: bool = False
    unparsed: list[str] = field(default_factory=list)

    def has(self, au: int) -> bool:
        """Whether ``au`` is coded (on any side)."""
        return au in self.sides

    def unilateral(self, au: int) -> bool:
        """Coded on one side only (``L`` or ``R`` without the other and never bilateral)."""
        sides = self.sides.get(au, set())
        return bool(sides) and sides <= {"L", "R"} and len(sides) == 1


def parse_action_units(text: str) -> CodedAUs:
    """Parse a sheet's ``Action Units`` cell, e.g. ``"R6A+R12"``, ``"(R6 or R12)+R15"``."""
    coded = CodedAUs()
    for raw in str(text).split("+"):
        token = re.sub(r"(?i)ref\(([^)]*)\)", r"\1", raw).strip().strip("()").strip()
        if not token:
            continue
        parts = [t.strip().strip("()") for t in re.split(r"\s+or\s+|/", token)]
        alternatives = [t for t in parts if re.search(r"\d", t)]  # "10A/B": B is an intensity
        if len(alternatives) > 1:
            coded.ambiguous = True
        for alternative in alternatives:
            match = _TOKEN.match(alternative.replace(" ", ""))
            if match is None:
                coded.unparsed.append(alternative)
                continue
            side = match.group("side") or "both"
            coded.sides.setdefault(int(match.group("au")), set()).add(side)
    return coded


FEATURES: dict[str, tuple[str, object]] = {
    "AU12": ("Positive", lambda c: c.has(12)),
    "AU6+AU12": ("Positive", lambda c: c.has(6) and c.has(12)),
    "AU12 one-sided (of AU12)": ("Positive", lambda c: c.unilateral(12) if c.has(12) else None),
    "upper face AU1/2/5": ("Surprise", lambda c: c.has(1) or c.has(2) or c.has(5)),
    "AU26 jaw drop": ("Surprise", lambda c: c.has(26)),
}
"""Feature name → (emotion class, predicate on the coded AUs; ``None`` = not applicable)."""


def au_feature_table(
    samples: pd.DataFrame, groups: tuple[str, str] | None = None, by: str = "ethnicity"
) -> pd.DataFrame:
    """Subjects showing each AU feature per group, with Fisher's exact test over subjects.

    Samples of one subject are not independent, so the unit is the subject: a
    subject shows a feature in an emotion class if any of its samples of that class
    does (and the feature applies to it if it applies to any of them). Fisher's
    exact test compares the two groups' subject counts; the features form one
    exploratory family (Benjamini–Hochberg, ``p_fisher_adjusted``).

    Args:
        samples: the samples table (``dataset``, ``subject``, ``label``,
            ``action_units`` and ``by`` columns).
        groups: the two groups compared (default: the two present, sorted).
        by: grouping column (``ethnicity``; or a dataset × ethnicity column).

    Returns:
        One row per feature: emotion, per group ``n_<g>`` (subjects it applies to),
        ``k_<g>`` (subjects showing it) and ``share_<g>``, ``samples_<g>``, the
        odds ratio, the difference of the shares (first − second group) with the
        smallest difference the test could detect (``mde_difference``, 80 % power,
        :func:`~ethnicmer.stats.power.proportion_difference_mde`) and the two-sided
        Fisher p (NaN when a group has no subject), with its family and adjusted p.
    """
    from ethnicmer.stats.multiple import add_family
    from ethnicmer.stats.power import proportion_difference_mde

    present = sorted(samples[by].dropna().unique())
    names = list(groups) if groups is not None else present
    rows = []
    for name, (emotion, predicate) in FEATURES.items():
        part = samples[(samples["label"] == emotion) & (samples["action_units"].fillna("") != "")]
        record: dict[str, object] = {"feature": name, "emotion": emotion}
        table = []
        for group in names:
            mine = part[part[by] == group]
            values = pd.DataFrame(
                {
                    "subject": mine["dataset"].astype(str) + "/" + mine["subject"].astype(str),
                    "value": [predicate(parse_action_units(t)) for t in mine["action_units"]],
                }
            ).dropna()
            per_subject = values.groupby("subject")["value"].any()
            k, n = int(per_subject.sum()), len(per_subject)
            record[f"k_{group}"], record[f"n_{group}"] = k, n
            record[f"share_{group}"] = k / n if n else float("nan")
            record[f"samples_{group}"] = len(values)
            table.append([k, n - k])
        if len(names) == 2 and all(sum(r) > 0 for r in table):
            odds, p = fisher_exact(table)
            record["odds_ratio"], record["p_fisher"] = float(odds), float(p)
            shares = (record[f"share_{names[0]}"], record[f"share_{names[1]}"])
            record["difference"] = float(shares[0] - shares[1])
            record["mde_difference"] = proportion_difference_mde(
                shares, (record[f"n_{names[0]}"], record[f"n_{names[1]}"])
            )
        else:
            record["odds_ratio"], record["p_fisher"] = float("nan"), float("nan")
            record["difference"] = record["mde_difference"] = float("nan")
        rows.append(record)
    frame = pd.DataFrame(rows)
    return add_family(frame, "p_fisher", "coded AUs per group (subjects)", "exploratory")
