"""The study report (issue 19): findings first, readable tables, checked in a browser."""

from __future__ import annotations

import base64
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ethnicmer.config import load_config
from ethnicmer.pipeline import run_stage
from ethnicmer.stages import BENCHMARK, DATABASE, REPORT
from tests.conftest import tiny_benchmark_config


@pytest.fixture(scope="module")
def report(tiny_megc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a tiny study: two rows, two seeds, one comparison."""
    tmp = tmp_path_factory.mktemp("report")
    path = tiny_benchmark_config(
        tmp,
        tiny_megc,
        [{"name": "motion"}, {"name": "dual", "context": "ethnicity", "context_input": "flow"}],
        seeds=[0, 1],
        save_checkpoints=False,
    )
    path.write_text(path.read_text() + "  report: {}\n")
    cfg = load_config(path)
    for stage in (DATABASE, BENCHMARK, REPORT):
        run_stage(stage, cfg)
    return cfg.run_dir / "report.html"


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.h2: list[str] = []
        self.images: list[str] = []
        self.tables_outside_scroll = 0
        self.headers: list[str] = []
        self._in = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and "scroll" not in self.stack:
            self.tables_outside_scroll += 1
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        self.stack.append(attributes.get("class") or tag)
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self.h2.append(data.strip())
        if self._in == "th":
            self.headers.append(data.strip())
        self._in = ""


def test_the_report_answers_first_with_readable_tables(report: Path):
    html = report.read_text()
    structure = _Structure()
    structure.feed(html)
    assert structure.h2[0] == "Findings"
    findings = html.split('<h2 id="findings">')[1].split("<h2 ")[0]
    # the comparison with its interval, adjusted p and detectable effect, before any table
    assert re.search(
        r"dual − motion: ΔMF1 [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\], Holm p", findings
    )
    assert "this study could detect ≥" in findings and "<table" not in findings
    assert structure.tables_outside_scroll == 0  # wide tables scroll inside their box
    assert "MF1 95 % CI low" in structure.headers and "mf1_ci_low" not in structure.headers
    assert "<details><summary>" in html  # long tables and the config are folded
    for src in structure.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(structure.images) >= 3  # the forest plot and two confusion matrices
    markdown = (report.parent / "report.md").read_text()
    assert "](report/findings_forest.png)" in markdown
    assert (report.parent / "report" / "findings_forest.png").is_file()


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _browser() is None, reason="no Chromium on this machine: HTML checked structurally only"
)
def test_the_report_in_a_headless_browser(report: Path):
    """No horizontal overflow of the page, no broken image, no console error."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_browser(), args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        checks = page.evaluate(
            """() => ({
              overflow: document.documentElement.scrollWidth - window.innerWidth,
              broken: Array.from(document.images)
                .filter(i => !(i.complete && i.naturalWidth > 0)).length,
              images: document.images.length})"""
        )
        browser.close()
    assert checks["overflow"] <= 0, checks
    assert checks["broken"] == 0 and checks["images"] >= 3, checks
    assert errors == []
