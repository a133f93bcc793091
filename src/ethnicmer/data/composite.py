"""The ethnicity-annotated composite database (paper III-A, Tables I–III).

:func:`build_composite` turns the configured sources into one samples table keyed
by (dataset, subject, filename) and an exclusions table that lists every dropped
sample with its reason. Nothing is dropped silently.

Rules, in order:

1. Duplicate keys across all sources are problems.
2. Emotion mapping (sheet sources): ``paper`` or ``megc2019``; dropped emotions are
   exclusions. MEGC flow sets keep their MEGC2019 labels.
3. Apex policy (rows with frame numbers): a ``/`` apex or one outside
   [onset, offset] is flagged and handled by ``data.apex_policy``.
4. Frames (sheet sources with ``frames``): onset and apex images must exist.
5. Images: every input image must exist and open.
6. Demographics: every subject needs a row; ethnicity group by ``data.demographics.grouping``.

*Problems* (duplicates, missing/unreadable files, missing demographics, apex
without a usable frame) stop the build with one error listing them all when
``data.on_problem == "error"``; with ``"exclude"`` they become exclusions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ethnicmer.config import DataConfig, MegcFlowSource, SammSource, SmicSource, Source, TableSource
from ethnicmer.data.casme2 import read_coding_sheet
from ethnicmer.data.demographics import (
    apply_overrides,
    ethnicity_group,
    load_demographics,
    merge_demographics,
)
from ethnicmer.data.emotions import EMOTION_CLASSES, map_emotion, to_binary
from ethnicmer.data.frames import find_frame, index_frames
from ethnicmer.data.images import check_flow_image, check_flow_sizes, decode_image
from ethnicmer.data.megc import read_megc_flow_set
from ethnicmer.data.names import UNKNOWN
from ethnicmer.data.samm import read_samm_sheet
from ethnicmer.data.sheets import read_table
from ethnicmer.data.smic import read_smic_table
from ethnicmer.data.subjects import KEY_COLUMNS, format_key, normalise_dataset, normalise_subject
from ethnicmer.data.table import read_sample_table
from ethnicmer.digests import DigestCache
from ethnicmer.errors import DataError
from ethnicmer.progress import progress

SAMPLE_COLUMNS = [
    "dataset",
    "subject",
    "filename",
    "onset",
    "apex",
    "offset",
    "apex_note",
    "action_units",
    "emotion_raw",
    "emotion",
    "label",
    "label_id",
    "binary_label",
    "race_code",
    "race",
    "ethnicity",
    "gender",
    "age_bin",
    "onset_path",
    "apex_path",
    "offset_path",
    "flow_path",
    "apex_crop_path",
    "onset_sha256",
    "apex_sha256",
    "offset_sha256",
    "flow_sha256",
    "apex_crop_sha256",
    "flow_side",
    "source_kind",
    "source_file",
    "source_row",
]
"""Columns of the samples table. ``label`` is the 3-class emotion (Negative,
Positive, Surprise), ``label_id`` its index, ``binary_label`` Negative vs
Non-negative; frame numbers are frames of the release (nullable ``Int64``);
paths are empty where the source has no such input. Each ``<input>_sha256`` is
the SHA-256 of the bytes of the file at ``<input>_path`` (empty with the path):
a file replaced at the same path changes the table and so every later stage.
``flow_side`` is the flow image's side in pixels (``Int64``; NA without one)."""

PATH_COLUMNS = ["onset_path", "apex_path", "offset_path", "flow_path", "apex_crop_path"]
"""Input files of a sample; each has a digest column (``_path`` → ``_sha256``)."""


def digest_column(path_column: str) -> str:
    """The digest column of a path column: ``flow_path`` → ``flow_sha256``."""
    return path_column.removesuffix("_path") + "_sha256"


EXCLUSION_COLUMNS = ["dataset", "subject", "filename", "reason", "source_file", "source_row"]
_MAX_LISTED = 25


@dataclass(frozen=True)
class CompositeDatabase:
    """The result of :func:`build_composite`.

    Attributes:
        samples: one row per kept sample, columns :data:`SAMPLE_COLUMNS`, sorted by key.
        exclusions: one row per dropped sample, columns :data:`EXCLUSION_COLUMNS`.
        demographics: the per-subject table used (after overrides), with ``ethnicity``.
        overrides: the log of applied demographic overrides.
    """

    samples: pd.DataFrame
    exclusions: pd.DataFrame
    demographics: pd.DataFrame
    overrides: pd.DataFrame


