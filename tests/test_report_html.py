"""report.html: one self-contained file (figures as data URIs, tables, the sweep's overrides and the
software versions, the failed jobs with their error line, every text escaped), checked by parsing it
here and by rendering it in a real headless browser (Debian's chromium; skips only without one).

`assert_report_html` and `render_in_browser` are for other tests too (e.g. a launcher's sweep)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clexp.core.results import versions
from clexp.review.report import main
from tests.conftest import clexp_cli
from tests.test_report import fake_failed, fake_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# written into the DOM once the page has loaded: what the browser decoded of each image
PROBE = ("<script>window.addEventListener('load', () => { for (const img of document.images) {"
         " img.setAttribute('data-natural-width', img.naturalWidth);"
         " img.setAttribute('data-natural-height', img.naturalHeight); }"
         " document.body.setAttribute('data-tables', document.querySelectorAll('table').length);"
         " document.body.setAttribute('data-probed', 'yes'); });</script>")


class Page(HTMLParser):
    """What the page holds: tables (rows of cell texts), images (attributes), all text, tags seen."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []  # {"class": ..., "rows": [[cell, ...], ...]}
        self.images: list[dict] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.body: dict = {}
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self.tables.append({"class": attrs.get("class", ""), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "body":
            self.body = attrs

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, cls: str) -> list[list[str]]:
        found = [t["rows"] for t in self.tables if cls in t["class"].split()]
        assert len(found) == 1, f"one table of class {cls!r} expected, found {len(found)}"
        return found[0]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def assert_report_html(path: Path, n_jobs: int, n_failed: int, n_figures: int | None = None) -> Page:
    """The structure of a report.html: self-contained, its tables, its decodable images, its jobs."""
    text = Path(path).read_text(encoding="utf-8")
    page = parse(text)
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    # self-contained: nothing fetched (no stylesheet link, script, external image, font or import)
    assert "link" not in page.tags and "script" not in page.tags
    assert "http://" not in text and "https://" not in text and "@import" not in text and "url(" not in text
    assert page.images, "no figure embedded"
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        width, height = png_size(base64.b64decode(img["src"].split(",", 1)[1]))
        assert width > 50 and height > 50
    if n_figures is not None:
        assert len(page.images) == n_figures
    jobs = page.table("jobs")
    assert len(jobs) == 1 + n_jobs
    assert sum(row[1] == "failed" for row in jobs[1:]) == n_failed
    page.table("summary")
    page.table("versions")
    return page


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def render_in_browser(path: Path, timeout: float = 90) -> Page:
    """The DOM of `path` after a headless browser loaded it (with the probe script added to a copy):
    its images carry the width and height the browser decoded."""
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser (chromium) on this machine")
    text = Path(path).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "probed.html"
        probed.write_text(text.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
        out = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={Path(tmp) / 'profile'}",
             "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = parse(out.stdout)
    assert dom.body.get("data-probed") == "yes", "the page did not finish loading"
    return dom


def assert_renders(path: Path) -> Page:
    """Every table and image of report.html is in the browser's DOM and every image decoded at its size."""
    source = parse(Path(path).read_text(encoding="utf-8"))
    dom = render_in_browser(path)
    assert int(dom.body["data-tables"]) == len(source.tables) == len(dom.tables)
    assert [t["rows"] for t in dom.tables] == [t["rows"] for t in source.tables]
    assert len(dom.images) == len(source.images)
    for img in dom.images:
        width, height = png_size(base64.b64decode(img["src"].split(",", 1)[1]))
        assert (int(img["data-natural-width"]), int(img["data-natural-height"])) == (width, height), img["alt"]
    return dom


def fake_sweep_with_failures(root: Path) -> None:
    """4 completed jobs (2 strengths × 2 seeds), one that diverged in training, one refused (its error
    has markup in it), with versions in results.json and a Hydra `multirun.yaml`."""
    job = 0
    for strength in (1.0, 10.0):
        for seed in (0, 1):
            fake_run(root / str(job), "ewc", strength, seed, 0.5 + 0.1 * seed + 0.01 * strength,
                     overrides=["method=ewc", f"method.lam={strength:g}", f"seed={seed}"])
            results = json.loads((root / str(job) / "results.json").read_text())
            results["versions"] = {"python": "3.11.7", "torch": "2.14.1", "lightning": "2.6.6", "hydra": "1.3.8"}
            (root / str(job) / "results.json").write_text(json.dumps(results))
            job += 1
    fake_failed(root / str(job), "non-finite value: experience 1, step 9: the loss became inf\nTraceback ...",
                ["method=ewc", "method.lam=1e30", "seed=0"])
    fake_failed(root / str(job + 1), "ConfigError: method.lam='<script>alert(1)</script>' is not allowed",
                ["method=ewc", "method.lam=<script>", "seed=0"])
    (root / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - method=ewc\n    - method.lam=1,10,1e30\n    - seed=0,1\n")


def test_report_html_structure(tmp_path, capsys):
    fake_sweep_with_failures(tmp_path)
    assert main([str(tmp_path)]) == 0
    path = tmp_path / "report.html"
    assert str(path) in capsys.readouterr().out  # printed with the other outputs
    page = assert_report_html(path, n_jobs=6, n_failed=2)
    assert len(page.images) == 2  # acc_vs_strength.png, acc_matrices.png
    summary = page.table("summary")
    assert summary[0][:5] == ["dataset", "scenario", "incremental", "method", "strength"]
    assert [row[4] for row in summary[1:]] == ["1", "10"] and {row[5] for row in summary[1:]} == {"2"}
    assert page.table("overrides")[1:] == [["method=ewc"], ["method.lam=1,10,1e30"], ["seed=0,1"]]
    version_rows = {row[0]: row[1:] for row in page.table("versions")[1:]}
    assert version_rows["runs (4)"][:4] == ["3.11.7", "2.14.1", "2.6.6", "1.3.8"]
    mine = versions()
    assert version_rows["this report"][:4] == [mine[k] for k in ("python", "torch", "lightning", "hydra")]
    text = "".join(page.text)
    assert "Failed jobs (2)" in text
    assert "the loss became inf" in text and "Traceback" not in text  # the error's first line only
    assert "method.lam='<script>alert(1)</script>'" in text  # shown as text, escaped in the file
    assert "&lt;script&gt;" in path.read_text()


def test_report_html_without_plots_or_sweep_folder(tmp_path):
    fake_run(tmp_path / "a", "naive", None, 0, 0.5)
    assert main([str(tmp_path / "a" / "results.json"), "--out", str(tmp_path), "--no-plots"]) == 0
    text = (tmp_path / "report.html").read_text()
    page = parse(text)
    assert not page.images and "not a Hydra sweep folder" in "".join(page.text)
    assert len(page.table("jobs")) == 2


def test_report_html_renders_in_a_browser(tmp_path):
    fake_sweep_with_failures(tmp_path)
    assert main([str(tmp_path)]) == 0
    dom = assert_renders(tmp_path / "report.html")
    assert len(dom.images) == 2
    assert "Failed jobs (2)" in "".join(dom.text)


@pytest.mark.slow
def test_report_html_of_a_real_sweep_with_a_diverging_job(tmp_path):
    # λ = 1e30 makes the EWC loss inf in the second experience: a job that fails during training
    out = clexp_cli(["-m", "experiment=smoke", "logger=none", "scenario.n_experiences=2", "method=ewc",
                     "optimizer=sgd", "method.lam=0.1,1e30", "seed=0", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 1, out.stderr  # a job failed: non-zero once both have run
    assert main([str(tmp_path / "sweep")]) == 0
    path = tmp_path / "sweep" / "report.html"
    page = assert_report_html(path, n_jobs=2, n_failed=1)
    assert "non-finite" in "".join(page.text)
    assert ["method.lam=0.1,1e30"] in page.table("overrides")
    assert_renders(path)
