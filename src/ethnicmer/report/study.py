"""The study report: ``runs/<study>/report.html`` (offline, figures embedded) and ``report.md``.

Sections, each present when its stage ran: data (Tables I–III, exclusions), the
ethnicity × dataset confound (counts, Cramér's V, what the controls say),
prima facie (Table IV), benchmark (Table V with CIs, groups, paired tests,
confusion matrices), activation maps (the paper's claims as tests, region
statistics, coded AUs, montages) and reproducibility (resolved config, seed,
package versions, wall time per stage). The report reads only the files the
stages wrote; it computes nothing but the confound's association measure.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml
from scipy.stats.contingency import association

from ethnicmer import __version__
from ethnicmer.config import StudyConfig
from ethnicmer.io import write_text_atomic
from ethnicmer.report.findings import (
    claim_findings,
    comparison_findings,
    detectable_odds_ratios,
    effect_findings,
    forest_figure,
    prima_facie_findings,
)
from ethnicmer.report.tables import column_label, markdown_table
from ethnicmer.studies.comparisons import comparison_sentence

STAGE_ORDER = ("simulate", "annotate", "database", "flow", "prima_facie", "benchmark", "cam")


COLLAPSE_ROWS = 12
"""Tables longer than this are folded (``<details>``) in the HTML report."""


@dataclass
class Table:
    """A rendered table: caption, Markdown and HTML (human column headers)."""

    caption: str
    frame: pd.DataFrame

    @property
    def shown(self) -> pd.DataFrame:
        return self.frame.rename(columns={c: column_label(str(c)) for c in self.frame.columns})

    @property
    def collapsed(self) -> bool:
        """Long tables start folded in the HTML (their caption stays visible)."""
        return len(self.frame) > COLLAPSE_ROWS

    @property
    def markdown(self) -> str:
        return f"**{self.caption}**\n\n" + markdown_table(self.shown, ".3f")

    @property
    def html(self) -> str:
        body = self.shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–")
        return body.replace(
            '<table border="1" class="dataframe">', f"<table><caption>{self.caption}</caption>", 1
        )


@dataclass
class Figure:
    """A PNG figure embedded in the HTML (base64) and linked from the Markdown."""

    path: Path
    caption: str

    @property
    def data(self) -> str:
        return base64.b64encode(self.path.read_bytes()).decode()


@dataclass
class Section:
    """One report section."""

    title: str
    anchor: str
    paragraphs: list[dict[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    code: str = ""

    def say(self, text: str, note: bool = False) -> None:
        self.paragraphs.append({"text": text, "note": note})

    def table(self, path: Path, caption: str, query: str | None = None) -> None:
        if path.is_file():
            try:
                frame = pd.read_csv(path, dtype={"subject": str})
            except pd.errors.EmptyDataError:  # a stage wrote an empty table
                self.say(f"{caption}: no rows ({path.name} is empty).")
                return
            if query:
                frame = frame.query(query)
            self.tables.append(Table(caption, frame))

    def figure(self, path: Path, caption: str) -> None:
        if path.is_file():
            self.figures.append(Figure(path, caption))


def _read_exclusions(path: Path, stage: str) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size < 2:
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    return frame.assign(stage=stage)


def _data_section(run_dir: Path, with_flow: bool) -> Section | None:
    """Tables I–III of the samples actually studied and every exclusion with its stage.

    With a flow stage, its ``summary.json`` describes the samples that remain
    after the flow stage's exclusions (the samples every later stage uses).
    """
    folder = run_dir / "database"
    if not (folder / "summary.json").is_file():
        return None
    flow_summary = run_dir / "flow" / "summary.json"
    studied = flow_summary if with_flow and flow_summary.is_file() else folder / "summary.json"
    summary = json.loads(studied.read_text())
    section = Section("Data", "data")
    totals = summary["totals"]
    parts = [_read_exclusions(folder / "exclusions.csv", "database")]
    if with_flow:
        parts.append(_read_exclusions(run_dir / "flow" / "exclusions.csv", "flow"))
    parts = [p for p in parts if not p.empty]
    exclusions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    by_stage = exclusions["stage"].value_counts().to_dict() if not exclusions.empty else {}
    section.say(
        f"{totals['samples']} samples from {totals['subjects']} subjects studied; "
        f"{len(exclusions)} sample(s) excluded"
        + (
            " (" + ", ".join(f"{n} by the {stage} stage" for stage, n in by_stage.items()) + ")"
            if by_stage
            else ""
        )
        + ", each listed in the exclusions table(s) with its reason. Tables I–III describe "
        "the samples studied."
    )
    names = {
        "table1_subjects": "Table I: subjects per ethnic label",
        "table2_samples": "Table II: samples per ethnic label",
        "table3_emotions": "Table III: samples per emotion",
        "table1_subjects_by_dataset": "Table I per dataset",
        "table3_emotions_by_dataset": "Table III per dataset",
    }
    for key, caption in names.items():
        if key in summary["tables"]:
            section.tables.append(Table(caption, pd.DataFrame(summary["tables"][key])))
    if not exclusions.empty:
        reasons = exclusions.groupby(["stage", "reason"]).size().rename("samples").reset_index()
        section.tables.append(
            Table(
                "Exclusions by stage and reason (every sample: database/exclusions.csv, "
                "flow/exclusions.csv)",
                reasons,
            )
        )
    return section


def _confound_section(run_dir: Path, with_flow: bool) -> Section | None:
    path = run_dir / "database" / "samples.parquet"
    if not path.is_file():
        return None
    samples = pd.read_parquet(path)
    dropped = _read_exclusions(run_dir / "flow" / "exclusions.csv", "flow") if with_flow else None
    if dropped is not None and not dropped.empty:  # the samples studied, as in the data section
        keys = ["dataset", "subject", "filename"]
        gone = pd.MultiIndex.from_frame(dropped[keys])
        samples = samples[~pd.MultiIndex.from_frame(samples[keys]).isin(gone)]
    section = Section("Ethnicity and dataset: the confound", "confound")
    subjects = samples.drop_duplicates(["dataset", "subject"])
    counts = pd.crosstab(subjects["dataset"], subjects["ethnicity"])
    sample_counts = pd.crosstab(samples["dataset"], samples["ethnicity"])
    cells = (
        (samples.groupby(["dataset", "ethnicity", "label"]).size().unstack("label", fill_value=0))
        .reset_index()
        .rename_axis(columns=None)
    )
    section.tables.append(
        Table("Subjects per dataset x ethnicity", counts.reset_index().rename_axis(columns=None))
    )
    section.tables.append(Table("Samples per dataset x ethnicity x emotion", cells))
    if min(counts.shape) >= 2:
        v = float(association(counts.to_numpy(), method="cramer"))
        vs = float(association(sample_counts.to_numpy(), method="cramer"))
        section.say(
            f"Association between dataset and ethnicity group: Cramér's V = {v:.2f} over "
            f"subjects, {vs:.2f} over samples (0 = independent, 1 = the same variable)."
        )
    else:
        section.say(
            "Only one dataset or one ethnicity group: dataset and ethnicity cannot be "
            "separated in this study."
        )
    empty = cells[(cells.drop(columns=["dataset", "ethnicity"]) < 5).any(axis=1)]
    for _, row in empty.iterrows():
        small = [c for c in cells.columns[2:] if row[c] < 5]
        section.say(
            f"{row['dataset']} / {row['ethnicity']} has fewer than 5 samples of "
            f"{', '.join(small)}: macro-F1 in that cell is not comparable.",
            note=True,
        )
    section.say(
        "Read every ethnicity difference below against this table: a difference that "
        "appears overall but not within one dataset is as well explained by the dataset."
    )
    sentences = (
        _control_sentences(run_dir) + _decoding_sentences(run_dir) + _attribution_sentences(run_dir)
    )
    for sentence in sentences:
        section.say(sentence)
    return section


CONTROL_NAMES = {"dataset": "dataset context", "permuted_ethnicity": "permuted-ethnicity context"}


def _control_sentences(run_dir: Path) -> list[str]:
    """What the benchmark's control rows say about each ethnicity-context row (issue 9)."""
    path = run_dir / "benchmark" / "summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    rows = {r["model"]: r for r in summary["table5"]}
    controls = [r for r in rows.values() if r["context"] in CONTROL_NAMES]
    if not controls:
        return [
            "The benchmark has no control row (context: dataset or permuted_ethnicity): "
            "it cannot tell an ethnicity gain from a dataset gain."
        ]
    sentences = []
    tests = {(c["a"], c["b"]): c for c in summary["comparisons"]}
    for row in (r for r in rows.values() if r["context"] == "ethnicity"):
        for control in controls:
            if control["context_input"] != row["context_input"]:
                continue
            name = CONTROL_NAMES[control["context"]]
            text = (
                f"{row['model']} (ethnicity context) MF1 {row['macro_f1']:.3f} vs "
                f"{control['model']} ({name}) {control['macro_f1']:.3f}"
            )
            test = tests.get((row["model"], control["model"]))
            adjusted = test.get("p_permutation_adjusted") if test is not None else None
            if test is not None and adjusted is not None:
                method = "Holm" if test.get("family_kind") == "confirmatory" else "BH"
                text += (
                    f" (ΔMF1 {test['difference']:+.3f} [{test['ci_low']:+.3f}, "
                    f"{test['ci_high']:+.3f}], {method} p {adjusted:.3f} in {test['family']}; "
                    f"detectable ≥ {test['mde']:.3f}; {test['evidence']})"
                )
            significant = (
                adjusted is not None
                and adjusted < 0.05
                and test is not None
                and test.get("family_kind") == "confirmatory"
            )
            if row["macro_f1"] <= control["macro_f1"]:
                text += (
                    f": the ethnicity context gains no more than the {name}; "
                    "its gain cannot be credited to ethnicity."
                )
            elif not significant:
                text += (
                    f": higher, but not significantly (or from one seed); not evidence of an "
                    f"ethnicity effect beyond the {name}."
                )
            else:
                text += f": the ethnicity context beats the {name} significantly."
            sentences.append(text)
    return sentences


