"""The study's stages in pipeline order, each a thin layer over the library.

``simulate`` (only when the config has a ``simulate`` section) → ``annotate`` → ``database`` →
``flow`` → ``prima_facie`` → ``benchmark`` → ``cam`` → ``report`` (each when
configured). Later stages read the files the database stage writes:
``runs/<study>/database/samples.parquet``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ethnicmer.config import MegcFlowSource, SmicSource, StudyConfig, TableSource
from ethnicmer.digests import DigestCache
from ethnicmer.errors import DataError
from ethnicmer.io import write_csv_atomic, write_json_atomic, write_parquet_atomic
from ethnicmer.pipeline import Stage, file_digest, input_digest

if TYPE_CHECKING:
    import pandas as pd


def _lazy(target: str) -> Callable[..., Any]:
    """``"module:function"`` imported on first call: the CLI starts without torch."""
    module, name = target.split(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


build_composite = _lazy("ethnicmer.data.composite:build_composite")
summarise = _lazy("ethnicmer.data.summary:summarise")
write_simulated_study = _lazy("ethnicmer.data.simulator:write_simulated_study")
write_synthetic_study = _lazy("ethnicmer.data.synthetic:write_synthetic_study")
run_annotate = _lazy("ethnicmer.annotate.stage:run_annotate")
attach_flows = _lazy("ethnicmer.flow.stage:attach_flows")
compute_flows = _lazy("ethnicmer.flow.stage:compute_flows")
export_megc_layout = _lazy("ethnicmer.flow.stage:export_megc_layout")
settings_from_config = _lazy("ethnicmer.flow.stage:settings_from_config")
write_report = _lazy("ethnicmer.report.study:write_report")
run_activation_maps = _lazy("ethnicmer.studies.activation_maps:run_activation_maps")
run_benchmark = _lazy("ethnicmer.studies.benchmark:run_benchmark")
run_prima_facie = _lazy("ethnicmer.studies.prima_facie:run_prima_facie")

SAMPLES_FILE = "samples.parquet"


def _database_inputs(cfg: StudyConfig) -> dict[str, Any]:
    data = cfg.data
    sources = []
    for source in data.sources:
        if isinstance(source, MegcFlowSource):
            sources.append(
                {
                    "csv": input_digest(source.root / source.csv),
                    "images": input_digest(source.root / "datasets"),
                    "casme2_sheet": input_digest(source.casme2_sheet),
                    "samm_sheet": input_digest(source.samm_sheet),
                }
            )
        elif isinstance(source, TableSource):
            sources.append({"table": input_digest(source.path), "files": _listed_files(source)})
        elif isinstance(source, SmicSource):
            sources.append(
                {"table": input_digest(source.table), "frames": input_digest(source.frames)}
            )
        else:
            sources.append(
                {"sheet": input_digest(source.sheet), "frames": input_digest(source.frames)}
            )
    from ethnicmer.data.demographics import builtin_table_path

    table = data.demographics.table
    return {
        "sources": sources,
        "demographics": input_digest(builtin_table_path() if table == "builtin" else Path(table)),
        "overrides": input_digest(data.demographics.overrides),
        "apex_corrections": input_digest(data.apex_corrections),
    }


def _listed_files(source: TableSource) -> str:
    """Listing digest of every file a ``table`` source names (path, size, mtime, ctime,
    inode; contents are digested by the database stage), so a replaced image re-runs it."""
    import hashlib

    from ethnicmer.data.sheets import read_table
    from ethnicmer.data.table import PATHS, resolve_path

    if not source.path.is_file():
        return "missing"
    try:
        table = read_table(source.path)
    except DataError:
        return "unreadable"
    folder = source.root if source.root is not None else source.path.parent
    digest = hashlib.sha256()
    columns = {c.strip().lower(): c for c in table.columns}
    for column in (columns[name] for name in PATHS if name in columns):
        for value in table[column]:
            path = resolve_path(value, folder)
            if not path:
                continue
            try:
                stat = Path(path).stat()
                line = (
                    f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}"
                )
            except OSError:
                line = f"{path}\tmissing"
            digest.update(f"{line}\n".encode())
    return digest.hexdigest()


def digest_cache(cfg: StudyConfig) -> DigestCache:
    """The study's file-digest cache (``runs/<study>/cache/digests.json``)."""
    return DigestCache(cfg.run_dir / "cache" / "digests.json")


