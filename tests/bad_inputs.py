"""The bad-input table: one row per bad or unusual input, how to make it, and the answer.

Each :class:`BadInput` builds its input in a fresh folder and returns the command
line to run; the answer must be exit status ``code`` and exactly one line starting
with ``error:`` that contains ``fragment`` (a regular expression), with no Python
traceback. ``code == 0`` rows are inputs that must be *accepted with a listed
exclusion* (``data.on_problem: exclude``): the fragment must then appear in the
study's exclusions.

``tests/test_bad_inputs.py`` runs every row; ``python -m tests.bad_inputs`` prints
the table with what the installed ethnicmer answers (used to show before/after).
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

TINY_SUBJECTS = [
    ("casme2", "sub01"),
    ("casme2", "sub02"),
    ("casme2", "sub03"),
    ("samm", "006"),
    ("samm", "007"),
    ("samm", "012"),
]
"""Real subject ids (the shipped demographics apply): 006/007 White, 012 Others."""

CSV = "combined_3_class2_for_optical_flow.csv"
FLOWS = Path("datasets") / "STSNet_whole_norm_u_v_os"
CROPS = Path("datasets") / "combined_datasets_whole"
EMOTION_OF_LABEL = {0: "disgust", 1: "happiness", 2: "surprise"}


def write_tiny_megc(root: Path, seed: int = 0) -> Path:
    """A MEGC2019-layout flow set of 24 samples (6 subjects × 4) with a learnable signal."""
    rng = np.random.default_rng(seed)
    (root / FLOWS).mkdir(parents=True, exist_ok=True)
    (root / CROPS).mkdir(parents=True, exist_ok=True)
    lines = ["dataset,sub,filename_o,label,apex,imagename,sub_filename"]
    for dataset, subject in TINY_SUBJECTS:
        for k in range(4):
            filename = f"EP0{k}_01" if dataset == "casme2" else f"{subject}_{k}_1"
            label = k % 3
            image = rng.integers(0, 60, size=(28, 28, 3), dtype=np.uint8)
            image[:, :, label] += 150
            Image.fromarray(image).save(root / FLOWS / f"{subject}_{filename} .png")
            crop = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(crop).save(root / CROPS / f"{subject}_{filename}.jpg")
            lines.append(f"{dataset},{subject},{filename},{label},,{subject}_{filename}.jpg,")
    (root / CSV).write_text("\n".join(lines) + "\n")
    return root


def write_casme2_sheet(path: Path, megc_root: Path) -> Path:
    """A CASME II coding sheet (.xlsx) agreeing with the tiny set's CASME II rows."""
    table = pd.read_csv(megc_root / CSV, dtype=str, keep_default_na=False)
    rows = []
    for row in table[table["dataset"] == "casme2"].itertuples():
        rows.append(
            {
                "Subject": int(row.sub[3:]),
                "Filename": row.filename_o,
                "OnsetFrame": 10,
                "ApexFrame": 20,
                "OffsetFrame": 30,
                "Action Units": "12",
                "Estimated Emotion": EMOTION_OF_LABEL[int(row.label)],
            }
        )
    pd.DataFrame(rows).to_excel(path, index=False)
    return path


class Workspace:
    """A fresh folder per case with helpers to write inputs and configs."""

    def __init__(self, root: Path, megc_template: Path, video: Path | None) -> None:
        self.root = root
        self.megc_template = megc_template
        self.video = video

    def megc(self) -> Path:
        """A private copy of the tiny MEGC set."""
        target = self.root / "megc"
        if not target.exists():
            shutil.copytree(self.megc_template, target)
        return target

    def flow(self, index: int = 0) -> Path:
        """The ``index``-th flow PNG of the private set (CSV order)."""
        root = self.megc()
        row = pd.read_csv(root / CSV, dtype=str, keep_default_na=False).iloc[index]
        return root / FLOWS / f"{row['sub']}_{row['filename_o']} .png"

    def crop(self, index: int = 0) -> Path:
        root = self.megc()
        row = pd.read_csv(root / CSV, dtype=str, keep_default_na=False).iloc[index]
        return root / CROPS / row["imagename"]

    def edit_csv(self, edit: Callable[[list[str]], list[str]]) -> Path:
        path = self.megc() / CSV
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")
        return path

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def config(
        self,
        data: dict[str, Any] | None = None,
        stages: dict[str, Any] | None = None,
        name: str = "study.yaml",
        **top: Any,
    ) -> Path:
        payload: dict[str, Any] = {
            "study": "bad",
            "runs_dir": str(self.root / "runs"),
            "data": data if data is not None else self.megc_data(),
        }
        if stages is not None:
            payload["stages"] = stages
        payload.update(top)
        return self.write(name, yaml.safe_dump(payload, sort_keys=False))

    def megc_data(self, **extra: Any) -> dict[str, Any]:
        return {"sources": [{"kind": "megc2019_flow", "root": str(self.megc()), **extra}]}

    def build(self, **data_extra: Any) -> list[str]:
        """``db build`` on the private set (data section extended by ``data_extra``)."""
        return ["db", "build", str(self.config(data={**self.megc_data(), **data_extra}))]


