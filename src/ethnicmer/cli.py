"""The ``ethnicmer`` command line: one Typer app, each command a thin layer.

Every study command takes a config path and has ``--json`` for scripting (JSON on
stdout, status lines on stderr). Errors in configs or data exit with status 2 and
a message naming the file, row or sample.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ethnicmer import __version__
from ethnicmer.config import StudyConfig, load_config
from ethnicmer.errors import ConfigError, EthnicmerError
from ethnicmer.pipeline import StageResult, run_stage
from ethnicmer.progress import log
from ethnicmer.stages import BENCHMARK, DATABASE, SIMULATE, planned_stages

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

_out = Console()


def _fail(exc: EthnicmerError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    raise typer.Exit(code=2)


def _result_record(result: StageResult) -> dict[str, Any]:
    return {
        "stage": result.name,
        "status": "up to date" if result.skipped else "done",
        "seconds": round(result.seconds, 2),
        "manifest": str(result.manifest),
        "outputs": [str(p) for p in result.outputs],
    }


def _run_study(cfg: StudyConfig, force: bool) -> list[dict[str, Any]]:
    records = []
    for stage in planned_stages(cfg):
        log(f"[{cfg.study}] stage {stage.name} ...")
        result = run_stage(stage, cfg, force=force)
        status = "up to date, skipped" if result.skipped else f"done in {result.seconds:.1f} s"
        log(f"[{cfg.study}] stage {stage.name}: {status}")
        records.append(_result_record(result))
    return records


@app.command()
def run(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run every stage the config lists, skipping stages whose outputs are up to date."""
    try:
        cfg = load_config(config)
        records = _run_study(cfg, force)
    except EthnicmerError as exc:
        _fail(exc)
    if json_out:
        print(
            json.dumps(
                {"study": cfg.study, "run_dir": str(cfg.run_dir), "stages": records}, indent=2
            )
        )
    else:
        _out.print(f"study {cfg.study}: outputs under {cfg.run_dir}")
        _print_summary(cfg)


def demo_config_path() -> Path:
    """The built-in demo config shipped with the package (same file as configs/demo.yaml)."""
    return Path(str(resources.files("ethnicmer") / "resources" / "demo.yaml"))


@app.command()
def demo(force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run the built-in demo study (synthetic data, small settings)."""
    run(demo_config_path(), force=force, json_out=json_out)


@db_app.command("build")
def db_build(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Write the samples table and the exclusions table of the composite database."""
    try:
        cfg = load_config(config)
        records = []
        if cfg.simulate is not None:
            records.append(_result_record(run_stage(SIMULATE, cfg)))
        records.append(_result_record(run_stage(DATABASE, cfg, force=force)))
    except EthnicmerError as exc:
        _fail(exc)
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
def db_summary(config: ConfigArg, json_out: JsonOpt = False) -> None:
    """Print the paper's Tables I–III (and per dataset) for the composite database."""
    try:
        cfg = load_config(config)
        if cfg.simulate is not None:
            run_stage(SIMULATE, cfg)
        run_stage(DATABASE, cfg)
    except EthnicmerError as exc:
        _fail(exc)
    if json_out:
        print((cfg.run_dir / DATABASE.name / "summary.json").read_text())
    else:
        _print_summary(cfg)


@app.command()
def benchmark(config: ConfigArg, force: ForceOpt = False, json_out: JsonOpt = False) -> None:
    """Run the LOSO benchmark (paper Table V) of the config's model rows, resumably."""
    try:
        cfg = load_config(config)
        if cfg.stages.benchmark is None:
            raise ConfigError(f"{config}: the config has no stages.benchmark section")
        if cfg.simulate is not None:
            run_stage(SIMULATE, cfg)
        run_stage(DATABASE, cfg)
        result = run_stage(BENCHMARK, cfg, force=force)
    except EthnicmerError as exc:
        _fail(exc)
    summary = json.loads((cfg.run_dir / BENCHMARK.name / "summary.json").read_text())
    if json_out:
        print(json.dumps({"stage": _result_record(result), **summary}, indent=2))
    else:
        _out.print((cfg.run_dir / BENCHMARK.name / "table5.md").read_text())
        _out.print((cfg.run_dir / BENCHMARK.name / "comparisons.md").read_text())
        _out.print(f"outputs under {cfg.run_dir / BENCHMARK.name}")


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


def _print_summary(cfg: StudyConfig) -> None:
    summary = json.loads((cfg.run_dir / DATABASE.name / "summary.json").read_text())
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
def version() -> None:
    """Print the ethnicmer version."""
    print(__version__)


def main() -> None:
    """Entry point for ``python -m ethnicmer``."""
    app()
