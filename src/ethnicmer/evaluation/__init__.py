"""Protocols (LOSO), inputs, training loop, fold runner, executors and metrics."""