@dataclass(frozen=True)
class BadInput:
    """One row of the table.

    Attributes:
        id: short name.
        make: workspace → command line (arguments after ``ethnicmer``).
        code: expected exit status (2 = bad input, 130 = interrupted, 143 = SIGTERM,
            0 = accepted with the fragment in the exclusions).
        fragment: regular expression the ``error:`` line (or an exclusion) must match.
        setup: optional context needed while the command runs (``"lock"``,
            ``"interrupt"``, ``"sigterm"``).
        needs: modules the answer needs (``torch``, ``cv2``); the test skips the row
            where they are not installed (the minimum-versions CI step).
    """

    id: str
    make: Callable[[Workspace], list[str]]
    code: int
    fragment: str
    setup: str = ""
    needs: tuple[str, ...] = ()


CASES: list[BadInput] = []


def case(
    id: str, code: int, fragment: str, setup: str = "", needs: tuple[str, ...] = ()
) -> Callable:
    """Register a case: the decorated function builds the input and returns argv."""

    def register(make: Callable[[Workspace], list[str]]) -> Callable[[Workspace], list[str]]:
        CASES.append(BadInput(id, make, code, fragment, setup, needs))
        return make

    return register


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ----------------------------------------------------------------- configs


@case("config missing", 2, r"config file not found")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.root / "nope.yaml")]


@case("config not YAML", 2, r"not valid YAML")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.write("c.yaml", "study: [unclosed\n"))]


@case("config is a list", 2, r"must be a YAML mapping")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.write("c.yaml", "- a\n- b\n"))]


@case("unknown top-level key", 2, r"colour: unknown key")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(colour="red"))]


@case("unknown nested key", 2, r"stages\.benchmark\.epoch: unknown key")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(stages={"benchmark": {"models": [], "epoch": 3}}))]


@case("seed not an integer", 2, r"seed: ")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(seed="abc"))]


@case("unset environment variable", 2, r"environment variable \$\{ETHNICMER_NOT_SET_X\}")
def _(ws: Workspace) -> list[str]:
    data = {"sources": [{"kind": "megc2019_flow", "root": "${ETHNICMER_NOT_SET_X}/megc"}]}
    return ["db", "build", str(ws.config(data=data))]


@case("study name with a slash", 2, r"study: ")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(study="a/b"))]


@case("no data sources", 2, r"data\.sources: ")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(data={"sources": []}))]


@case("unknown source kind", 2, r"data\.sources\.0")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(data={"sources": [{"kind": "casme3", "root": "x"}]}))]


@case("zero epochs", 2, r"stages\.benchmark\.epochs: ")
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"epochs": 0, "models": [{"name": "m"}]}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("duplicate benchmark row names", 2, r"repeated: \['m'\]")
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"models": [{"name": "m"}, {"name": "m"}]}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("compare names an unknown row", 2, r"not benchmark rows")
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"models": [{"name": "m"}], "compare": [["m", "z"]]}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("cam without a benchmark", 2, r"cam needs a benchmark section")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(stages={"cam": {}}))]


@case("cam without checkpoints", 2, r"save_checkpoints: true")
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"models": [{"name": "m"}], "save_checkpoints": False}, "cam": {}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("cam names an unknown row", 2, r"cam\.models \['z'\] are not benchmark rows")
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"models": [{"name": "m"}]}, "cam": {"models": ["z"]}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("grouping misses a race", 2, r"grouping must map exactly the races")
def _(ws: Workspace) -> list[str]:
    data = {**ws.megc_data(), "demographics": {"grouping": {"White": "A"}}}
    return ["db", "build", str(ws.config(data=data))]


@case("paper_groups names no group", 2, r"paper_groups .* are not groups of the grouping")
def _(ws: Workspace) -> list[str]:
    grouping = {"White": "European", "Black": "African", "Asian": "East Asian"}
    grouping |= {"Indian": "South Asian", "Others": "Other"}
    data = {**ws.megc_data(), "demographics": {"grouping": grouping}}
    return ["db", "build", str(ws.config(data=data))]


@case("unknown flow parameter", 2, r"stages\.flow.*tau_x")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(stages={"flow": {"params": {"tau_x": 1}}}))]


@case("face simulator too small", 2, r"image_size >= 128")
def _(ws: Workspace) -> list[str]:
    simulate = {"out": str(ws.root / "sim"), "kind": "face", "image_size": 64}
    return ["db", "build", str(ws.config(simulate=simulate))]


@case("runs_dir is a file", 2, r"runs_dir: .* is a file, not a folder")
def _(ws: Workspace) -> list[str]:
    ws.write("runs-file", "x")
    return ["db", "build", str(ws.config(runs_dir=str(ws.root / "runs-file")))]


@case("runs_dir cannot be created", 2, r"runs_dir: cannot create")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(runs_dir="/proc/ethnicmer-runs"))]


@case("apex corrections policy without a file", 2, r"apex_corrections is not set")
def _(ws: Workspace) -> list[str]:
    return ws.build(apex_policy="corrections")


