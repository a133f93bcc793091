"""Stage runner: every stage writes its outputs under ``runs/<study>/<stage>/``.

Each finished stage writes ``manifest.json`` last, recording the fingerprint of
its inputs (the stage's config section, the seed, the input files' digests and the
package version), the resolved config, the seed, the package versions, the output
files with their SHA-256 and the wall time. A stage whose manifest matches its
current fingerprint and whose outputs are intact is skipped, so re-running
``ethnicmer run CONFIG`` after an interruption resumes at the first unfinished stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ethnicmer import __version__
from ethnicmer.config import StudyConfig

MANIFEST = "manifest.json"
_VERSIONED = ("numpy", "pandas", "scikit-learn", "torch", "torchvision", "pydantic", "Pillow")


def package_versions() -> dict[str, str]:
    """Versions of Python, ethnicmer and the libraries results depend on."""
    versions = {"python": platform.python_version(), "ethnicmer": __version__}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    """Digest of a folder's listing: relative path, size and mtime of every file.

    Cheap enough for folders of tens of thousands of frames; contents are not read.
    A missing folder has the digest ``"missing"``.
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
                f"{path.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode()
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
    """

    name: str
    inputs: Callable[[StudyConfig], dict[str, Any]]
    run: Callable[[StudyConfig, Path], list[Path]]
    config_section: Callable[[StudyConfig], Any]


@dataclass(frozen=True)
class StageResult:
    """What happened to a stage: run or skipped, its outputs and wall time (seconds)."""

    name: str
    skipped: bool
    outputs: list[Path]
    seconds: float
    manifest: Path


def fingerprint(stage: Stage, cfg: StudyConfig, inputs: dict[str, Any] | None = None) -> str:
    """Hash of the stage's config section, seed, inputs and ethnicmer version.

    ``inputs`` is ``stage.inputs(cfg)`` when the caller has it already (digesting
    large frame folders twice is wasted I/O).
    """
    material = {
        "stage": stage.name,
        "config": stage.config_section(cfg),
        "seed": cfg.seed,
        "inputs": stage.inputs(cfg) if inputs is None else inputs,
        "ethnicmer": __version__,
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _up_to_date(manifest_path: Path, expected: str) -> bool:
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("fingerprint") != expected:
        return False
    for output in manifest.get("outputs", []):
        path = Path(output["path"])
        if not path.is_file() or path.stat().st_size != output["bytes"]:
            return False
        if output.get("sha256") and file_digest(path) != output["sha256"]:
            return False
    return True


def write_json_atomic(path: Path, payload: Any, sort_keys: bool = False) -> None:
    """Write JSON to ``path`` through a temporary file, so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=sort_keys, default=str) + "\n")
    os.replace(tmp, path)


def run_stage(stage: Stage, cfg: StudyConfig, force: bool = False) -> StageResult:
    """Run ``stage`` unless its outputs are up to date (or ``force``).

    Returns:
        A :class:`StageResult`; ``skipped`` tells whether the stage was up to date.
    """
    out_dir = cfg.run_dir / stage.name
    manifest_path = out_dir / MANIFEST
    inputs = stage.inputs(cfg)
    expected = fingerprint(stage, cfg, inputs)
    if not force and _up_to_date(manifest_path, expected):
        manifest = json.loads(manifest_path.read_text())
        outputs = [Path(o["path"]) for o in manifest["outputs"]]
        return StageResult(stage.name, True, outputs, 0.0, manifest_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    outputs = stage.run(cfg, out_dir)
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
            "versions": package_versions(),
            "outputs": [
                {"path": str(p), "bytes": p.stat().st_size, "sha256": file_digest(p)}
                for p in outputs
            ],
            "started": started.isoformat(),
            "seconds": round(seconds, 3),
        },
    )
    return StageResult(stage.name, False, outputs, seconds, manifest_path)