class _Ledger:
    """Collects exclusions and problems while the database is built."""

    def __init__(self, on_problem: str) -> None:
        self.on_problem = on_problem
        self.exclusions: list[dict[str, object]] = []
        self.problems: list[str] = []

    def exclude(self, row: pd.Series | dict[str, object], reason: str) -> None:
        self.exclusions.append(
            {
                "dataset": row["dataset"],
                "subject": row["subject"],
                "filename": row["filename"],
                "reason": reason,
                "source_file": row.get("source_file", ""),
                "source_row": row.get("source_row", pd.NA),
            }
        )

    def problem(self, row: pd.Series | dict[str, object], reason: str) -> None:
        where = f"{row.get('source_file', '')}, row {row.get('source_row', '?')}"
        self.problems.append(
            f"{format_key(str(row['dataset']), str(row['subject']), str(row['filename']))} "
            f"({where}): {reason}"
        )
        self.exclude(row, reason)

    def raise_problems(self, step: str) -> None:
        if self.on_problem == "error" and self.problems:
            listed = "\n  ".join(self.problems[:_MAX_LISTED])
            more = len(self.problems) - _MAX_LISTED
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise DataError(
                f"{len(self.problems)} sample(s) failed the {step} check "
                f"(set data.on_problem: exclude to list them as exclusions instead):\n  "
                f"{listed}{tail}"
            )


@dataclass(frozen=True)
class _SourceRows:
    """What one source gives: candidate samples, rows it skipped, subjects' demographics."""

    table: pd.DataFrame
    skipped: pd.DataFrame
    demographics: pd.DataFrame


def _read_source(source: Source) -> _SourceRows:
    none = pd.DataFrame()
    if isinstance(source, MegcFlowSource):
        table, skipped = read_megc_flow_set(source.root, source.csv, source.datasets)
        return _SourceRows(table.assign(source_kind="megc2019_flow"), skipped, none)
    if isinstance(source, TableSource):
        table, people = read_sample_table(source.path, source.root)
        return _SourceRows(table.assign(source_kind="table"), none, people)
    if isinstance(source, SmicSource):
        table = read_smic_table(source.table)
    else:
        reader = read_samm_sheet if isinstance(source, SammSource) else read_coding_sheet
        table = reader(source.sheet)
    table["source_kind"] = source.kind
    table["frames_root"] = str(source.frames) if source.frames is not None else ""
    return _SourceRows(table, none, none)


def _join_sheets(table: pd.DataFrame, source: MegcFlowSource, ledger: _Ledger) -> pd.DataFrame:
    """Add sheet columns to MEGC rows and check each MEGC label against its sheet row."""
    sheets = []
    if source.casme2_sheet is not None:
        sheets.append(read_coding_sheet(source.casme2_sheet))
    if source.samm_sheet is not None:
        sheets.append(read_samm_sheet(source.samm_sheet))
    if not sheets:
        return table
    sheet = pd.concat(sheets, ignore_index=True)
    repeated = sheet[sheet.duplicated(KEY_COLUMNS, keep=False)]
    if not repeated.empty:
        listed = "; ".join(
            f"{format_key(*key)} at rows {sorted(group['source_row'].tolist())}"
            for key, group in repeated.groupby(KEY_COLUMNS, sort=True)
        )
        raise DataError(
            f"{repeated['source_file'].iloc[0]}: the coding sheet lists a sample twice, so the "
            f"MEGC rows cannot be joined to one sheet row: {listed}"
        )
    sheet = sheet.drop(columns=["source_file", "source_row"])
    joined = table.merge(sheet, on=KEY_COLUMNS, how="left", validate="many_to_one")
    covered = set(sheet["dataset"])
    keep = []
    for index, row in joined.iterrows():
        if row["dataset"] in covered and pd.isna(row["emotion"]):
            ledger.problem(row, "not in the official coding sheet")
            continue
        if not pd.isna(row["emotion"]):
            expected, _ = map_emotion("megc2019", row["dataset"], row["emotion"])
            if expected != row["label"]:
                ledger.problem(
                    row,
                    f"MEGC label {row['label']} disagrees with the sheet's emotion "
                    f"{row['emotion_raw']!r} (megc2019 mapping: {expected})",
                )
                continue
        keep.append(index)
    return joined.loc[keep]