def _run_database(cfg: StudyConfig, out_dir: Path) -> list[Path]:
    digests = digest_cache(cfg)
    database = build_composite(cfg.data, digests=digests)
    digests.save()
    outputs = {
        "samples.csv": database.samples,
        "exclusions.csv": database.exclusions,
        "demographics.csv": database.demographics,
        "overrides.csv": database.overrides,
    }
    written = [write_csv_atomic(frame, out_dir / name) for name, frame in outputs.items()]
    parquet = write_parquet_atomic(database.samples, out_dir / SAMPLES_FILE)
    summary = out_dir / "summary.json"
    write_json_atomic(summary, summarise(database.samples, database.exclusions))
    return [*written, parquet, summary]


def _simulate_inputs(cfg: StudyConfig) -> dict[str, Any]:
    return {"out": str(cfg.simulate.out) if cfg.simulate else None}


def _run_simulate(cfg: StudyConfig, out_dir: Path) -> list[Path]:
    assert cfg.simulate is not None
    writer = write_simulated_study if cfg.simulate.kind == "face" else write_synthetic_study
    manifest = writer(cfg.simulate, seed=cfg.seed)
    return [Path(p) for p in manifest]


def _stage_section(attr: str) -> Callable[[StudyConfig], Any]:
    """The JSON form of ``cfg.stages.<attr>`` (``None`` when the stage is not configured)."""

    def section(cfg: StudyConfig) -> Any:
        value = getattr(cfg.stages, attr)
        return json.loads(value.model_dump_json()) if value is not None else None

    return section


def _annotate_inputs(cfg: StudyConfig) -> dict[str, Any]:
    annotate = cfg.stages.annotate
    if annotate is None:
        return {}
    return {
        "predictions": [input_digest(t.path) for t in annotate.predictions],
        "overrides": input_digest(annotate.overrides),
        "data": _database_inputs(cfg) if annotate.estimator != "table" else None,
    }


ANNOTATE = Stage(
    name="annotate",
    inputs=_annotate_inputs,
    run=run_annotate,
    config_section=_stage_section("annotate"),
)

SIMULATE = Stage(
    name="simulate",
    inputs=_simulate_inputs,
    run=_run_simulate,
    config_section=lambda cfg: json.loads(cfg.simulate.model_dump_json()) if cfg.simulate else None,
)
DATABASE = Stage(
    name="database",
    inputs=_database_inputs,
    run=_run_database,
    config_section=lambda cfg: json.loads(cfg.data.model_dump_json()),
)


def _samples_file(cfg: StudyConfig) -> Path:
    return cfg.run_dir / DATABASE.name / SAMPLES_FILE


def _samples_input(cfg: StudyConfig) -> dict[str, Any]:
    path = _samples_file(cfg)
    return {"samples": file_digest(path) if path.is_file() else "missing"}


def _benchmark_inputs(cfg: StudyConfig) -> dict[str, Any]:
    flows = cfg.run_dir / "flow" / "flows.csv"
    has_flows = cfg.stages.flow is not None and flows.is_file()
    return {**_samples_input(cfg), "flows": file_digest(flows) if has_flows else None}


