"""The flow stage: an optical-flow image for every sample that has raw frames.

Samples from MEGC flow sets already carry a flow image and are left as they are.
For the others the onset and apex frames go through
:func:`~ethnicmer.flow.compute.cached_flow` in a process pool. Outputs under
``runs/<study>/flow/``: ``flows.csv`` (keys → ``flow_path`` of the cached
``.npy`` image), ``exclusions.csv`` (samples whose flow failed, with the reason,
when ``data.on_problem: exclude``) and, with ``export_png``, the MEGC2019 layout
(``megc/combined_3_class2_for_optical_flow.csv`` and ``megc/datasets/...``)
that the MEGC reader re-imports.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ethnicmer.data.megc import APEX_DIR, CSV_NAME, FLOW_DIR
from ethnicmer.data.subjects import format_key
from ethnicmer.errors import DataError, EthnicmerError, FlowStageError
from ethnicmer.flow.compute import FlowSettings, cached_flow, companion_paths, read_gray
from ethnicmer.flow.image import save_megc_png
from ethnicmer.io import atomic_path, write_csv_atomic
from ethnicmer.pools import stop_pool
from ethnicmer.progress import progress


def _one(job: tuple[str, str, FlowSettings, str, str]) -> tuple[str, str]:
    """``(flow path, "")``, or ``("", reason)`` when the sample's input is at fault.

    Raises:
        FlowStageError: anything else (a library error, a bug): the run must stop, not
            list the sample as an exclusion; the message names the sample.
    """
    import cv2

    cv2.setNumThreads(1)
    onset, apex, settings, cache_dir, where = job
    try:
        return str(cached_flow(Path(onset), Path(apex), settings, Path(cache_dir), where)), ""
    except EthnicmerError as exc:
        return "", str(exc)
    except Exception as exc:
        raise FlowStageError(
            f"optical flow crashed on {where}: {type(exc).__name__}: {exc}"
        ) from exc


def _run_jobs(
    jobs: list[tuple[str, str, FlowSettings, str, str]], workers: int
) -> list[tuple[str, str]]:
    """Run :func:`_one` over ``jobs`` in order; in a process pool the first crash, Ctrl-C
    or SIGTERM stops every queued and running job (finished flow images stay in the
    cache, so a re-run resumes)."""
    if workers <= 1 or len(jobs) <= 1:
        return [_one(job) for job in progress(jobs, "optical flow")]
    results: dict[int, tuple[str, str]] = {}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_one, job): i for i, job in enumerate(jobs)}
        for future in progress(as_completed(futures), "optical flow", total=len(jobs)):
            results[futures[future]] = future.result()
    except BaseException:
        stop_pool(pool)  # a crash, Ctrl-C or SIGTERM: no flow job keeps running
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(jobs))]


def compute_flows(
    samples: pd.DataFrame, settings: FlowSettings, cache_dir: Path, workers: int, on_problem: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flow images of every sample with raw frames and no flow image yet.

    Returns:
        ``(flows, exclusions)``: ``flows`` has ``dataset, subject, filename,
        flow_path`` (``.npy``, ``(3, size, size)`` float32), ``apex_crop_path``
        (the aligned apex crop, grey PNG) and ``landmarks_path`` (``(68, 2)``
        onset landmarks in that crop, normalised to [0, 1]; empty with
        ``align: none``); ``exclusions`` lists samples whose flow failed with the reason.

    Raises:
        DataError: with ``on_problem: error``, every failing sample and its reason.
    """
    todo = samples[
        (samples["flow_path"].fillna("") == "") & (samples["onset_path"].fillna("") != "")
    ]
    jobs = [
        (
            r.onset_path,
            r.apex_path,
            settings,
            str(cache_dir),
            f"{format_key(r.dataset, r.subject, r.filename)} [{r.onset_path}]",
        )
        for r in todo.itertuples()
    ]
    results = _run_jobs(jobs, workers)
    keys = todo[["dataset", "subject", "filename"]].reset_index(drop=True)
    paths = [p for p, _ in results]
    errors = [e for _, e in results]
    crops = [companion_paths(Path(p)) if p else (Path(), Path()) for p in paths]
    flows = keys.assign(
        flow_path=paths,
        apex_crop_path=[str(c) if p else "" for p, (c, _) in zip(paths, crops, strict=True)],
        landmarks_path=[
            str(lm) if p and lm.is_file() else "" for p, (_, lm) in zip(paths, crops, strict=True)
        ],
    )[[bool(p) for p in paths]].reset_index(drop=True)
    failed = keys.assign(reason=errors)[[bool(e) for e in errors]].reset_index(drop=True)
    if on_problem == "error" and not failed.empty:
        listed = "\n  ".join(failed["reason"].head(25))
        raise DataError(
            f"optical flow failed for {len(failed)} sample(s) (set data.on_problem: exclude "
            f"to list them as exclusions instead):\n  {listed}"
        )
    return flows, failed