def _decoding_sentences(run_dir: Path) -> list[str]:
    """Whether each ethnicity head decodes the group overall and within a dataset, and
    what colour alone decodes (the colour-only baseline), with BH-adjusted p."""
    path = run_dir / "benchmark" / "summary.json"
    if not path.is_file():
        return []
    decoding = pd.DataFrame(json.loads(path.read_text()).get("context_decoding", []))
    if decoding.empty:
        return []
    if "decoder" not in decoding:
        decoding = decoding.assign(decoder="context head")
    adjusted = "p_permutation_adjusted" if "p_permutation_adjusted" in decoding else "p_permutation"
    decoding = decoding[decoding["context"] == "ethnicity"]
    sentences = []
    for (model, decoder, seed), part in decoding.groupby(["model", "decoder", "seed"], sort=False):
        scores = [
            f"{r['scope']} {r['balanced_accuracy']:.2f} (BH p = {r[adjusted]:.3f}"
            + (
                f"; could detect ≥ {r['chance'] + r['mde_over_chance']:.2f})"
                if np.isfinite(r.get("mde_over_chance", np.nan))
                else ")"
            )
            for _, r in part.iterrows()
            if r[adjusted] is not None and not np.isnan(r[adjusted])
        ]
        if not scores:
            continue
        if decoder == "context head":
            sentences.append(
                f"{model} (seed {seed}): its ethnicity head's balanced accuracy on unseen "
                f"subjects (chance 0.50): {'; '.join(scores)}. Decoding over all samples "
                "but not within a dataset is decoding of the dataset."
            )
        else:
            sentences.append(
                f"What colour alone decodes ({decoder}, beside {model}): balanced accuracy "
                f"{'; '.join(scores)}. A context head that decodes no more than this may be "
                "reading colour, not the face."
            )
    return sentences