@case("removed facexformer estimator", 2, r"stages\.annotate\.estimator: ")
def _(ws: Workspace) -> list[str]:
    return ["annotate", str(ws.config(stages={"annotate": {"estimator": "facexformer"}}))]


@case("annotate table without predictions", 2, r"needs `predictions:`")
def _(ws: Workspace) -> list[str]:
    return ["annotate", str(ws.config(stages={"annotate": {"estimator": "table"}}))]


@case("command for a stage the config lacks", 2, r"has no stages\.benchmark section")
def _(ws: Workspace) -> list[str]:
    return ["benchmark", str(ws.config())]


@case(
    "unknown LOSO test subject",
    2,
    r"test_subjects not in the samples: \['samm/999'\]",
    needs=("torch",),
)
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"models": [{"name": "m"}], "test_subjects": ["samm/999"]}}
    return ["benchmark", str(ws.config(stages=stages))]


@case("too few subjects for prima facie", 2, r"a scenario needs 16", needs=("torch",))
def _(ws: Workspace) -> list[str]:
    stages = {"prima_facie": {"draws": 1, "features": "efficientnet_lite0"}}
    return ["prima-facie", str(ws.config(stages=stages))]


@case("apex_rgb row without apex crops", 2, r"have no apex crop \(apex_grey\)", needs=("torch",))
def _(ws: Workspace) -> list[str]:
    def no_crops(lines: list[str]) -> list[str]:
        return [lines[0]] + [",".join([*line.split(",")[:5], "", ""]) for line in lines[1:]]

    ws.edit_csv(no_crops)
    row = {"name": "d", "context": "ethnicity", "context_input": "apex_rgb"}
    return ["benchmark", str(ws.config(stages={"benchmark": {"models": [row]}}))]


@case("report without a report section", 2, r"has no stages\.report section")
def _(ws: Workspace) -> list[str]:
    return ["report", str(ws.config())]


# ----------------------------------------------------------------- MEGC CSV


@case("MEGC CSV missing", 2, r"combined_3_class2_for_optical_flow\.csv: file not found")
def _(ws: Workspace) -> list[str]:
    (ws.megc() / CSV).unlink()
    return ws.build()


@case("MEGC CSV lacks a column", 2, r"missing column\(s\) \['label'\]")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(
        lambda lines: [line.replace("label", "emotion", 1) for line in lines[:1]] + lines[1:]
    )
    return ws.build()


@case("MEGC CSV without rows", 2, r"has no sample rows")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: lines[:1])
    return ws.build()


@case("extra fields on the first data line", 2, r"line 2: 9 fields where the header has 7")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [lines[0], lines[1] + ",x,y", *lines[2:]])
    return ws.build()


@case("extra field on a later line", 2, r"line 5: 8 fields where the header has 7")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [*lines[:4], lines[4] + ",x", *lines[5:]])
    return ws.build()


@case("missing fields on a line", 2, r"line 3: 5 fields where the header has 7")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [*lines[:2], ",".join(lines[2].split(",")[:5]), *lines[3:]])
    return ws.build()


@case("unknown dataset", 2, r"line 2: unknown dataset 'casme9'")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [lines[0], lines[1].replace("casme2", "casme9", 1), *lines[2:]])
    return ws.build()


@case("label outside 0..2", 2, r"line 3: label '5' is not 0, 1 or 2")
def _(ws: Workspace) -> list[str]:
    def edit(lines: list[str]) -> list[str]:
        cells = lines[2].split(",")
        cells[3] = "5"
        return [*lines[:2], ",".join(cells), *lines[3:]]

    ws.edit_csv(edit)
    return ws.build()


@case("empty filename", 2, r"line 2: filename_o: empty filename")
def _(ws: Workspace) -> list[str]:
    def edit(lines: list[str]) -> list[str]:
        cells = lines[1].split(",")
        cells[2] = ""
        return [lines[0], ",".join(cells), *lines[2:]]

    ws.edit_csv(edit)
    return ws.build()


@case("subject without a number", 2, r"cannot read a subject number from 'subX'")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [lines[0], lines[1].replace("sub01", "subX", 1), *lines[2:]])
    return ws.build()


@case("duplicate sample key", 2, r"failed the duplicate-key check")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [*lines, lines[1]])
    return ws.build()


@case("CSV not UTF-8", 2, r"not a UTF-8 text table")
def _(ws: Workspace) -> list[str]:
    path = ws.megc() / CSV
    path.write_bytes(path.read_bytes().replace(b"EP00_01", b"EP\xff0_01", 1))
    return ws.build()


@case("datasets filter keeps nothing", 2, r"hold no samples")
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [line for line in lines if not line.startswith("samm")])
    return ws.build(
        sources=[{"kind": "megc2019_flow", "root": str(ws.megc()), "datasets": ["samm"]}]
    )


# ----------------------------------------------------------------- flow images and crops


@case("flow image missing", 2, r"flow image .* does not exist")
def _(ws: Workspace) -> list[str]:
    ws.flow(3).unlink()
    return ws.build()