def export_megc_layout(samples: pd.DataFrame, flows: pd.DataFrame, root: Path) -> Path:
    """Write flows in the MEGC2019 PNG layout under ``root`` (8-bit; R = u, G = v, B = strain).

    Apex crops are the aligned apex frames (grayscale replicated to RGB). Returns
    the CSV path; :func:`ethnicmer.data.megc.read_megc_flow_set` reads it back.
    """
    from PIL import Image

    merged = flows.merge(samples, on=["dataset", "subject", "filename"], suffixes=("", "_sample"))
    lines = []
    for row in merged.itertuples():
        image = np.load(row.flow_path)
        save_megc_png(image, root / FLOW_DIR / f"{row.subject}_{row.filename} .png")
        apex = read_gray(Path(row.apex_path))
        crop = Image.fromarray(apex).convert("RGB").resize((224, 224))
        name = f"{row.subject}_{row.filename}.jpg"
        with atomic_path(root / APEX_DIR / name) as tmp:
            crop.save(tmp, format="JPEG", quality=95)
        lines.append(
            {
                "dataset": row.dataset,
                "sub": row.subject,
                "filename_o": row.filename,
                "label": row.label_id,
                "apex": row.apex,
                "imagename": name,
                "sub_filename": f"{row.subject}_{row.filename}",
            }
        )
    return write_csv_atomic(pd.DataFrame(lines), root / CSV_NAME)


FLOW_COLUMNS = (
    "flow_path",
    "apex_crop_path",
    "landmarks_path",
    "flow_sha256",
    "apex_crop_sha256",
    "flow_side",
)
"""Columns of ``flows.csv`` that :func:`attach_flows` copies into the samples table."""


def attach_flows(
    samples: pd.DataFrame, flows: pd.DataFrame | None, exclusions: pd.DataFrame | None
) -> pd.DataFrame:
    """Samples with :data:`FLOW_COLUMNS` filled from the flow stage where a sample has
    no flow image of its own (a MEGC set keeps its own); failed samples removed.

    The removed samples are those listed in the flow stage's ``exclusions.csv``.
    """
    out = samples.copy()
    if flows is not None and not flows.empty:
        index = pd.MultiIndex.from_frame(samples[["dataset", "subject", "filename"]])
        lookup = flows.set_index(["dataset", "subject", "filename"])
        from_flow = lookup["flow_path"].reindex(index).fillna("").astype(str).to_numpy() != ""
        own = out["flow_path"].fillna("").astype(str).to_numpy() != ""
        take = from_flow & ~own
        for column in FLOW_COLUMNS:
            if column not in lookup:  # a flows.csv written before the column existed
                continue
            filled = lookup[column].reindex(index).to_numpy()
            if column == "flow_side":
                current = out[column] if column in out else pd.Series(pd.NA, index=out.index)
                out[column] = pd.array(
                    np.where(take, pd.to_numeric(filled, errors="coerce"), current),
                    dtype="Int64",
                )
                continue
            current = (
                out[column].fillna("").astype(str).to_numpy()
                if column in out
                else np.full(len(out), "", dtype=object)
            )
            filled = pd.Series(filled).fillna("").astype(str).to_numpy()
            out[column] = np.where(take, filled, current)
    if exclusions is not None and not exclusions.empty:
        dropped = pd.MultiIndex.from_frame(exclusions[["dataset", "subject", "filename"]])
        keep = ~pd.MultiIndex.from_frame(out[["dataset", "subject", "filename"]]).isin(dropped)
        out = out[keep]
    return out.reset_index(drop=True)


def settings_from_config(cfg: Any) -> FlowSettings:
    """:class:`FlowSettings` from a ``stages.flow`` config section."""
    return FlowSettings(
        align=cfg.align,
        detect=cfg.detect,
        margin=cfg.margin,
        crop_size=cfg.crop_size,
        method=cfg.method,
        params=dict(cfg.params),
        size=cfg.size,
        normalise=cfg.normalise,
    )