def _check_duplicates(table: pd.DataFrame, ledger: _Ledger) -> pd.DataFrame:
    duplicated = table.duplicated(KEY_COLUMNS, keep=False)
    for _, row in table[duplicated].iterrows():
        others = table[
            duplicated
            & (table["dataset"] == row["dataset"])
            & (table["subject"] == row["subject"])
            & (table["filename"] == row["filename"])
        ]
        places = [
            f"{f}, row {r}"
            for f, r in zip(others["source_file"], others["source_row"], strict=True)
        ]
        ledger.problem(row, f"duplicate (dataset, subject, filename); given at {places}")
    return table[~duplicated]


def _apply_labels(table: pd.DataFrame, mapping: str, ledger: _Ledger) -> pd.DataFrame:
    """Sources that give the 3-class label keep it (MEGC2019 sets, SMIC, tables with a
    ``label``); emotion words are mapped by ``mapping`` (paper Table III or megc2019)."""
    keep, labels = [], []
    given = table["label"] if "label" in table else pd.Series("", index=table.index)
    for index, row in table.iterrows():
        if isinstance(given[index], str) and given[index]:
            keep.append(index)
            labels.append(given[index])
            continue
        try:
            label, reason = map_emotion(mapping, row["dataset"], row["emotion"])
        except DataError as exc:
            raise DataError(
                f"{row.get('source_file', '')}, row {row.get('source_row', '?')}: {exc}"
            ) from None
        if label is None:
            ledger.exclude(row, reason)
            continue
        keep.append(index)
        labels.append(label)
    out = table.loc[keep].copy()
    out["label"] = labels
    return out


def _load_corrections(path: Path) -> dict[tuple[str, str, str], tuple[int, str]]:
    raw = read_table(path)
    missing = [
        c for c in ("dataset", "subject", "filename", "apex", "reason") if c not in raw.columns
    ]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(raw.columns)}")
    corrections = {}
    for index, row in raw.iterrows():
        where = f"{path}, line {int(index)}"
        dataset = normalise_dataset(row["dataset"], where, custom=True)
        key = (
            dataset,
            normalise_subject(dataset, row["subject"], where),
            str(row["filename"]).strip(),
        )
        text = str(row["apex"]).strip()
        if not text.isdigit():
            raise DataError(f"{where}: apex {row['apex']!r} is not a frame number")
        corrections[key] = (int(text), str(row["reason"]).strip())
    return corrections


def _apply_apex_policy(table: pd.DataFrame, cfg: DataConfig, ledger: _Ledger) -> pd.DataFrame:
    corrections = (
        _load_corrections(cfg.apex_corrections)
        if cfg.apex_policy == "corrections" and cfg.apex_corrections is not None
        else {}
    )
    if cfg.apex_policy == "corrections" and cfg.apex_corrections is None:
        raise DataError("data.apex_policy is 'corrections' but data.apex_corrections is not set")
    keep, apexes, notes = [], [], []
    for index, row in table.iterrows():
        raw_onset = row.get("onset_raw")
        if raw_onset is None or pd.isna(raw_onset) or raw_onset == "":
            keep.append(index)
            apexes.append(row.get("apex", pd.NA))
            notes.append("")
            continue
        onset, apex, offset = row["onset"], row["apex"], row["offset"]
        if pd.isna(onset) or pd.isna(offset):
            ledger.problem(
                row,
                f"onset {row['onset_raw']!r} / offset {row['offset_raw']!r} is not a frame number",
            )
            continue
        if onset > offset:
            ledger.problem(row, f"onset {onset} is after offset {offset}")
            continue
        if not pd.isna(apex) and onset <= apex <= offset:
            keep.append(index)
            apexes.append(apex)
            notes.append("")
            continue
        issue = (
            f"apex cell {row['apex_raw']!r} holds no frame number"
            if pd.isna(apex)
            else f"apex {apex} lies outside [onset {onset}, offset {offset}]"
        )
        if cfg.apex_policy == "error":
            raise DataError(
                f"{row['source_file']}, row {row['source_row']}: {issue} (data.apex_policy: error)"
            )
        if cfg.apex_policy == "exclude":
            ledger.exclude(row, f"{issue} (data.apex_policy: exclude)")
            continue
        if cfg.apex_policy == "midpoint":
            new_apex, note = (onset + offset) // 2, f"{issue}; set to the midpoint"
        else:
            key = (row["dataset"], row["subject"], row["filename"])
            if key not in corrections:
                ledger.problem(row, f"{issue} and {cfg.apex_corrections} has no correction for it")
                continue
            new_apex, reason = corrections[key]
            note = f"{issue}; corrected to {new_apex} ({reason})"
        if isinstance(row.get("apex_path"), str) and row.get("apex_path"):
            ledger.problem(
                row,
                f"{issue}; the apex frame file is given ({row['apex_path']}), so the "
                f"apex policy cannot move it to frame {new_apex}: fix the table",
            )
            continue
        keep.append(index)
        apexes.append(new_apex)
        notes.append(note)
    out = table.loc[keep].copy()
    out["apex"] = pd.array(apexes, dtype="Int64")
    out["apex_note"] = notes
    return out