@case("greyscale flow image", 2, r"is a L image with 1 channel")
def _(ws: Workspace) -> list[str]:
    _png(ws.flow(0), np.full((28, 28), 90, np.uint8))
    return ws.build()


@case("grey copied into u, v and strain", 2, r"three identical channels")
def _(ws: Workspace) -> list[str]:
    grey = np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)
    _png(ws.flow(0), np.stack([grey] * 3, axis=-1))
    return ws.build()


@case("non-square flow image", 2, r"is 64×48 px; flow images are square")
def _(ws: Workspace) -> list[str]:
    _png(ws.flow(1), np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return ws.build()


@case("flow image of another size", 2, r"is 64×64 px, but the other flow images .* 28×28")
def _(ws: Workspace) -> list[str]:
    _png(ws.flow(2), np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return ws.build()


@case("four-channel flow image", 2, r"is a RGBA image with 4 channel")
def _(ws: Workspace) -> list[str]:
    rgba = np.random.default_rng(4).integers(0, 255, (28, 28, 4), dtype=np.uint8)
    _png(ws.flow(0), rgba, mode="RGBA")
    return ws.build()


@case("truncated flow image", 2, r"flow image .* cannot be decoded")
def _(ws: Workspace) -> list[str]:
    _truncate(ws.flow(0))
    return ws.build()


@case("text file named .png", 2, r"flow image .* cannot be decoded")
def _(ws: Workspace) -> list[str]:
    ws.flow(0).write_text("not an image")
    return ws.build()


@case("truncated apex crop", 2, r"apex crop .* cannot be decoded")
def _(ws: Workspace) -> list[str]:
    _truncate(ws.crop(0), 0.6)
    return ws.build()


@case("apex crop missing", 2, r"apex crop .* does not exist")
def _(ws: Workspace) -> list[str]:
    ws.crop(5).unlink()
    return ws.build()


@case("flow image is a folder", 2, r"flow image .* does not exist")
def _(ws: Workspace) -> list[str]:
    path = ws.flow(0)
    path.unlink()
    path.mkdir()
    return ws.build()


@case("excluded bad flow image is listed", 0, r"three identical channels")
def _(ws: Workspace) -> list[str]:
    grey = np.random.default_rng(5).integers(0, 255, (28, 28), dtype=np.uint8)
    _png(ws.flow(0), np.stack([grey] * 3, axis=-1))
    return ws.build(on_problem="exclude")


# ----------------------------------------------------------------- demographics


def _demographics(ws: Workspace, rows: list[str]) -> Path:
    header = "dataset,subject,race_code,gender,age_bin"
    return ws.write("demo.csv", "\n".join([header, *rows]) + "\n")


_ALL_DEMOGRAPHICS = [
    "casme2,sub01,2,0,2",
    "casme2,sub02,2,1,2",
    "casme2,sub03,2,0,2",
    "samm,006,0,1,3",
    "samm,007,0,0,3",
    "samm,012,4,0,2",
]


@case("subject without demographics", 2, r"samm/012 has no demographics row")
def _(ws: Workspace) -> list[str]:
    path = _demographics(ws, _ALL_DEMOGRAPHICS[:-1])
    return ws.build(demographics={"table": str(path)})


@case("demographics table lacks a column", 2, r"missing column\(s\) \['age_bin'\]")
def _(ws: Workspace) -> list[str]:
    path = ws.write("demo.csv", "dataset,subject,race_code,gender\ncasme2,sub01,2,0\n")
    return ws.build(demographics={"table": str(path)})


@case("race code out of range", 2, r"line 3: race_code '9' is not an integer in 0\.\.4")
def _(ws: Workspace) -> list[str]:
    path = _demographics(ws, [_ALL_DEMOGRAPHICS[0], "casme2,sub02,9,1,2", *_ALL_DEMOGRAPHICS[2:]])
    return ws.build(demographics={"table": str(path)})


@case("subject twice in the demographics", 2, r"already given on line 2")
def _(ws: Workspace) -> list[str]:
    path = _demographics(ws, [*_ALL_DEMOGRAPHICS, "casme2,sub01,2,0,2"])
    return ws.build(demographics={"table": str(path)})


def _overrides(ws: Workspace, rows: list[str]) -> Path:
    return ws.write("over.csv", "\n".join(["dataset,subject,field,value,reason", *rows]) + "\n")


@case("contradicting overrides", 2, r"line 3: overrides samm/012 race_code to 0, but line 2")
def _(ws: Workspace) -> list[str]:
    path = _overrides(ws, ["samm,012,race_code,2,looks Asian", "samm,012,race_code,0,looks White"])
    return ws.build(demographics={"overrides": str(path)})


@case("empty lines before a bad row", 2, r"line 5: overrides samm/012 race_code to 0, but line 2")
def _(ws: Workspace) -> list[str]:
    # pandas skips empty lines: the message must still name the line an editor shows
    lines = ["samm,012,race_code,2,looks Asian", "", "", "samm,012,race_code,0,looks White"]
    return ws.build(demographics={"overrides": str(_overrides(ws, lines))})


@case("override without a reason", 2, r"every override needs a reason")
def _(ws: Workspace) -> list[str]:
    return ws.build(demographics={"overrides": str(_overrides(ws, ["samm,012,race_code,2,"]))})


@case("override of an unknown field", 2, r"field 'race' is not one of")
def _(ws: Workspace) -> list[str]:
    return ws.build(demographics={"overrides": str(_overrides(ws, ["samm,012,race,2,why"]))})


@case("override of an unknown subject", 2, r"samm/099 is not in the demographics table")
def _(ws: Workspace) -> list[str]:
    return ws.build(demographics={"overrides": str(_overrides(ws, ["samm,099,gender,1,why"]))})


@case("override value out of range", 2, r"gender '7' is not an integer in 0\.\.1")
def _(ws: Workspace) -> list[str]:
    return ws.build(demographics={"overrides": str(_overrides(ws, ["samm,012,gender,7,why"]))})


# ----------------------------------------------------------------- coding sheets


@case("text file named .xlsx", 2, r"not an Excel workbook")
def _(ws: Workspace) -> list[str]:
    sheet = ws.write("CASME2-coding.xlsx", "Subject,Filename\n1,EP02_01f\n")
    return ws.build(sources=[{"kind": "casme2", "sheet": str(sheet)}])


@case("MEGC label disagrees with the sheet", 2, r"(?s)coding-sheet check.*disagrees with the sheet")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    table = pd.read_excel(sheet)
    table.loc[0, "Estimated Emotion"] = "happiness"
    table.to_excel(sheet, index=False)
    source = {"kind": "megc2019_flow", "root": str(ws.megc()), "casme2_sheet": str(sheet)}
    return ws.build(sources=[source])


@case(
    "sample missing from the sheet", 2, r"(?s)coding-sheet check.*not in the official coding sheet"
)
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    pd.read_excel(sheet).iloc[1:].to_excel(sheet, index=False)
    source = {"kind": "megc2019_flow", "root": str(ws.megc()), "casme2_sheet": str(sheet)}
    return ws.build(sources=[source])


@case("export_png with normalise: none", 2, r"export_png .*clipped to 8 bits")
def _(ws: Workspace) -> list[str]:
    stages = {"flow": {"normalise": "none", "export_png": True}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("joined sheet lists a sample twice", 2, r"lists a sample twice.*casme2/sub0\d/.* at rows")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    table = pd.read_excel(sheet)
    pd.concat([table, table.iloc[[0]]]).to_excel(sheet, index=False)
    source = {"kind": "megc2019_flow", "root": str(ws.megc()), "casme2_sheet": str(sheet)}
    return ws.build(sources=[source])


@case("sheet lacks a column", 2, r"missing column\(s\) \['Estimated Emotion'\]")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    pd.read_excel(sheet).drop(columns=["Estimated Emotion"]).to_excel(sheet, index=False)
    return ws.build(sources=[{"kind": "casme2", "sheet": str(sheet)}])


@case("SAMM sheet without its header row", 2, r"no header row with 'Subject' and 'Filename'")
def _(ws: Workspace) -> list[str]:
    sheet = ws.root / "samm.xlsx"
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_excel(sheet, index=False)
    return ws.build(sources=[{"kind": "samm", "sheet": str(sheet)}])


@case("unknown emotion word", 2, r"unknown emotion|emotion")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    table = pd.read_excel(sheet)
    table.loc[0, "Estimated Emotion"] = "glee"
    table.to_excel(sheet, index=False)
    return ws.build(sources=[{"kind": "casme2", "sheet": str(sheet)}])


@case("frame folder missing", 2, r"frame folder .* does not exist")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    (ws.root / "frames").mkdir()
    return ws.build(
        sources=[{"kind": "casme2", "sheet": str(sheet), "frames": str(ws.root / "frames")}]
    )


@case("apex correction is not a frame", 2, r"apex 'x' is not a frame number")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    table = pd.read_excel(sheet).astype({"ApexFrame": object})
    table.loc[0, "ApexFrame"] = "/"
    table.to_excel(sheet, index=False)
    fixes = ws.write("apex.csv", "dataset,subject,filename,apex,reason\ncasme2,1,EP00_01,x,why\n")
    return ws.build(
        sources=[{"kind": "casme2", "sheet": str(sheet)}],
        apex_policy="corrections",
        apex_corrections=str(fixes),
    )


@case("onset after offset", 2, r"onset 30 is after offset 10")
def _(ws: Workspace) -> list[str]:
    sheet = write_casme2_sheet(ws.root / "casme2.xlsx", ws.megc())
    table = pd.read_excel(sheet)
    table.loc[0, ["OnsetFrame", "OffsetFrame"]] = [30, 10]
    table.to_excel(sheet, index=False)
    return ws.build(sources=[{"kind": "casme2", "sheet": str(sheet)}])


# ----------------------------------------------------------------- flow-video


def _clip(ws: Workspace, *options: str) -> list[str]:
    video = ws.video if ws.video is not None else ws.root / "missing.mp4"
    return ["flow-video", str(video), *options]


@case("flow-video: apex before onset", 2, r"--apex 10 comes before --onset 20")
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "20", "--apex", "10", "-o", str(ws.root / "f.png"))


@case("flow-video: onset equals apex", 2, r"same frame: the flow would be all zero")
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "10", "--apex", "10", "-o", str(ws.root / "f.png"))


@case("flow-video: negative onset", 2, r"--onset -5: frame numbers start at 0")
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "-5", "--apex", "10", "-o", str(ws.root / "f.png"))


