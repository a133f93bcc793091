"""Executors for LOSO folds: in this process, a local process pool, or Ray.

Every fold is a :class:`~ethnicmer.evaluation.training.FoldTask` run by
:func:`~ethnicmer.evaluation.training.run_fold`, a pure function of the task, so
the same config and seed give the same predictions on every executor (given the
same ``threads_per_fold``; thread count changes float summation order).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

from ethnicmer.config import ExecutorConfig
from ethnicmer.errors import EthnicmerError, FoldError
from ethnicmer.evaluation.training import FoldTask, run_fold
from ethnicmer.pools import stop_pool
from ethnicmer.progress import progress


def fold_name(task: FoldTask) -> str:
    """``row <name>, seed <s>, test subject <dataset/subject>``: a fold in messages."""
    return f"row {task.model.name}, seed {task.run_seed}, test subject {task.test_subject}"


def _fold_failed(task: FoldTask, exc: BaseException, finished: int, cancelled: int) -> FoldError:
    detail = str(exc) if isinstance(exc, EthnicmerError) else f"{type(exc).__name__}: {exc}"
    return FoldError(
        f"fold failed ({fold_name(task)}): {detail}. {finished} fold(s) finished in this run "
        f"are kept; {cancelled} queued fold(s) were not started. Fix the cause and re-run "
        "to resume."
    )


def _inline(tasks: Sequence[FoldTask], fn: Callable[[FoldTask], Any], label: str) -> list[Any]:
    results = []
    for i, task in enumerate(progress(list(tasks), label, every=1)):
        try:
            results.append(fn(task))
        except Exception as exc:
            raise _fold_failed(task, exc, i, len(tasks) - i - 1) from exc
    return results


def _process_pool(
    tasks: Sequence[FoldTask],
    fn: Callable[[FoldTask], Any],
    workers: int,
    label: str,
    threads: int = 1,
) -> list[Any]:
    """Folds in a local process pool; the first failure cancels every queued fold.

    Folds already running when one fails finish (and keep their files); queued
    folds are cancelled, so the error shows after at most one fold's time, not
    after the whole queue. On Ctrl-C or SIGTERM (any ``BaseException`` here) the
    running folds are stopped too (:func:`~ethnicmer.pools.stop_pool`): the command
    returns at once instead of after the folds in flight.
    """
    context = multiprocessing.get_context("spawn")
    results = []
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_limit_threads, initargs=(threads,)
    )
    futures: dict[Future[Any], FoldTask] = {}
    try:
        # inside the try: submitting starts the workers, and an interrupt may land here
        futures.update((pool.submit(fn, task), task) for task in tasks)
        for future in progress(as_completed(futures), label, total=len(futures), every=1):
            try:
                results.append(future.result())
            except Exception as exc:
                cancelled = sum(f.cancel() for f in futures)
                pool.shutdown(wait=True, cancel_futures=True)
                raise _fold_failed(futures[future], exc, len(results), cancelled) from exc
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
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
    refs = {remote.remote(task): task for task in tasks}
    pending = list(refs)
    results = []

    def finished() -> Any:
        nonlocal pending
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref)
                raise _fold_failed(refs[done[0]], exc, len(results), len(pending)) from exc

    for result in progress(finished(), label, total=len(pending), every=1):
        results.append(result)
    return results


def default_threads(cfg: ExecutorConfig) -> int:
    """torch threads per fold: the setting, else all cores inline and 1 in pools (and auto)."""
    if cfg.threads_per_fold is not None:
        return cfg.threads_per_fold
    return (multiprocessing.cpu_count() or 1) if cfg.kind == "inline" else 1


def resolve(cfg: ExecutorConfig, n_tasks: int, accelerator: bool = False) -> ExecutorConfig:
    """``auto`` → a process pool of one worker per core (at most one per task), one
    torch thread each; inline with one thread on a single core, for a single task, or
    when the folds train on an accelerator (one process feeds the GPU)."""
    if cfg.kind != "auto":
        return cfg
    cores = os.cpu_count() or 1
    threads = default_threads(cfg)
    if cores < 2 or n_tasks < 2 or accelerator:
        return cfg.model_copy(update={"kind": "inline", "threads_per_fold": threads})
    return cfg.model_copy(
        update={"kind": "process", "workers": min(cores, n_tasks), "threads_per_fold": threads}
    )


def _limit_threads(threads: int) -> None:
    """Process-pool initializer: OpenMP/MKL/BLAS use ``threads`` (no oversubscription)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def execute(
    tasks: Sequence[FoldTask], cfg: ExecutorConfig, label: str = "LOSO folds"
) -> list[dict[str, Any]]:
    """Run ``tasks`` on the configured executor; return each fold's summary.

    Raises:
        FoldError: a fold failed; the message names its row, seed and test subject
            and the cause. The first failure stops the run (queued folds are
            cancelled); finished folds keep their files, so a re-run resumes.
    """
    if not tasks:
        return []
    cfg = resolve(cfg, len(tasks))
    if cfg.kind == "inline":
        return _inline(tasks, run_fold, label)
    if cfg.kind == "process":
        return _process_pool(tasks, run_fold, cfg.workers, label, default_threads(cfg))
    return _ray(tasks, run_fold, cfg, default_threads(cfg), label)