def _resolve_frames(table: pd.DataFrame, ledger: _Ledger) -> pd.DataFrame:
    index_frames.cache_clear()  # folders may have changed since an earlier build
    keep, onsets, apexes = [], [], []
    for index, row in table.iterrows():
        root = row.get("frames_root", "")
        given = row.get("onset_path", "")
        if isinstance(given, str) and given:  # the source names the frame files itself
            keep.append(index)
            onsets.append(given)
            apexes.append(str(row.get("apex_path", "")))
            continue
        if not isinstance(root, str) or not root:
            keep.append(index)
            onsets.append("")
            apexes.append("")
            continue
        try:
            onset = find_frame(Path(root), row["subject"], row["filename"], int(row["onset"]))
            apex = find_frame(Path(root), row["subject"], row["filename"], int(row["apex"]))
        except DataError as exc:
            ledger.problem(row, str(exc))
            continue
        keep.append(index)
        onsets.append(str(onset))
        apexes.append(str(apex))
    out = table.loc[keep].copy()
    out["onset_path"] = onsets
    out["apex_path"] = apexes
    return out


_WHAT = {
    "onset_path": "onset frame",
    "apex_path": "apex frame",
    "offset_path": "offset frame",
    "flow_path": "flow image",
    "apex_crop_path": "apex crop",
}


def _check_images(
    table: pd.DataFrame, ledger: _Ledger, verify: bool, digests: DigestCache
) -> pd.DataFrame:
    """Every input file must exist and (``verify``) decode fully; flow images must be
    3-channel, square and of the set's size. Adds the digest columns and ``flow_side``."""
    keep: list[int] = []
    found: dict[int, dict[str, object]] = {}
    sides: dict[str, dict[str, int]] = {}
    for index, row in progress(list(table.iterrows()), "checking input images"):
        bad = None
        record: dict[str, object] = {}
        for column in PATH_COLUMNS:
            path = row.get(column, "")
            if not isinstance(path, str) or not path:
                continue
            what = _WHAT[column]
            try:
                if not Path(path).is_file():
                    raise DataError(f"{what} {path} does not exist")
                if verify and column == "flow_path":
                    info = check_flow_image(path)
                    record["flow_side"] = info.width
                    sides.setdefault(str(row.get("source_file", "")), {})[path] = info.width
                elif verify:
                    decode_image(path, what)
                record[digest_column(column)] = digests.digest(path)
            except DataError as exc:
                bad = str(exc)
                break
            except OSError as exc:
                bad = f"{what} {path} cannot be read ({exc.strerror})"
                break
        if bad is None:
            keep.append(index)
            found[index] = record
        else:
            ledger.problem(row, bad)
    wrong_size = {
        path: reason for group in sides.values() for path, reason in check_flow_sizes(group).items()
    }
    kept = []
    for index in keep:
        row = table.loc[index]
        if row.get("flow_path", "") in wrong_size:
            ledger.problem(row, wrong_size[row["flow_path"]])
        else:
            kept.append(index)
    out = table.loc[kept].copy()
    for column in PATH_COLUMNS:
        name = digest_column(column)
        out[name] = [str(found[i].get(name, "")) for i in kept]
    out["flow_side"] = pd.array([found[i].get("flow_side", pd.NA) for i in kept], dtype="Int64")
    return out


def _join_demographics(
    table: pd.DataFrame, demographics: pd.DataFrame, ledger: _Ledger, missing_policy: str
) -> pd.DataFrame:
    """Join per-subject demographics; a subject without a row is a problem, or (policy
    ``unknown``) kept with race and ethnicity ``Unknown`` and NA codes."""
    fields = ["race_code", "race", "ethnicity", "gender", "age_bin"]
    joined = table.merge(
        demographics[["dataset", "subject", *fields]], on=["dataset", "subject"], how="left"
    )
    missing = joined["race_code"].isna()
    if missing_policy == "unknown":
        joined.loc[missing, ["race", "ethnicity"]] = UNKNOWN
        out = joined.copy()
    else:
        for _, row in joined[missing].iterrows():
            ledger.problem(
                row,
                f"subject {row['dataset']}/{row['subject']} has no demographics row (set "
                "data.demographics.missing: unknown to keep it for emotion-only analyses)",
            )
        out = joined[~missing].copy()
    for column in ("race_code", "gender", "age_bin"):
        out[column] = pd.array(out[column], dtype="Int64")
    return out