@case("flow-video: JPEG output", 2, r"-o .*f\.jpg: a \.jpg file; .* name it \.png")
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", str(ws.root / "f.jpg"))


@case("flow-video: output without extension", 2, r"a name without an extension")
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", str(ws.root / "out"))


@case("flow-video: output is a folder", 2, r"is a folder; give the flow image's file name")
def _(ws: Workspace) -> list[str]:
    (ws.root / "outdir").mkdir()
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", str(ws.root / "outdir"))


@case("flow-video: size 0", 2, r"--size 0: the flow image side must be at least 8")
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", str(ws.root / "f.png"), "--size", "0")


@case("flow-video: negative crop size", 2, r"--crop-size -10: the aligned crop must be")
def _(ws: Workspace) -> list[str]:
    out = str(ws.root / "f.png")
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", out, "--crop-size", "-10")


@case("flow-video: unknown method", 2, r"--method lk: must be tvl1, farneback or dis")
def _(ws: Workspace) -> list[str]:
    out = str(ws.root / "f.png")
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", out, "--method", "lk")


@case("flow-video: unknown alignment", 2, r"--align mtcnn: must be dlib or none")
def _(ws: Workspace) -> list[str]:
    out = str(ws.root / "f.png")
    return _clip(ws, "--onset", "0", "--apex", "10", "-o", out, "--align", "mtcnn")


