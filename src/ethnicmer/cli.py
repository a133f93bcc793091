"""The ``ethnicmer`` command line: one Typer app, each command a thin layer.

Every study command takes a config path and has ``--json`` for scripting (JSON on
stdout, status lines on stderr). Errors in configs or data exit with status 2 and
a message naming the file, row or sample.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec

import typer
from rich.console import Console
from rich.table import Table

from ethnicmer import __version__
from ethnicmer.config import StudyConfig, load_config
from ethnicmer.errors import ConfigError, EthnicmerError
from ethnicmer.pipeline import StageResult, run_stage, study_lock
from ethnicmer.progress import log
from ethnicmer.stages import (
    ANNOTATE,
    BENCHMARK,
    CAM,
    DATABASE,
    FLOW,
    PRIMA_FACIE,
    REPORT,
    SIMULATE,
    planned_stages,
)

P = ParamSpec("P")

app = typer.Typer(
    help="Micro-expression recognition studies that take ethnicity seriously.", no_args_is_help=True
)
db_app = typer.Typer(
    help="The ethnicity-annotated composite database (paper III-A, Tables I–III).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")

ConfigArg = Annotated[Path, typer.Argument(help="study config YAML", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run stages even when up to date")]

_out = Console(width=None if sys.stdout.isatty() else 160)


def _fail(exc: EthnicmerError) -> NoReturn:
    print(f"error: {exc}", file=sys.stderr)
    raise typer.Exit(code=2)


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

TERMINATED = 143
"""Exit status after SIGTERM (128 + SIGTERM), as shells report it."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM raised where the program is, so that the same cleanup as for Ctrl-C runs:
    temporary files removed, running folds and flow jobs stopped."""


def _raise_terminated(signum: int, frame: object) -> NoReturn:
    raise _Terminated


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`_Terminated` (the default would end
    the process without cleanup, leaving fold workers training).

    Only where SIGTERM has its default action, in the main thread (the only one that
    may set a handler): an ignored SIGTERM or a host program's own handler is left as
    it is. A library that installs its own handler meanwhile (``ray.init`` does, so
    with ``executor: ray`` SIGTERM ends the command Ray's way, status 1) keeps it.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _guarded(command: Callable[P, None]) -> Callable[P, None]:
    """Answer every bad input, OS error, Ctrl-C and SIGTERM with one ``error:`` line.

    Exit status 2 for bad configs, data and outputs (the message names the file,
    row or sample), 130 after Ctrl-C, 143 after SIGTERM. Finished stages and folds
    are kept, so re-running the same command resumes.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            with _sigterm_raises():
                command(*args, **kwargs)
        except EthnicmerError as exc:
            _fail(exc)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            reason = exc.strerror or str(exc)
            print(f"error: {where}{reason}", file=sys.stderr)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (_Terminated)
            what, code = (
                ("terminated (SIGTERM)", TERMINATED)
                if isinstance(exc, _Terminated)
                else ("interrupted", INTERRUPTED)
            )
            print(
                f"error: {what}; finished stages and folds are kept: re-run the same "
                "command to resume",
                file=sys.stderr,
            )
            raise typer.Exit(code=code) from None

    return wrapper


def _result_record(result: StageResult) -> dict[str, Any]:
    return {
        "stage": result.name,
        "status": "up to date" if result.skipped else "done",
        "seconds": round(result.seconds, 2),
        "manifest": str(result.manifest),
        "outputs": [str(p) for p in result.outputs],
    }


def _run_until(cfg: StudyConfig, name: str, force: bool = False) -> StageResult:
    """Run the planned stages up to and including ``name`` (``force`` applies to it alone)."""
    if name not in {stage.name for stage in planned_stages(cfg)}:
        raise ConfigError(f"the config has no stages.{name} section")
    with study_lock(cfg):
        for stage in planned_stages(cfg):
            result = run_stage(stage, cfg, force=force and stage.name == name)
            if stage.name == name:
                return result
    raise AssertionError("unreachable")