def build_composite(
    cfg: DataConfig, with_demographics: bool = True, digests: DigestCache | None = None
) -> CompositeDatabase:
    """Build the composite database from the configured sources.

    Args:
        cfg: the ``data`` section of a study config.
        with_demographics: join the demographics (``False`` leaves the demographic
            columns empty: the annotation stage uses this to label subjects first).
        digests: where file digests are cached between runs (default: memory only).

    Returns:
        A :class:`CompositeDatabase`.

    Raises:
        DataError: a source cannot be read, or (with ``on_problem: error``) any
            sample fails a check; the message names the check and lists every
            failing sample with its file and row.
    """
    ledger = _Ledger(cfg.on_problem)
    digests = digests if digests is not None else DigestCache()
    tables, given_demographics = [], []
    for source in cfg.sources:
        rows = _read_source(source)
        table = rows.table
        for _, row in rows.skipped.iterrows():
            ledger.exclude(row, f"dataset {row['dataset']} not in the source's datasets")
        if isinstance(source, MegcFlowSource):
            table = _join_sheets(table, source, ledger)
        tables.append(table)
        given_demographics.append(rows.demographics)
    ledger.raise_problems("coding-sheet")
    table = pd.concat(tables, ignore_index=True)
    if table.empty:
        raise DataError("the configured data sources hold no samples")
    table = _check_duplicates(table, ledger)
    ledger.raise_problems("duplicate-key")
    table = _apply_labels(table, cfg.emotion_mapping, ledger)
    table = _apply_apex_policy(table, cfg, ledger)
    table = _resolve_frames(table, ledger)
    table = _check_images(table, ledger, cfg.check_images, digests)
    ledger.raise_problems("input-file")

    if not with_demographics:
        for column in ("race_code", "race", "ethnicity", "gender", "age_bin"):
            table[column] = pd.NA
        table["label_id"] = [EMOTION_CLASSES.index(label) for label in table["label"]]
        table["binary_label"] = [to_binary(label) for label in table["label"]]
        samples = (
            table.reindex(columns=SAMPLE_COLUMNS).sort_values(KEY_COLUMNS).reset_index(drop=True)
        )
        exclusions = pd.DataFrame(ledger.exclusions, columns=EXCLUSION_COLUMNS)
        return CompositeDatabase(samples, exclusions, pd.DataFrame(), pd.DataFrame())
    demographics = load_demographics(
        None if cfg.demographics.table == "builtin" else Path(cfg.demographics.table)
    )
    for extra in given_demographics:
        demographics = merge_demographics(demographics, extra)
    overrides = pd.DataFrame()
    if cfg.demographics.overrides is not None:
        demographics, overrides = apply_overrides(demographics, cfg.demographics.overrides)
    demographics["ethnicity"] = [
        ethnicity_group(race, cfg.demographics.grouping) for race in demographics["race"]
    ]
    table = _join_demographics(table, demographics, ledger, cfg.demographics.missing)
    ledger.raise_problems("demographics")

    table["label_id"] = [EMOTION_CLASSES.index(label) for label in table["label"]]
    table["binary_label"] = [to_binary(label) for label in table["label"]]
    frame_columns = ("onset", "apex", "offset")
    for column in SAMPLE_COLUMNS:
        if column not in table.columns:
            table[column] = pd.NA if column in frame_columns else ""
    for column in (*frame_columns, "flow_side"):
        table[column] = pd.array(table[column], dtype="Int64")
    text_columns = [
        c for c in SAMPLE_COLUMNS if table[c].dtype == object or str(table[c].dtype) == "str"
    ]
    table[text_columns] = table[text_columns].fillna("")
    samples = table[SAMPLE_COLUMNS].sort_values(KEY_COLUMNS).reset_index(drop=True)
    exclusions = pd.DataFrame(ledger.exclusions, columns=EXCLUSION_COLUMNS)
    return CompositeDatabase(samples, exclusions, demographics, overrides)