@case("flow-video: missing video", 2, r"no such video file or frame folder", needs=("cv2",))
def _(ws: Workspace) -> list[str]:
    out = str(ws.root / "f.png")
    return ["flow-video", str(ws.root / "none.mp4"), "--onset", "0", "--apex", "5", "-o", out]


@case(
    "flow-video: not a video",
    2,
    r"cannot open the video|past the end of the video \(0 frames\)",
    needs=("cv2",),
)
def _(ws: Workspace) -> list[str]:
    fake = ws.write("fake.mp4", "not a video")
    out = str(ws.root / "f.png")
    return ["flow-video", str(fake), "--onset", "0", "--apex", "5", "-o", out]


@case(
    "flow-video: apex past the end", 2, r"--apex 5000 is past the end of the video", needs=("cv2",)
)
def _(ws: Workspace) -> list[str]:
    return _clip(ws, "--onset", "0", "--apex", "5000", "-o", str(ws.root / "f.png"))


@case(
    "flow-video: frame folder without that frame", 2, r"no image for --apex frame 9", needs=("cv2",)
)
def _(ws: Workspace) -> list[str]:
    folder = ws.root / "frames"
    folder.mkdir()
    for k in (1, 2, 3):
        _png(folder / f"img{k}.jpg", np.zeros((64, 64, 3), np.uint8))
    out = str(ws.root / "f.png")
    return ["flow-video", str(folder), "--onset", "1", "--apex", "9", "-o", out]


@case("flow-video: no face on the frames", 2, r"no face found", needs=("cv2",))
def _(ws: Workspace) -> list[str]:
    folder = ws.root / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in (1, 2):
        _png(folder / f"img{k}.jpg", rng.integers(0, 255, (160, 160, 3), dtype=np.uint8))
    out = str(ws.root / "f.png")
    return ["flow-video", str(folder), "--onset", "1", "--apex", "2", "-o", out]


# ----------------------------------------------------------------- running


@case(
    "study already running",
    2,
    r"another ethnicmer process \(pid \d+\) is running study 'bad'",
    setup="lock",
)
def _(ws: Workspace) -> list[str]:
    return ws.build()


# --- beyond two datasets (issue 17): SMIC, the table source, protocols, published table


def _smic_table(ws: Workspace, rows: list[str]) -> Path:
    header = "data,subject,clip,label,onset_frame,apex_frame,offset_frame"
    return ws.write("smic.csv", "\n".join([header, *rows]) + "\n")


@case(
    "SMIC clip of another subject",
    2,
    r"smic\.csv, line 2: clip: SMIC clip 's2_ne_01' belongs to s2",
)
def _(ws: Workspace) -> list[str]:
    table = _smic_table(ws, ["smic,s1,s2_ne_01,0,10,12,14"])
    return ws.build(sources=[{"kind": "smic", "table": str(table)}])


@case("SMIC row of another dataset", 2, r"smic\.csv, line 2: data 'samm' is not smic")
def _(ws: Workspace) -> list[str]:
    table = _smic_table(ws, ["samm,s1,s1_ne_01,0,10,12,14"])
    return ws.build(sources=[{"kind": "smic", "table": str(table)}])


