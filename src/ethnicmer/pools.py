"""Stopping a local process pool at once (Ctrl-C, SIGTERM), for the fold and flow pools."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

STOP_GRACE_SECONDS = 5.0
"""How long terminated workers get to exit before they are killed (SIGKILL)."""


def stop_pool(pool: ProcessPoolExecutor, grace: float = STOP_GRACE_SECONDS) -> None:
    """Cancel the queued jobs and end the worker processes now: SIGTERM to each, then
    SIGKILL to any still alive after ``grace`` seconds (one deadline for all workers),
    so that the interpreter's exit, which joins the pool's workers, cannot hang.

    A job stopped mid-way leaves at most files written by atomic renames
    (:func:`ethnicmer.io.atomic_path`): a fold's maps or checkpoint may already be in
    place, its predictions file is not, so a re-run trains that fold again; a stray
    temporary file is removed by the next run. Finished jobs are untouched. The
    workers are reached through the executor's process table (Python < 3.14 has no
    public ``terminate_workers``).
    """
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=grace)
    pool.shutdown(wait=False, cancel_futures=True)
