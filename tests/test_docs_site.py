"""The documentation site: it builds with `mkdocs build --strict` (no warning, broken link or missing
reference), its measured tables are the committed files of bench/results/, it renders in a real headless
browser (the navigation, a method page's formulas as laid-out MathML; Debian's chromium, skips without one),
its search index exists; the README stays short and its method table says the configs' defaults; `clexp
--help` ends by saying where the documentation is; no file points outside the repository."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import clexp_cli
from tests.test_report_html import find_browser, parse

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def load_hooks():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("latex2mathml", reason="the docs extra is not installed (pip install -e '.[docs]')")
    spec = importlib.util.spec_from_file_location("clexp_docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def test_every_results_file_says_its_command_machine_and_date():
    index = yaml.safe_load((RESULTS / "index.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in RESULTS.glob("*.md")}  # every results file at the top; in a sub-folder, those named
    missing = {name for name in index if not (RESULTS / name).is_file()}
    assert files <= set(index) and not missing, f"without an entry: {files - set(index)}; without a file: {missing}"
    for name, entry in index.items():
        assert all(str(entry.get(k) or "").strip() for k in ("command", "machine", "date")), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(entry["date"])), name


def table_rows(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.startswith("|")]


def test_measured_tables_are_the_committed_files():
    """Every `<!-- results: ... -->` marker becomes that file's table, row for row, with its provenance; and
    a page holds no table row of a results file typed by hand (it would go stale when the file is re-made)."""
    hooks = load_hooks()
    index = hooks.results_index()
    measured = {row for p in RESULTS.glob("*.md") for row in table_rows(p.read_text(encoding="utf-8"))
                if re.search(r"\d\.\d", row)}
    used = set()
    for page in [*PAGES, ROOT / "README.md"]:
        source = page.read_text(encoding="utf-8")
        typed = [row for row in table_rows(source) if row in measured]
        assert not typed, f"{page.name}: rows of a bench/results file typed into the page: {typed[:2]}"
        for m in hooks.MARKER.finditer(source):
            name, heading = m["file"].strip(), m["section"]
            out = hooks.on_page_markdown(m[0], None, None, None)
            part = hooks.section((RESULTS / name).read_text(encoding="utf-8"), heading, name)
            assert table_rows(part) and table_rows(part) == table_rows(out), (page.name, name, heading)
            assert index[name]["command"] in out and str(index[name]["date"]) in out
            used.add(name)
    assert {"select_defaults-2026-12-03.md", "hsu2018-t10k-2026-12-03.md", "bench-cpu-2026-11-25.md"} <= used


def test_a_missing_results_file_or_section_fails_the_build():
    hooks = load_hooks()
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="does not exist"):
        hooks.on_page_markdown("<!-- results: nothing-here.md -->", None, None, None)
    with pytest.raises(PluginError, match="0 sections"):
        hooks.on_page_markdown("<!-- results: select_defaults-2026-12-03.md | No such heading -->", None, None, None)


def test_readme_is_short_and_its_method_table_says_the_config_defaults():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.split("\n")) <= 300
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (?:`(\w+)=([^`]+)`|—) \|", text, flags=re.MULTILINE)
    methods = {p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")}
    assert {r[0] for r in rows} == methods, "one README row per method of conf/method/"
    for method, key, value in rows:
        if key:
            config = yaml.safe_load((ROOT / "conf" / "method" / f"{method}.yaml").read_text(encoding="utf-8"))
            assert float(config[key]) == float(value), f"README says {method} {key}={value}, the config {config[key]}"


def test_help_ends_with_where_the_documentation_is(tmp_path):
    out = clexp_cli(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    last = [line for line in out.stdout.split("\n") if line.strip()][-1]
    assert "Documentation" in last and "docs/" in last and "make docs" in last


OUTSIDE = re.compile(r"\.\./shared|/work/|shared/DESIGN|DESIGN\.md")
KNOWN_LOOKUPS: set[str] = set()  # files allowed to name a path outside the repository: none


def test_no_file_refers_to_a_path_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = []
    for name in tracked.split():
        path = ROOT / name
        if name in KNOWN_LOOKUPS or name == "tests/test_docs_site.py" or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {m[0]}" for m in OUTSIDE.finditer(text)]
    assert not found, found


@pytest.fixture(scope="module")
def site():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="the docs extra is not installed (mkdocs-material)")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", tmp], cwd=ROOT,
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
        assert out.returncode == 0, out.stderr[-4000:]
        yield Path(tmp)


def test_site_has_every_page_and_a_search_index(site):
    for page in PAGES:
        assert (site / page.relative_to(ROOT / "docs")).with_suffix(".html").is_file(), page
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    locations = {doc["location"].split("#")[0] for doc in index["docs"]}
    assert {"methods/quadratic.html", "sweeps.html", "api.html"} <= locations
    assert any("Fisher" in doc["text"] for doc in index["docs"] if doc["location"].startswith("methods/quadratic"))
    api = (site / "api.html").read_text(encoding="utf-8")
    assert 'id="clexp.run"' in api and 'id="clexp.core.metrics.forgetting"' in api  # mkdocstrings rendered the API


PROBE = ("<script>window.addEventListener('load', () => { const b = document.body;"
         " const nav = document.querySelectorAll('nav.md-nav--primary a.md-nav__link');"
         " b.setAttribute('data-nav-links', nav.length);"
         " const maths = [...document.querySelectorAll('math')];"
         " b.setAttribute('data-maths', maths.length);"
         " b.setAttribute('data-math-min-height', Math.min(...maths.map(m => m.getBoundingClientRect().height)));"
         " const frac = document.querySelector('mfrac'), mi = document.querySelector('math mi');"
         " if (frac && mi) b.setAttribute('data-frac-over-mi',"
         "   frac.getBoundingClientRect().height / mi.getBoundingClientRect().height);"
         " b.setAttribute('data-theme-script', typeof document$ !== 'undefined' ? 'yes' : 'no');"
         " b.setAttribute('data-probed', 'yes'); });</script>")


def render(page: Path, timeout: float = 120):
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser (chromium) on this machine")
    probed = page.with_name("probed-" + page.name)  # beside the page: its assets resolve the same
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
             probed.as_uri()], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = parse(out.stdout)
    assert dom.body.get("data-probed") == "yes", "the page did not finish loading"
    return dom


def test_navigation_renders_in_a_browser(site):
    dom = render(site / "index.html")
    assert int(dom.body["data-nav-links"]) >= len(PAGES)  # every page is in the navigation
    assert dom.body["data-theme-script"] == "yes"  # the theme's script ran (offline: nothing fetched)


def test_a_method_page_renders_its_formulas(site):
    dom = render(site / "methods" / "quadratic.html")
    source = (ROOT / "docs" / "methods" / "quadratic.md").read_text(encoding="utf-8")
    assert int(dom.body["data-maths"]) == source.count("```math") > 0
    assert float(dom.body["data-math-min-height"]) > 0  # every formula is laid out
    # a fraction is stacked (taller than a letter), as MathML layout does and plain text would not
    assert float(dom.body["data-frac-over-mi"]) > 1.5