@case("SMIC label outside the classes", 2, r"line 2: label '7' is not 0, 1, 2")
def _(ws: Workspace) -> list[str]:
    table = _smic_table(ws, ["smic,s1,s1_ne_01,7,10,12,14"])
    return ws.build(sources=[{"kind": "smic", "table": str(table)}])


@case(
    "table source without images",
    2,
    r"missing column\(s\) \['flow_path, or onset_path and apex_path'\]",
)
def _(ws: Workspace) -> list[str]:
    table = ws.write("own.csv", "dataset,subject,filename,emotion\nmylab,p1,c1,happiness\n")
    return ws.build(sources=[{"kind": "table", "path": str(table)}])


@case(
    "table source row with neither frames nor flow",
    2,
    r"own\.csv, line 3: give flow_path, or onset_path",
)
def _(ws: Workspace) -> list[str]:
    flow = ws.flow(0)
    table = ws.write(
        "own.csv",
        f"dataset,subject,filename,label,flow_path\nmylab,p1,c1,0,{flow}\nmylab,p1,c2,1,\n",
    )
    return ws.build(sources=[{"kind": "table", "path": str(table)}])


@case(
    "table source: two demographics for one subject",
    2,
    r"line 3: demographics of mylab/p1 .* differ from line 2",
)
def _(ws: Workspace) -> list[str]:
    flow = ws.flow(0)
    rows = [
        "dataset,subject,filename,label,flow_path,race_code,gender,age_bin",
        f"mylab,p1,c1,0,{flow},2,0,3",
        f"mylab,p1,c2,1,{flow},0,0,3",
    ]
    table = ws.write("own.csv", "\n".join(rows) + "\n")
    return ws.build(sources=[{"kind": "table", "path": str(table)}])


@case(
    "table source: demographics given twice, differently",
    2,
    r"demographics of samm/006 .* differ from",
)
def _(ws: Workspace) -> list[str]:
    flow = ws.flow(0)
    table = ws.write(
        "own.csv",
        f"dataset,subject,filename,label,flow_path,race_code,gender,age_bin\nsamm,6,x1,0,{flow},4,1,9\n",
    )
    return ws.build(sources=[{"kind": "table", "path": str(table)}])


@case(
    "table-source subject without demographics",
    2,
    r"has no demographics row \(set data\.demographics\.missing: unknown",
)
def _(ws: Workspace) -> list[str]:
    flow = ws.flow(0)
    table = ws.write("own.csv", f"dataset,subject,filename,label,flow_path\nmylab,p1,c1,0,{flow}\n")
    return ws.build(sources=[{"kind": "table", "path": str(table)}])


@case(
    "train_test protocol without datasets",
    2,
    r"protocol train_test needs train_datasets and test_datasets",
)
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"protocol": "train_test", "models": [{"name": "m"}]}}
    return ["db", "build", str(ws.config(stages=stages))]


@case(
    "train_test with a dataset not in the samples",
    2,
    r"\['smic'\] are not in the samples",
    needs=("torch",),
)
def _(ws: Workspace) -> list[str]:
    bench = {
        "protocol": "train_test",
        "train_datasets": ["casme2"],
        "test_datasets": ["smic"],
        "models": [{"name": "m"}],
        "epochs": 1,
    }
    return ["benchmark", str(ws.config(stages={"benchmark": bench}))]


@case(
    "MEGC dataset filter drops a dataset ethnicmer cannot read",
    0,
    r"dataset mmew not in the source's datasets",
)
def _(ws: Workspace) -> list[str]:
    ws.edit_csv(lambda lines: [*lines, "mmew,S1,clip1,0,,x.jpg,"])
    return ["db", "build", str(ws.config(data=ws.megc_data(datasets=["casme2", "samm"])))]


# --- devices, training options, ensembles, selection, tracking (issues 18, 19)


def _bench(ws: Workspace, **extra: Any) -> list[str]:
    bench = {"models": [{"name": "m"}], **extra}
    return ["db", "build", str(ws.config(stages={"benchmark": bench}))]


@case("unknown device", 2, r"stages\.benchmark\.device: String should match pattern")
def _(ws: Workspace) -> list[str]:
    return _bench(ws, device="gpu0")


@case(
    "CUDA device on a machine without one",
    2,
    r"device cuda:3: this machine has \d+ CUDA device",
    needs=("torch",),
)
def _(ws: Workspace) -> list[str]:
    bench = {"models": [{"name": "m"}], "device": "cuda:3", "epochs": 1}
    return ["benchmark", str(ws.config(stages={"benchmark": bench}))]


@case("mixed precision on the CPU", 2, r"precision bf16-mixed needs a GPU", needs=("torch",))
def _(ws: Workspace) -> list[str]:
    bench = {"models": [{"name": "m"}], "device": "cpu", "precision": "bf16-mixed", "epochs": 1}
    return ["benchmark", str(ws.config(stages={"benchmark": bench}))]


