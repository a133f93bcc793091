"""Resampling with the subject as the unit, seeds as a second level.

Every function returns *weights* or *labels* for ``n`` resamples at once, so that
statistics built from per-subject sufficient statistics (confusion counts,
subject means) are computed for all resamples with one matrix product:

- :func:`bootstrap_weights`: how often each subject is drawn in each resample
  (with replacement, within strata when given: each stratum keeps its size);
- :func:`seed_weights`: the same for seeds (the second level: resample seeds,
  then subjects);
- :func:`permuted_labels`: subject-level labels shuffled across subjects (within
  strata when given);
- :func:`random_swaps`: for a paired comparison of two configurations, which
  subjects swap A and B (each with probability ½; all seeds of a subject together).

Seeding: each function takes an integer ``seed`` and derives its own stream, so
the same seed gives the same resamples on every machine (NumPy PCG64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _rng(seed: int, purpose: str) -> np.random.Generator:
    """A stream for one purpose: the same seed gives independent streams per purpose."""
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag]))


@dataclass(frozen=True)
class Subjects:
    """Rows grouped by subject.

    Attributes:
        names: ``(G,)`` subject ids in sorted order.
        index: ``(N,)`` int64 position in ``names`` of each row's subject.
        strata: ``(G,)`` int64 stratum of each subject (all 0 without strata).
    """

    names: np.ndarray
    index: np.ndarray
    strata: np.ndarray

    @property
    def count(self) -> int:
        """Number of subjects G."""
        return len(self.names)


def subjects_of(ids: np.ndarray, strata: np.ndarray | None = None) -> Subjects:
    """Group rows by subject id.

    Args:
        ids: ``(N,)`` subject id per row (``dataset/subject``).
        strata: ``(N,)`` stratum per row (e.g. dataset); must be constant within a subject.

    Raises:
        ValueError: a subject's rows lie in more than one stratum.
    """
    names, index = np.unique(np.asarray(ids).astype(str), return_inverse=True)
    if strata is None:
        return Subjects(names, index.astype(np.int64), np.zeros(len(names), np.int64))
    levels, codes = np.unique(np.asarray(strata).astype(str), return_inverse=True)
    per_subject = np.full(len(names), -1, np.int64)
    for g in range(len(names)):
        found = np.unique(codes[index == g])
        if len(found) != 1:
            raise ValueError(f"subject {names[g]} lies in strata {list(levels[found])}")
        per_subject[g] = found[0]
    return Subjects(names, index.astype(np.int64), per_subject)


def bootstrap_weights(subjects: Subjects, n: int, seed: int) -> np.ndarray:
    """``(n, G)`` counts: how often each subject is drawn in each bootstrap resample.

    Subjects are drawn with replacement within their stratum, so every stratum
    keeps its number of subjects (a stratified cluster bootstrap).
    """
    rng = _rng(seed, "bootstrap")
    weights = np.zeros((n, subjects.count), dtype=np.float64)
    for stratum in np.unique(subjects.strata):
        members = np.flatnonzero(subjects.strata == stratum)
        k = len(members)
        weights[:, members] = rng.multinomial(k, np.full(k, 1.0 / k), size=n)
    return weights


def seed_weights(n_seeds: int, n: int, seed: int) -> np.ndarray:
    """``(n, S)`` weights summing to 1 per resample: seeds drawn with replacement.

    With one seed every weight is 1 (no seed level).
    """
    if n_seeds == 1:
        return np.ones((n, 1))
    rng = _rng(seed, "seeds")
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n) / n_seeds


def permuted_labels(labels: np.ndarray, strata: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``(n, G)`` subject labels, each row a permutation within strata.

    Args:
        labels: ``(G,)`` one label per subject.
        strata: ``(G,)`` stratum per subject; labels move only within a stratum.
    """
    rng = _rng(seed, "permute")
    labels = np.asarray(labels)
    out = np.empty((n, len(labels)), dtype=labels.dtype)
    for stratum in np.unique(strata):
        members = np.flatnonzero(np.asarray(strata) == stratum)
        block = np.tile(labels[members], (n, 1))
        out[:, members] = rng.permuted(block, axis=1)
    return out


def random_swaps(n_subjects: int, n: int, seed: int) -> np.ndarray:
    """``(n, G)`` bool: True where a subject's A and B predictions swap (p = ½)."""
    return _rng(seed, "swap").random((n, n_subjects)) < 0.5


def p_value(observed: float, null: np.ndarray, alternative: str = "two-sided") -> float:
    """Monte Carlo p-value with the +1 correction: ``(1 + #extreme) / (1 + B)``.

    Args:
        observed: the statistic on the data.
        null: ``(B,)`` the statistic under resampled labels (NaN entries dropped).
        alternative: ``two-sided`` (|T*| ≥ |T|), ``greater`` (T* ≥ T) or ``less``.
    """
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or len(null) == 0:
        return float("nan")
    tolerance = 1e-12
    if alternative == "two-sided":
        extreme = np.sum(np.abs(null) >= abs(observed) - tolerance)
    elif alternative == "greater":
        extreme = np.sum(null >= observed - tolerance)
    elif alternative == "less":
        extreme = np.sum(null <= observed + tolerance)
    else:
        raise ValueError(f"unknown alternative {alternative!r}")
    return float((1 + extreme) / (1 + len(null)))


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap draws (NaN draws dropped)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def standard_error(draws: np.ndarray) -> float:
    """Bootstrap standard error: the standard deviation of the draws (NaN dropped)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    return float(np.std(draws, ddof=1)) if len(draws) > 1 else float("nan")