def _run_flow(cfg: StudyConfig, out_dir: Path) -> list[Path]:
    """Flow images for every sample with frames; ``flows.csv`` carries their digests.

    Also writes ``summary.json``: Tables I–III of the samples that remain after the
    flow stage's exclusions, with the database's and the flow stage's exclusions
    together (the report describes the samples actually studied).
    """
    assert cfg.stages.flow is not None
    samples = load_samples(cfg)
    settings = settings_from_config(cfg.stages.flow)
    flows, failed = compute_flows(
        samples,
        settings,
        cfg.run_dir / "cache" / "flow",
        cfg.stages.flow.workers,
        cfg.data.on_problem,
    )
    failed = failed.merge(
        samples[["dataset", "subject", "filename", "source_file", "source_row"]],
        on=["dataset", "subject", "filename"],
        how="left",
    )
    failed = failed.assign(stage="flow")
    digests = digest_cache(cfg)
    flows["flow_sha256"] = [digests.digest(path) for path in flows["flow_path"]]
    flows["apex_crop_sha256"] = [
        digests.digest(path) if path else "" for path in flows["apex_crop_path"]
    ]
    flows["flow_side"] = settings.size
    digests.save()
    written = [
        write_csv_atomic(flows, out_dir / "flows.csv"),
        write_csv_atomic(failed, out_dir / "exclusions.csv"),
    ]
    if cfg.stages.flow.export_png:
        written.append(export_megc_layout(samples, flows, out_dir / "megc"))
    import pandas as pd

    studied = attach_flows(samples, flows, failed)
    earlier = pd.read_csv(cfg.run_dir / DATABASE.name / "exclusions.csv", dtype=str)
    every = pd.concat([earlier.assign(stage="database"), failed], ignore_index=True)
    written.append(write_json_atomic(out_dir / "summary.json", summarise(studied, every)))
    return written


FLOW = Stage(
    name="flow",
    inputs=_samples_input,
    run=_run_flow,
    config_section=_stage_section("flow"),
)


def samples_with_flows(cfg: StudyConfig) -> pd.DataFrame:
    """The samples table with flow images from the flow stage attached (if configured)."""
    samples = load_samples(cfg)
    if cfg.stages.flow is None:
        return samples
    import pandas as pd

    folder = cfg.run_dir / FLOW.name
    if not (folder / "flows.csv").is_file():
        raise DataError(f"{folder / 'flows.csv'} does not exist; run `ethnicmer flow` first")
    flows = pd.read_csv(folder / "flows.csv", dtype=str, keep_default_na=False)
    failed = pd.read_csv(folder / "exclusions.csv", dtype=str, keep_default_na=False)
    return attach_flows(samples, flows, failed)


def _runtime(name: str) -> Callable[[StudyConfig], dict[str, Any]]:
    """The resolved device and precision (and, for the benchmark, torch threads per
    fold) of a stage that computes with torch, for its manifest."""

    def runtime(cfg: StudyConfig) -> dict[str, Any]:
        from ethnicmer.devices import resolve_compute
        from ethnicmer.evaluation.executors import default_threads

        section = getattr(cfg.stages, name)
        compute = resolve_compute(section.device, getattr(section, "precision", "32"))
        out: dict[str, Any] = {"compute": compute.spec()}
        if name == "benchmark":
            out["threads_per_fold"] = default_threads(section.executor)
        return out

    return runtime


def _study_stage(
    name: str,
    study: Callable[[StudyConfig, pd.DataFrame, Path], list[Path]],
    inputs: Callable[[StudyConfig], dict[str, Any]],
) -> Stage:
    """A stage that runs ``study(cfg, samples with flows, out_dir)``."""

    def run(cfg: StudyConfig, out_dir: Path) -> list[Path]:
        return study(cfg, samples_with_flows(cfg), out_dir)

    return Stage(
        name=name,
        inputs=inputs,
        run=run,
        config_section=_stage_section(name),
        runtime=_runtime(name),
    )