def _run_study(cfg: StudyConfig, force: bool) -> list[dict[str, Any]]:
    records = []
    with study_lock(cfg):
        for stage in planned_stages(cfg):
            result = run_stage(stage, cfg, force=force)
            status = "up to date, skipped" if result.skipped else f"done in {result.seconds:.1f} s"
            log(f"[{cfg.study}] stage {stage.name}: {status}")
            records.append(_result_record(result))
    return records


@app.command()
@_guarded
def run(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run every stage the config lists, skipping stages whose outputs are up to date."""
    cfg = load_config(config)
    records = _run_study(cfg, force)
    if json_out:
        print(
            json.dumps(
                {"study": cfg.study, "run_dir": str(cfg.run_dir), "stages": records}, indent=2
            )
        )
    else:
        _print_summary(cfg, studied=True)
        if cfg.stages.prima_facie is not None:
            _print_prima_facie(cfg)
        if cfg.stages.benchmark is not None:
            _print_benchmark(cfg)
        if cfg.stages.cam is not None:
            _print_cam(cfg)
        _out.print(f"study {cfg.study}: outputs under {cfg.run_dir}")


def demo_config_path() -> Path:
    """The built-in demo config shipped with the package (same file as configs/demo.yaml)."""
    return Path(str(resources.files("ethnicmer") / "resources" / "demo.yaml"))


@app.command()
@_guarded
def demo(force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run the built-in demo study (synthetic data, small settings)."""
    run(demo_config_path(), force=force, json_out=json_out)


@db_app.command("build")
@_guarded
def db_build(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Write the samples table and the exclusions table of the composite database."""
    cfg = load_config(config)
    records = [_result_record(_run_until(cfg, DATABASE.name, force))]
    summary = json.loads((cfg.run_dir / DATABASE.name / "summary.json").read_text())
    if json_out:
        print(json.dumps({"stages": records, "totals": summary["totals"]}, indent=2))
        return
    totals = summary["totals"]
    _out.print(
        f"{totals['samples']} samples from {totals['subjects']} subjects; "
        f"{totals['excluded']} excluded (see {cfg.run_dir / DATABASE.name / 'exclusions.csv'})"
    )
    _out.print(f"samples table: {cfg.run_dir / DATABASE.name / 'samples.csv'}")


@db_app.command("summary")
@_guarded
def db_summary(config: ConfigArg, json_out: JsonOpt = False) -> None:
    """Print the paper's Tables I–III (and per dataset) for the composite database."""
    cfg = load_config(config)
    _run_until(cfg, DATABASE.name)
    if json_out:
        print((cfg.run_dir / DATABASE.name / "summary.json").read_text())
    else:
        _print_summary(cfg)


@app.command()
@_guarded
def benchmark(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run the LOSO benchmark (paper Table V) of the config's model rows, resumably."""
    _study_command(config, BENCHMARK.name, force, json_out, _print_benchmark)


def _study_command(
    config: Path, stage: str, force: bool, json_out: bool, show: Callable[[StudyConfig], None]
) -> None:
    """Run the stages up to ``stage``; print its ``summary.json`` (``--json``) or its tables."""
    cfg = load_config(config)
    result = _run_until(cfg, stage, force)
    if json_out:
        summary = json.loads((cfg.run_dir / stage / "summary.json").read_text())
        print(json.dumps({"stage": _result_record(result), **summary}, indent=2))
    else:
        show(cfg)
        _out.print(f"outputs under {cfg.run_dir / stage}")


def _print_benchmark(cfg: StudyConfig) -> None:
    summary = json.loads((cfg.run_dir / BENCHMARK.name / "summary.json").read_text())
    scope = (
        "full LOSO" if summary["full_loso"] else f"{summary['folds']} LOSO folds, not a full LOSO"
    )
    title = f"Benchmark (Table V): {scope}, {summary['samples_scored']} samples"
    table = Table(title=title, title_justify="left")
    rows = summary["table5"]
    names = sorted(set(cfg.data.demographics.grouping.values()))
    groups = [f"mf1_{name}" for name in names if f"mf1_{name}" in rows[0]]
    headers = ["model", "Negative", "Positive", "Surprise", "MF1 [95% CI]", "UAR"]
    headers += [g.replace("mf1_", "MF1 ") for g in groups] + ["seeds"]
    for header in headers:
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in rows:
        cells = [row["model"]] + [
            f"{row[f'f1_{c}']:.3f}" for c in ("Negative", "Positive", "Surprise")
        ]
        cells.append(f"{row['macro_f1']:.3f} [{row['mf1_ci_low']:.3f}, {row['mf1_ci_high']:.3f}]")
        cells += [f"{row['uar']:.3f}"] + [f"{row[g]:.3f}" for g in groups] + [str(row["seeds"])]
        table.add_row(*cells)
    _out.print(table)
    from ethnicmer.studies.comparisons import comparison_sentence

    for comparison in summary["comparisons"]:
        _out.print(comparison_sentence(comparison))


@app.command()
@_guarded
def annotate(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Per-subject demographics from per-sample predictions, corrected and audited."""
    cfg = load_config(config)
    result = _run_until(cfg, ANNOTATE.name, force)
    import pandas as pd

    folder = cfg.run_dir / ANNOTATE.name
    agreement = pd.read_csv(folder / "agreement.csv")
    audit = pd.read_csv(folder / "audit.csv", dtype=str)
    per_field = {
        field: {
            "subjects": len(part),
            "raw_vote_agrees": int(part["raw_agrees"].sum()),
            "final_agrees": int(part["final_agrees"].sum()),
        }
        for field, part in agreement.groupby("field", sort=False)
    }
    timing = json.loads((folder / "timing.json").read_text())
    if json_out:
        payload = {
            "stage": _result_record(result),
            "agreement": per_field,
            "timing": timing,
            "audit": audit.fillna("").to_dict(orient="records"),
        }
        print(json.dumps(payload, indent=2))
        return
    for field, counts in per_field.items():
        n = counts["subjects"]
        _out.print(
            f"{field}: raw vote agrees with the current table for {counts['raw_vote_agrees']}/{n} "
            f"subjects, final label for {counts['final_agrees']}/{n}"
        )
    _out.print(f"audit ({len(audit)} rows): {folder / 'audit.csv'}")
    _out.print(audit.fillna("").to_string(index=False))


@app.command("prima-facie")
@_guarded
def prima_facie(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run the prima facie study (paper Table IV) with repeated subject draws."""
    _study_command(config, PRIMA_FACIE.name, force, json_out, _print_prima_facie)


def _print_prima_facie(cfg: StudyConfig) -> None:
    folder = cfg.run_dir / PRIMA_FACIE.name
    names = ("table4", "summary", "tests", "transfer")
    for name in [*names, *(f"matched_{n}" for n in names)]:
        if (folder / f"{name}.md").is_file():
            _out.print((folder / f"{name}.md").read_text())


@app.command()
@_guarded
def simulate(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Write the config's simulated CASME II- and SAMM-format dataset (its simulate section)."""
    cfg = load_config(config)
    if cfg.simulate is None:
        raise ConfigError(f"{config}: the config has no simulate section")
    with study_lock(cfg):
        result = run_stage(SIMULATE, cfg, force=force)
    assert cfg.simulate is not None
    if json_out:
        print(json.dumps({"stage": _result_record(result), "out": str(cfg.simulate.out)}))
    else:
        _out.print(f"simulated study written under {cfg.simulate.out} (ground truth: truth.json)")


@app.command()
@_guarded
def cam(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Grad-CAM activation maps per ethnicity group and the paper's claims as tests."""
    _study_command(config, CAM.name, force, json_out, _print_cam)


def _print_cam(cfg: StudyConfig) -> None:
    import pandas as pd

    from ethnicmer.report.tables import markdown_table

    claims_file = cfg.run_dir / CAM.name / "claims.csv"
    if not claims_file.is_file() or claims_file.stat().st_size < 2:
        return
    claims = pd.read_csv(claims_file)
    claims = claims[claims["scope"] == "all"]
    columns = ["claim", "model", "branch", "method", "difference_expected_direction"]
    shown = claims[[*columns, "p_permutation", "p_permutation_adjusted", "verdict"]].rename(
        columns={
            "difference_expected_direction": "difference (expected direction)",
            "p_permutation": "p",
            "p_permutation_adjusted": "Holm p",
        }
    )
    family = claims["family"].iloc[0] if len(claims) else ""
    _out.print(
        f"The paper's visual claims over all samples (one confirmatory family, {family!r}, "
        f"{len(claims)} tests; verdicts on the Holm-adjusted p). Within each dataset: "
        "cam/claims.md."
    )
    _out.print(markdown_table(shown, ".3f"))


@app.command()
@_guarded
def report(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Write the study report (report.html, report.md) from the stages' outputs.

    Earlier stages are run first only where they are not up to date; ``--force``
    re-renders the report alone (e.g. after upgrading ethnicmer).
    """
    cfg = load_config(config)
    result = _run_until(cfg, REPORT.name, force)
    if json_out:
        print(json.dumps({"stage": _result_record(result)}, indent=2))
    else:
        _out.print(f"report: {cfg.run_dir / 'report.html'} and {cfg.run_dir / 'report.md'}")


@app.command()
@_guarded
def flow(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Compute optical-flow images from the raw frames of every sample (stages.flow)."""
    cfg = load_config(config)
    result = _run_until(cfg, FLOW.name, force)
    record = _result_record(result)
    folder = cfg.run_dir / FLOW.name
    flows = sum(1 for _ in open(folder / "flows.csv")) - 1
    failed = sum(1 for _ in open(folder / "exclusions.csv")) - 1
    if json_out:
        print(json.dumps({**record, "flows": flows, "excluded": failed}, indent=2))
    else:
        _out.print(f"{flows} flow images, {failed} excluded; outputs under {folder}")


@app.command("flow-video")
@_guarded
def flow_video(
    source: Annotated[
        Path, typer.Argument(help="video file or folder of frames", show_default=False)
    ],
    onset: Annotated[
        int, typer.Option(help="onset frame (video: 0-based index; folder: frame number)")
    ],
    apex: Annotated[int, typer.Option(help="apex frame (same convention), after the onset")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="flow image to write (.png, lossless)")
    ],
    size: Annotated[int, typer.Option(help="flow image side in pixels (>= 8)")] = 28,
    align: Annotated[str, typer.Option(help="dlib | none")] = "dlib",
    method: Annotated[str, typer.Option(help="tvl1 | farneback | dis")] = "tvl1",
    crop_size: Annotated[int, typer.Option(help="aligned crop side in pixels (>= 32)")] = 224,
    json_out: JsonOpt = False,
) -> None:
    """One clip's onset→apex flow image (R=u, G=v, B=strain) and a preview figure."""
    from ethnicmer.flow.request import check_clip_request

    check_clip_request(onset, apex, output, size, crop_size, align, method)
    from ethnicmer.flow.clip import flow_for_clip
    from ethnicmer.flow.compute import FlowSettings

    settings = FlowSettings(align=align, method=method, size=size, crop_size=crop_size)  # type: ignore[arg-type]
    result = flow_for_clip(source, onset, apex, output, settings)
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        _out.print(f"flow image: {result['flow_image']}\npreview: {result['preview']}")
        _out.print(f"max displacement: {result['max_displacement_px']:.2f} px")
        for region, share in result["strain_share"].items():
            _out.print(f"  strain share {region:7s} {share:6.1%}")


_TITLES = {
    "table1_subjects": "Table I: subjects per ethnic label",
    "table1_subjects_by_dataset": "Table I by dataset",
    "table2_samples": "Table II: video samples per ethnic label",
    "table2_samples_by_dataset": "Table II by dataset",
    "table3_emotions": "Table III: video samples per emotion",
    "table3_emotions_by_dataset": "Table III by dataset",
    "cells_dataset_ethnicity": (
        "Dataset × ethnicity cells (the confound: read ethnicity results against these)"
    ),
}


def studied_summary_file(cfg: StudyConfig) -> Path:
    """Tables I–III of the samples actually studied: the flow stage's summary (after its
    exclusions) when the study computes flows and it exists, else the database's."""
    flow = cfg.run_dir / FLOW.name / "summary.json"
    if cfg.stages.flow is not None and flow.is_file():
        return flow
    return cfg.run_dir / DATABASE.name / "summary.json"


def _print_summary(cfg: StudyConfig, studied: bool = False) -> None:
    """Print Tables I–III: of the database, or (``studied``, after ``ethnicmer run``) of
    the samples that remain after the flow stage's exclusions."""
    path = studied_summary_file(cfg) if studied else cfg.run_dir / DATABASE.name / "summary.json"
    summary = json.loads(path.read_text())
    if path.parent.name == FLOW.name:
        _out.print("Tables I–III of the samples studied (after the flow stage's exclusions):")
    for name, records in summary["tables"].items():
        table = Table(title=_TITLES.get(name, name), title_justify="left")
        columns = list(records[0]) if records else []
        for column in columns:
            table.add_column(
                column, justify="right" if isinstance(records[0][column], int) else "left"
            )
        for record in records:
            table.add_row(*(str(record[c]) for c in columns))
        _out.print(table)
    totals = summary["totals"]
    _out.print(
        f"total: {totals['samples']} samples, {totals['subjects']} subjects; "
        f"by ethnicity {totals['samples_by_ethnicity']}; excluded {totals['excluded']}"
    )
    for reason, count in totals["excluded_by_reason"].items():
        _out.print(f"  excluded {count:4d}: {reason}")


@app.command()
@_guarded
def compare(
    rows: Annotated[
        list[str],
        typer.Argument(
            help="pairs of rows A B [A B ...], each <run dir>:<row>, e.g. "
            "runs/megc2019-best:ststnet-recipe runs/megc2019-seeds:resnet18-motion",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="write <out>.csv, .md and .tex")] = Path(
        "cross_study_comparisons"
    ),
    resamples: Annotated[int, typer.Option(help="bootstrap and randomisation resamples")] = 1000,
    seed: Annotated[int, typer.Option(help="seeds the resampling")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Paired MF1 comparisons of rows of different studies (exploratory, BH-adjusted).

    Each pair A B is compared on the samples both predicted, paired by seed and
    sample, with the benchmark's own test; decided after the runs, so the pairs of
    one call form the exploratory family "cross-study comparisons".
    """
    from ethnicmer.report.tables import write_table
    from ethnicmer.studies.comparisons import comparison_sentence
    from ethnicmer.studies.cross_study import compare_studies, parse_ref

    if len(rows) % 2:
        raise ConfigError(f"compare takes pairs of rows A B; got {len(rows)} (an odd number)")
    refs = [parse_ref(text) for text in rows]
    table = compare_studies(list(zip(refs[::2], refs[1::2], strict=True)), resamples, seed)
    written = write_table(
        table,
        out,
        "Paired comparisons (A - B) of rows of different studies on their common samples: "
        "two-level bootstrap (seeds, subjects within dataset), randomisation over subjects, "
        "BH-adjusted p within the pairs of this call (exploratory), minimum detectable effect",
    )
    records = table.to_dict(orient="records")
    if json_out:
        print(json.dumps({"comparisons": records, "outputs": [str(p) for p in written]}, indent=2))
        return
    for record in records:
        _out.print(comparison_sentence(record))
        if record["only_a"] or record["only_b"]:
            _out.print(
                f"  left out: {record['only_a']} sample(s) only {record['a']} predicted, "
                f"{record['only_b']} only {record['b']} predicted"
            )
    _out.print(f"outputs: {', '.join(str(p) for p in written)}")


@app.command()
def version() -> None:
    """Print the ethnicmer version."""
    print(__version__)


def main() -> None:
    """Entry point for ``python -m ethnicmer``."""
    app()