def _attribution_sentences(run_dir: Path) -> list[str]:
    """How many activation-map claim measures point to ethnicity, dataset, both, neither."""
    path = run_dir / "cam" / "attribution.csv"
    try:
        table = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return []
    if table.empty:
        return []
    if "method" not in table:
        table = table.assign(method="gradcam")
    sentences = []
    for method, part in table.groupby("method", sort=False):
        counts = part["attribution"].value_counts()
        listed = ", ".join(f"{name}: {n}" for name, n in counts.items())
        sentences.append(
            f"Activation-map claim measures ({method}), tested for ethnicity within dataset "
            f"and dataset within ethnicity (stratified permutation over subjects; {len(part)} "
            f"row/branch/claim tests): {listed}. See the attribution table in the "
            "activation-map section."
        )
    return sentences


def _prima_facie_section(run_dir: Path) -> Section | None:
    folder = run_dir / "prima_facie"
    if not (folder / "table4.csv").is_file():
        return None
    section = Section("Prima facie study (Table IV)", "prima-facie")
    for prefix, label in (("", "cross-dataset (paper design)"), ("matched_", "within one dataset")):
        section.table(folder / f"{prefix}summary.csv", f"Macro-F1 over repeated draws, {label}")
        section.table(folder / f"{prefix}tests.csv", f"Paired tests between scenarios, {label}")
        section.table(folder / f"{prefix}transfer.csv", f"Cross-group transfer, {label}")
        section.figure(folder / f"{prefix}scores.png", f"Scores per draw, {label}")
    section.table(folder / "table4.csv", "Table IV layout: the first draw beside the paper")
    return section