def _tracked_benchmark_inputs(cfg: StudyConfig) -> dict[str, Any]:
    """The benchmark's inputs, its tracking settings, the statistics' revision and the
    training code's revision (adding tracking to a finished study, or a new definition
    of a figure, re-runs the stage's tables, not its folds; a new training revision
    re-trains the folds, whose specs record it)."""
    from ethnicmer import evaluation, stats

    tracking = json.loads(cfg.tracking.model_dump_json()) if cfg.tracking is not None else None
    return {
        **_benchmark_inputs(cfg),
        "tracking": tracking,
        "statistics": stats.REVISION,
        "training": evaluation.REVISION,
    }


def _prima_facie_inputs(cfg: StudyConfig) -> dict[str, Any]:
    """The samples and flow images, and the statistics' revision (its tests, intervals and
    detectable effects come from :mod:`ethnicmer.stats`)."""
    from ethnicmer import stats

    return {**_benchmark_inputs(cfg), "statistics": stats.REVISION}


PRIMA_FACIE = _study_stage("prima_facie", run_prima_facie, _prima_facie_inputs)
BENCHMARK = _study_stage("benchmark", run_benchmark, _tracked_benchmark_inputs)


def _cam_inputs(cfg: StudyConfig) -> dict[str, Any]:
    """The samples, the flow images and the fold specs of the models the maps explain.

    Each row's ``spec.json`` holds the digests of the inputs its checkpoints were
    trained on, so a re-trained row (or a replaced flow image) re-makes the maps;
    the benchmark's predictions change with any re-trained fold. The benchmark's
    tables do not enter: a new table or pair of the benchmark does not re-make the
    maps. The statistics' revision (``stats.REVISION``) does, since the maps' group
    tests and claims come from :mod:`ethnicmer.stats`.
    """
    from ethnicmer import stats

    predictions = cfg.run_dir / BENCHMARK.name / "predictions.csv"
    models = cfg.run_dir / BENCHMARK.name / "models"
    specs = {
        str(path.relative_to(models)): file_digest(path)
        for path in sorted(models.glob("*/seed-*/spec.json"))
    }
    return {
        **_benchmark_inputs(cfg),
        "predictions": file_digest(predictions) if predictions.is_file() else "missing",
        "fold_specs": specs,
        "statistics": stats.REVISION,
    }


CAM = _study_stage("cam", run_activation_maps, _cam_inputs)


def _report_inputs(cfg: StudyConfig) -> dict[str, Any]:
    """The manifests of every earlier stage: a re-run stage re-makes the report."""
    manifests = {}
    for stage in planned_stages(cfg):
        path = cfg.run_dir / stage.name / "manifest.json"
        if stage.name != "report":
            manifests[stage.name] = file_digest(path) if path.is_file() else "missing"
    return manifests


REPORT = Stage(
    name="report",
    inputs=_report_inputs,
    run=write_report,
    config_section=_stage_section("report"),
)


def planned_stages(cfg: StudyConfig) -> list[Stage]:
    """The stages ``ethnicmer run`` carries out for ``cfg``, in order."""
    stages = [SIMULATE] if cfg.simulate is not None else []
    if cfg.stages.annotate is not None:
        stages.append(ANNOTATE)
    stages.append(DATABASE)
    if cfg.stages.flow is not None:
        stages.append(FLOW)
    if cfg.stages.prima_facie is not None:
        stages.append(PRIMA_FACIE)
    if cfg.stages.benchmark is not None:
        stages.append(BENCHMARK)
    if cfg.stages.cam is not None:
        stages.append(CAM)
    if cfg.stages.report is not None:
        stages.append(REPORT)
    return stages


def load_samples(cfg: StudyConfig) -> pd.DataFrame:
    """The samples table written by the database stage.

    Raises:
        DataError: the database stage has not run for this study.
    """
    import pandas as pd

    path = _samples_file(cfg)
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; run `ethnicmer db build` (or `ethnicmer run`) first"
        )
    return pd.read_parquet(path)
