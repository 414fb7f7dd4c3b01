"""MkDocs hooks of clexp's documentation (mkdocs.yml `hooks:`); both run at build time, offline.

1. Measured tables come from the committed files, never from a copy typed into a page. A page writes

       <!-- results: select_defaults-2026-12-03.md | Test, default -->

   and the build puts there the section of `bench/results/select_defaults-2026-12-03.md` whose `## `
   heading is, or else starts with, "Test, default" (without `| ...`: the whole file but its `# ` title), followed
   by one line saying the command, the machine and the date it was measured on, read from
   `bench/results/index.yaml`. A missing file, section or index entry fails the build.

2. Formulas: a fenced block of language `math` holds LaTeX; it becomes MathML (latex2mathml), which
   browsers render natively: no script, no font and nothing fetched from the network.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import yaml
from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MARKER = re.compile(r"^<!-- results: (?P<file>[^|>]+?)(?: \| (?P<section>[^>]+?))? -->$", re.MULTILINE)


def results_index() -> dict:
    """`bench/results/index.yaml`: for every results file, the command, machine and date that made it."""
    index = yaml.safe_load((RESULTS / "index.yaml").read_text(encoding="utf-8")) or {}
    for name, entry in index.items():
        missing = [k for k in ("command", "machine", "date") if not (entry or {}).get(k)]
        if missing:
            raise PluginError(f"bench/results/index.yaml: {name} has no {', '.join(missing)}")
    return index


def section(text: str, heading: str | None, name: str) -> str:
    """The part of a results file under the `## ` heading that starts with `heading` (its heading
    dropped), or the whole file without its `# ` title."""
    if heading is None:
        return re.sub(r"\A# .*\n+", "", text).strip()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    found = [p for p in parts[1:] if p.split("\n", 1)[0].strip() == heading]  # the exact heading, else
    found = found or [p for p in parts[1:] if p.startswith(heading)]          # the one it begins
    if len(found) != 1:
        raise PluginError(f"bench/results/{name}: {len(found)} sections start with {heading!r} (one expected)")
    return found[0].split("\n", 1)[1].strip()


def results_block(name: str, heading: str | None, index: dict) -> str:
    path = RESULTS / name
    if not path.is_file():
        raise PluginError(f"a page asks for bench/results/{name}, which does not exist")
    if name not in index:
        raise PluginError(f"bench/results/{name} has no entry in bench/results/index.yaml")
    entry = index[name]
    body = section(path.read_text(encoding="utf-8"), heading, name)
    where = f"*Measured by `{entry['command']}` on {entry['machine']}, {entry['date']}; from `bench/results/{name}`.*"
    return f"{body}\n\n{where}\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- results:" not in markdown:
        return markdown
    index = results_index()
    return MARKER.sub(lambda m: results_block(m["file"].strip(), m["section"], index), markdown)


def math_fence(source, language, css_class, options, md, **kwargs) -> str:
    """pymdownx.superfences formatter of ```math blocks: display MathML, the LaTeX kept in the title attribute."""
    try:
        mathml = convert(source.strip(), display="block")
    except Exception as error:  # noqa: BLE001 - any parse failure is a broken page
        raise PluginError(f"a ```math block does not parse ({error}): {source.strip()[:80]}") from error
    return f'<div class="formula" title="{html.escape(source.strip())}">{mathml}</div>'


def on_config(config):
    fences = config["mdx_configs"].setdefault("pymdownx.superfences", {}).setdefault("custom_fences", [])
    fences.append({"name": "math", "class": "formula", "format": math_fence})
    return config