def _benchmark_section(run_dir: Path) -> Section | None:
    folder = run_dir / "benchmark"
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    section = Section("LOSO benchmark (Table V)", "benchmark")
    protocol = summary.get("protocol", "loso")
    if protocol == "loso":
        scope = (
            "full LOSO" if summary["full_loso"] else f"{summary['folds']} folds (not a full LOSO)"
        )
    else:
        scope = f"protocol {protocol.replace('_', ' ')}, {summary['folds']} fold(s)"
    section.say(
        f"{scope}, {summary['samples_scored']} samples scored; predictions concatenated over folds."
    )
    left_out = summary.get("left_out_of_group_tables", {})
    if left_out.get("samples"):
        per_dataset = ", ".join(f"{d} {n}" for d, n in left_out["by_dataset"].items())
        section.say(
            f"{left_out['samples']} samples of {left_out['subjects']} subjects ({per_dataset}) "
            f"have no ethnicity group ({left_out['reason']}): emotion-only rows, the CDE table "
            "and the paired comparisons use them; the ethnicity-context rows, the per-group "
            "tables, the effect models and the fairness table leave them out."
        )
    section.table(
        folder / "table5.csv", "Table V: per-class F1, macro-F1 with 95% CI over subjects, UF1, UAR"
    )
    section.table(
        folder / "cde.csv",
        "Composite database evaluation (MEGC2019): UF1 and UAR on the pooled predictions, "
        "overall and per dataset (mean over seeds)",
    )
    if summary.get("published"):
        section.table(
            folder / "published.csv",
            "Published results on the same protocol, as printed (input, whether the epoch was "
            "chosen on the test subject, source, where the figure was read, notes)",
        )
        section.say(
            "Published figures whose epoch was chosen on the test subject (epoch_selection "
            "test_subject) are not comparable with fixed-epoch rows such as ours.",
            note=True,
        )
    section.table(
        folder / "comparisons.csv",
        "Paired comparisons (A - B): interval over seeds and subjects, family-adjusted p, "
        "minimum detectable effect (80 % power, alpha 0.05)",
    )
    for comparison in summary["comparisons"]:
        section.say(comparison_sentence(comparison))
    section.table(
        folder / "effects.csv",
        "Recognition effects (GEE over samples, subjects as clusters, seeds as repeated "
        "measures): odds ratios of a correct prediction and log-loss differences",
    )
    for effect in summary.get("effects", []):
        if effect["outcome"] != "correct":
            continue
        if effect["estimate"] is None or effect.get("p_adjusted") is None:
            section.say(f"{effect['effect']} ({effect['comparison']}): {effect['note']}.")
            continue
        section.say(
            f"{effect['effect']} ({effect['comparison']}): odds ratio {effect['estimate']:.2f} "
            f"[{effect['ci_low']:.2f}, {effect['ci_high']:.2f}], adjusted p "
            f"{effect['p_adjusted']:.3f} ({effect['family']}); detectable: "
            f"{detectable_odds_ratios(effect)}."
        )
    section.table(
        folder / "fairness.csv",
        "Group fairness: recall and macro-F1 per group, equal-opportunity gap and "
        "equalized-odds difference per class, 95 % intervals over subjects and seeds",
    )
    section.table(
        folder / "groups.csv",
        "Macro-F1 per ethnicity group, dataset and cell (marked cells not comparable)",
    )
    if any(row.get("seeds", 1) > 1 for row in summary["table5"]):
        section.table(
            folder / "seeds.csv",
            "Per-seed scores (each seed its own LOSO run; Table V gives their mean)",
        )
    if any(row.get("context") not in (None, "none") for row in summary["table5"]):
        section.table(
            folder / "context_decoding.csv",
            "Context head on unseen subjects: balanced accuracy vs chance (permutation over "
            "subjects), over all samples and within each dataset",
        )
    for row in summary["table5"]:
        section.figure(
            folder / f"confusion_{row['model']}.png", f"Confusion matrix, {row['model']}"
        )
    return section


