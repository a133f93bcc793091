"""Protocols (LOSO), inputs, training loop, fold runner, executors and metrics."""

REVISION = 1
"""The fold training's revision, part of every fold spec (``training_revision``) and of
the benchmark stage's fingerprint. Bump it with any change that alters what a fold with
an unchanged spec predicts: the models (:mod:`ethnicmer.models`), the training loop,
augmentation, nested selection, input preparation, or the maps made in the fold. Folds
of another revision are then trained again (the log names ``training_revision``); a
change of a statistic only is :data:`ethnicmer.stats.REVISION` (tables re-made, nothing
re-trained).

1: the code of ethnicmer 0.1.0 up to the introduction of this key. Fold specs written
before it (no ``training_revision``) are read as revision 1
(:data:`ethnicmer.studies.benchmark.SPEC_UPGRADES`): an assumption, not a check: earlier
changes of the training code were not recorded this way."""