@case("rotation of min-max normalised flows", 2, r"rotate_degrees needs flows in pixels")
def _(ws: Workspace) -> list[str]:
    return _bench(ws, models=[{"name": "m", "training": {"augment": {"rotate_degrees": 10}}}])


@case("mixup and cutmix together", 2, r"choose mixup_alpha or cutmix_alpha, not both")
def _(ws: Workspace) -> list[str]:
    return _bench(ws, models=[{"name": "m", "training": {"mixup_alpha": 0.2, "cutmix_alpha": 1}}])


@case("unknown backbone", 2, r"emotion_backbone: String should match pattern")
def _(ws: Workspace) -> list[str]:
    return _bench(ws, models=[{"name": "m", "emotion_backbone": "resnet9000"}])


@case("unknown timm model", 2, r"timm has no model 'no_such_net'", needs=("torch",))
def _(ws: Workspace) -> list[str]:
    bench = {"models": [{"name": "m", "emotion_backbone": "timm:no_such_net"}], "epochs": 1}
    return ["benchmark", str(ws.config(stages={"benchmark": bench}))]


@case("ensemble of an unknown row", 2, r"ensemble 'e': \['x'\] are not rows")
def _(ws: Workspace) -> list[str]:
    return _bench(ws, ensembles=[{"name": "e", "members": ["x"]}])


@case("selection over an unknown setting", 2, r"selection\.space\.momentum: 0\.9: .*is not")
def _(ws: Workspace) -> list[str]:
    return _bench(ws, models=[{"name": "m", "selection": {"space": {"momentum": [0.9]}}}])


@case("selection value a setting refuses", 2, r"selection\.space\.training\.label_smoothing: 0\.9")
def _(ws: Workspace) -> list[str]:
    space = {"training.label_smoothing": [0.9]}
    return _bench(ws, models=[{"name": "m", "selection": {"space": space}}])


@case(
    "cam in the fold without a benchmark row", 2, r"cam\.models \['nope'\] are not benchmark rows"
)
def _(ws: Workspace) -> list[str]:
    stages = {
        "benchmark": {"models": [{"name": "m"}], "save_checkpoints": False},
        "cam": {"when": "fold", "models": ["nope"]},
    }
    return ["db", "build", str(ws.config(stages=stages))]


@case("cam after the benchmark without checkpoints", 2, r"or cam\.when: fold")
def _(ws: Workspace) -> list[str]:
    stages = {"benchmark": {"models": [{"name": "m"}], "save_checkpoints": False}, "cam": {}}
    return ["db", "build", str(ws.config(stages=stages))]


@case("tracking of another kind", 2, r"tracking\.kind: Input should be 'mlflow'")
def _(ws: Workspace) -> list[str]:
    return ["db", "build", str(ws.config(tracking={"kind": "wandb"}))]


@case("Ctrl-C", 130, r"interrupted; .* re-run the same command to resume", setup="interrupt")
def _(ws: Workspace) -> list[str]:
    return ws.build()


@case("SIGTERM", 143, r"terminated \(SIGTERM\); .* re-run the same command", setup="sigterm")
def _(ws: Workspace) -> list[str]:
    return ws.build()


@case(
    "output folder not writable",
    2,
    r"Read-only file system|Permission denied|not writable",
    setup="readonly",
)
def _(ws: Workspace) -> list[str]:
    return ws.build()


def hold_lock(run_dir: Path) -> Any:
    """Take ``run_dir/.lock`` as another process would (returns the open handle)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a+")
    handle.write("424242")
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def error_lines(output: str) -> list[str]:
    """The ``error:`` lines of a command's output."""
    return [line for line in output.splitlines() if line.startswith("error:")]


def _report() -> None:  # pragma: no cover - a tool for closing notes
    """Print every case with the installed ethnicmer's exit code and first error line."""
    import tempfile

    from typer.testing import CliRunner

    from ethnicmer.cli import app

    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        template = write_tiny_megc(Path(tmp) / "template")
        video = Path(__import__("os").environ.get("ETHNICMER_REAL_DATA", "/nonexistent"))
        video = video / "videos" / "single_face.mp4"
        for n, bad in enumerate(CASES):
            if bad.setup:
                print(f"{n:3d} | {bad.id} | (needs setup {bad.setup}) |")
                continue
            root = Path(tmp) / f"case{n}"
            root.mkdir()
            ws = Workspace(root, template, video if video.is_file() else None)
            try:
                argv = bad.make(ws)
                result = runner.invoke(app, argv)
                lines = error_lines(result.output)
                shown = (
                    lines[0][:150]
                    if lines
                    else (
                        "TRACEBACK " + repr(result.exception)[:120]
                        if result.exception and not isinstance(result.exception, SystemExit)
                        else result.output.strip().splitlines()[-1][:150]
                        if result.output.strip()
                        else ""
                    )
                )
                print(f"{n:3d} | {bad.id} | exit {result.exit_code} | {shown}")
            except Exception as exc:
                print(f"{n:3d} | {bad.id} | setup failed: {exc!r}"[:200])


if __name__ == "__main__":  # pragma: no cover
    _report()
