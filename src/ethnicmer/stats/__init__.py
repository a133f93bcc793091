"""One statistics layer for every study (issue 16): subjects and seeds as the units.

- :mod:`~ethnicmer.stats.resampling`: cluster bootstrap over subjects (optionally
  stratified), seeds as a second level, permutation of subject-level labels
  (optionally within strata), random swaps of paired configurations per subject,
  p-values with the +1 correction.
- :mod:`~ethnicmer.stats.classification`: macro-F1 / UAR from per-subject
  confusion counts, vectorised over resamples; paired comparisons of two rows.
- :mod:`~ethnicmer.stats.groups`: a per-subject measure between two groups, and
  a factor's effect within strata (ethnicity within dataset, dataset within
  ethnicity).
- :mod:`~ethnicmer.stats.multiple`: the multiple-comparison policy (Holm within a
  confirmatory family, Benjamini–Hochberg within an exploratory one).
- :mod:`~ethnicmer.stats.power`: the minimum detectable effect of a test.
- :mod:`~ethnicmer.stats.effects`: GEE models of per-sample correctness.
- :mod:`~ethnicmer.stats.fairness`: group fairness metrics (fairlearn) with
  subject-bootstrap intervals.

Samples of one subject are not independent (same face, same session) and draws
of subjects from one fixed pool are not independent replicates, so no test here
treats samples or draws as units.
"""

REVISION = 2
"""The statistics' revision, part of the fingerprints of the stages that test and
estimate (prima facie, benchmark, activation maps): bumped when a figure they write
changes definition, so that tables made by an older definition are recomputed on the
next run (the benchmark's from the cached fold predictions, whose specs do not
include it: nothing is re-trained). 2: the GEE terms'
detectable odds ratios use an SE under the alternative, one per direction
(``mde`` above 1, ``mde_below`` below 1;
:func:`~ethnicmer.stats.power.wald_mde_by_direction`)."""
