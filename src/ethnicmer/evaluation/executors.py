"""Executors for LOSO folds: in this process, a local process pool, or Ray.

Every fold is a :class:`~ethnicmer.evaluation.training.FoldTask` run by
:func:`~ethnicmer.evaluation.training.run_fold`, a pure function of the task, so
the same config and seed give the same predictions on every executor (given the
same ``threads_per_fold``; thread count changes float summation order).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ethnicmer.config import ExecutorConfig
from ethnicmer.evaluation.training import FoldTask, run_fold
from ethnicmer.progress import progress


def _inline(tasks: Sequence[FoldTask], fn: Callable[[FoldTask], Any], label: str) -> list[Any]:
    return [fn(task) for task in progress(list(tasks), label)]


def _process_pool(
    tasks: Sequence[FoldTask], fn: Callable[[FoldTask], Any], workers: int, label: str
) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    results = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(fn, task) for task in tasks]
        for future in progress(as_completed(futures), label, total=len(futures)):
            results.append(future.result())
    return results


def _ray(
    tasks: Sequence[FoldTask],
    fn: Callable[[FoldTask], Any],
    cfg: ExecutorConfig,
    threads: int,
    label: str,
) -> list[Any]:
    import ray

    if not ray.is_initialized():
        if cfg.address is None:
            ray.init(
                num_cpus=cfg.workers,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        else:
            ray.init(address=cfg.address, log_to_driver=False, configure_logging=False)
    remote = ray.remote(num_cpus=threads)(fn)
    pending = [remote.remote(task) for task in tasks]
    results = []

    def finished() -> Any:
        nonlocal pending
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    for result in progress(finished(), label, total=len(pending)):
        results.append(result)
    return results


def default_threads(cfg: ExecutorConfig) -> int:
    """torch threads per fold: the setting, else all cores inline and 1 in pools."""
    if cfg.threads_per_fold is not None:
        return cfg.threads_per_fold
    return (multiprocessing.cpu_count() or 1) if cfg.kind == "inline" else 1


def execute(
    tasks: Sequence[FoldTask], cfg: ExecutorConfig, label: str = "LOSO folds"
) -> list[dict[str, Any]]:
    """Run ``tasks`` on the configured executor; return each fold's summary.

    Raises:
        whatever a fold raises (the first failure stops the run; finished folds
        keep their files, so a re-run resumes).
    """
    if not tasks:
        return []
    if cfg.kind == "inline":
        return _inline(tasks, run_fold, label)
    if cfg.kind == "process":
        return _process_pool(tasks, run_fold, cfg.workers, label)
    return _ray(tasks, run_fold, cfg, default_threads(cfg), label)