def _cam_section(run_dir: Path) -> Section | None:
    folder = run_dir / "cam"
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    section = Section("Activation maps (Figures 3-4) as statistics", "cam")
    for tag, info in summary["layers"].items():
        how = (
            f"Integrated Gradients ({info.get('steps')} steps, motion-free baseline) on the "
            f"{info['input_side']} px input"
            if info.get("method") == "integrated_gradients"
            else f"Grad-CAM at {info['layer']} ({info['feature_side']} px feature map on a "
            f"{info['input_side']} px input)"
        )
        section.say(
            f"{tag}: {how}; {info['samples_without_positive_evidence']} "
            "sample(s) had no positive evidence (no measure)."
        )
    if summary.get("groups_note"):
        section.say(summary["groups_note"], note=True)
    sources = ", ".join(f"{k}: {v}" for k, v in summary["region_sources"].items())
    section.say(f"AU regions from: {sources}.")
    claims = pd.DataFrame(summary["claims"])
    if not claims.empty:
        columns = [
            "claim",
            "model",
            "branch",
            "method",
            "difference_expected_direction",
            "ci_low",
            "ci_high",
            "p_permutation_adjusted",
            "verdict",
        ]
        present = [c for c in columns if c in claims.columns]
        overall = claims[claims["scope"] == "all"][present]
        supported = int((overall["verdict"] == "supported").sum())
        section.say(
            f"{supported} of {len(overall)} tests of the paper's claims over all samples hold at "
            "Holm-adjusted p < 0.05 (one family over every row, branch and map method); the "
            "within-dataset tests (Benjamini-Hochberg) are in the second table."
        )
        section.tables.append(Table("The paper's visual claims over all samples", overall))
        within = claims[claims["scope"] != "all"][[*present[:4], "scope", *present[4:]]]
        if not within.empty:
            section.tables.append(Table("The claims within each dataset", within))
    section.table(
        folder / "attribution.csv",
        "Is it ethnicity or dataset? Ethnicity effect within dataset and dataset effect "
        "within ethnicity per claim measure (stratified permutation over subjects)",
    )
    section.table(
        folder / "coded_aus.csv",
        "Coded action units per group (coders' ground truth, Fisher's exact test)",
    )
    section.table(
        folder / "statistics.csv",
        "Region measures between groups, all samples (within-dataset rows in statistics.csv)",
        query="scope == 'all'",
    )
    section.figure(folder / "regions.png", "AU regions (template)")
    for tag in summary["layers"]:
        section.figure(folder / f"montage_{tag}.png", f"Activation-map montage, {tag}")
    return section


def _reproducibility_section(cfg: StudyConfig) -> Section:
    section = Section("Reproducibility", "reproducibility")
    rows, versions = [], {}
    for stage in STAGE_ORDER:
        manifest_path = cfg.run_dir / stage / "manifest.json"
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            rows.append(
                {
                    "stage": stage,
                    "started": manifest.get("started", ""),
                    "wall seconds": manifest.get("seconds", np.nan),
                    "fingerprint": str(manifest.get("fingerprint", ""))[:12],
                }
            )
            versions = manifest.get("versions", versions)
    section.tables.append(
        Table("Stages: wall time of the run that made each stage's outputs", pd.DataFrame(rows))
    )
    if versions:
        section.tables.append(
            Table(
                "Package versions",
                pd.DataFrame(sorted(versions.items()), columns=["package", "version"]),
            )
        )
    section.say(
        f"Seed {cfg.seed}; the same config and seed give the same numbers on the same machine."
    )
    section.code = yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False)
    return section


def _findings_section(cfg: StudyConfig, out_dir: Path) -> Section:
    """What the study found, first: every sentence with its effect, interval, adjusted p
    and detectable effect (:mod:`ethnicmer.report.findings`), and the forest plot."""
    run_dir = cfg.run_dir
    section = Section("Findings", "findings")
    data = run_dir / ("flow" if cfg.stages.flow is not None else "database") / "summary.json"
    if data.is_file():
        totals = json.loads(data.read_text())["totals"]
        by_dataset = ", ".join(f"{d} {n}" for d, n in totals["samples_by_dataset"].items())
        section.say(
            f"Data: {totals['samples']} samples of {totals['subjects']} subjects ({by_dataset}); "
            f"{totals['excluded']} excluded, each listed with its reason in the data section."
        )
    sentences = (
        comparison_findings(run_dir)
        + effect_findings(run_dir)
        + prima_facie_findings(run_dir)
        + claim_findings(run_dir)
    )
    for sentence in sentences:
        section.say(sentence)
    if not sentences:
        section.say("No comparison, effect or claim was tested in this study.")
    section.say(
        "Each sentence gives the effect, its 95 % interval, its p adjusted within its family "
        "(Holm for confirmatory families, Benjamini-Hochberg for exploratory ones) and the "
        "smallest effect the study could detect at 80 % power: a difference that is not "
        "significant and smaller than that is not evidence of no effect.",
        note=True,
    )
    forest = forest_figure(run_dir, out_dir / "findings_forest.png")
    if forest is not None:
        section.figure(forest, "Row comparisons: ΔMF1 with 95 % intervals")
    return section


def _markdown(title: str, header: str, sections: list[Section], folder: Path) -> str:
    lines = [f"# {title}", "", header, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines += [("> " if p["note"] else "") + p["text"] + "\n" for p in section.paragraphs]
        for table in section.tables:
            lines += [table.markdown, ""]
        for figure in section.figures:
            rel = os.path.relpath(figure.path, folder)
            lines += [f"![{figure.caption}]({Path(rel).as_posix()})", ""]
        if section.code:
            lines += ["```yaml", section.code.rstrip(), "```", ""]
    return "\n".join(lines)


def write_report(cfg: StudyConfig, out_dir: Path) -> list[Path]:
    """Write ``out_dir/report.{html,md}`` and copies at ``runs/<study>/report.{html,md}``.

    Args:
        cfg: the study config (its run directory holds the stages' outputs).
        out_dir: ``runs/<study>/report``.

    Returns:
        The four files written.
    """
    run_dir = cfg.run_dir
    builders = [
        lambda folder: _data_section(folder, cfg.stages.flow is not None),
        lambda folder: _confound_section(folder, cfg.stages.flow is not None),
        _prima_facie_section,
        _benchmark_section,
        _cam_section,
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [_findings_section(cfg, out_dir)]
    sections += [s for s in (b(run_dir) for b in builders) if s is not None]
    sections.append(_reproducibility_section(cfg))
    title = f"ethnicmer study report: {cfg.study}"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    template = jinja2.Template(
        resources.files("ethnicmer").joinpath("resources/report.html.j2").read_text(),
        autoescape=True,
    )
    html = template.render(
        title=title,
        version=__version__,
        generated=generated,
        seed=cfg.seed,
        sections=sections,
    )
    header = f"Generated by ethnicmer {__version__} on {generated}. Seed {cfg.seed}."
    written = [write_text_atomic(folder / "report.html", html) for folder in (out_dir, run_dir)]
    for folder in (out_dir, run_dir):  # figure links relative to each copy
        written.append(
            write_text_atomic(folder / "report.md", _markdown(title, header, sections, folder))
        )
    if (out_dir / "findings_forest.png").is_file():
        written.append(out_dir / "findings_forest.png")
    return written
