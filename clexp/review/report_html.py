"""`report.html`: the sweep report as one self-contained file that opens offline in any browser.

Written by `clexp-report` next to `summary.csv` / `summary.md`: at the top the sweep's overrides (each
sweep folder's `multirun.yaml`) and the software versions (those the runs recorded in results.json and
those of the report), then the summary table (with the validation column and the selected strengths
marked), the other tables of the report (every other `.md` table it wrote: the selection on validation
with its stability, the paired comparisons, the aggregates across scenarios), the figures embedded as
base64 PNG data URIs, the jobs and the failed jobs with their error line. No external CSS, JavaScript or
fonts; every text is escaped.

The page stays bounded at any number of jobs: a table shows its first `TABLE_ROWS` rows (the whole of it
is in the CSV next to the page: summary.csv, selected.csv, paired.csv, jobs_table.csv), at most
`FIGURES` figures are embedded, and the jobs list shows the first `JOBS_SHOWN` jobs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
import re
from pathlib import Path

from clexp.review.records import GROUP, load_yaml
from clexp.review.summary import INTERVAL_NOTE, format_rows

HTML_FILE = "report.html"
TABLE_ROWS = 300  # rows of a table shown in the page (the CSV next to it has them all)
JOBS_SHOWN = 500  # jobs listed in the page (jobs_table.csv has them all)
FAILED_SHOWN = 200
FIGURES = 16

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1.5em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.88em; }
th, td { border: 1px solid #d0d0d0; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f5; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; background: #f3f3f5;
       padding: 0.05em 0.3em; border-radius: 3px; }
.failed { color: #b00020; }
.ok { color: #1b7f3b; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
ul.failed-jobs li { margin-bottom: 0.4em; }
""".strip()


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def html_table(table: list[list[str]], cls: str = "", numeric_from: int | None = None, limit: int | None = None,
               source: str = "") -> str:
    """A header row and body rows (strings, escaped here) as an HTML table; cells of the columns from
    `numeric_from` on are right-aligned. `limit`: the body rows shown (a note after the table says how many
    there are and where all of them are: `source`)."""
    if not table:
        return ""
    head = "".join(f"<th>{esc(c)}</th>" for c in table[0])
    body = []
    rows = table[1:] if limit is None else table[1:limit + 1]
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            num = numeric_from is not None and i >= numeric_from
            cells.append(f'<td class="num">{esc(c)}</td>' if num else f"<td>{esc(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{esc(cls)}"' if cls else ""
    page = f"<table{attr}><thead><tr>{head}</tr></thead><tbody>" + "".join(body) + "</tbody></table>"
    if len(rows) < len(table) - 1:
        where = f"; all of them in <code>{esc(source)}</code>" if source else ""
        page += f'<p class="meta">The first {len(rows)} of {len(table) - 1} rows{where}.</p>'
    return page


def sweep_folders(records: list[dict]) -> list[Path]:
    """The Hydra sweep folders (holding `multirun.yaml`) of the jobs: each job's folder or one of its
    three nearest parents."""
    found: list[Path] = []
    looked: set[Path] = set()  # the parents of 100,000 jobs are a handful of folders: each looked at once
    for r in records:
        folder = Path(os.path.abspath(r["folder"]))
        for candidate in [folder, *list(folder.parents)[:3]]:
            if candidate in looked:
                if candidate in found:
                    break
                continue
            looked.add(candidate)
            if (candidate / "multirun.yaml").exists():
                found.append(candidate)
                break
    return found


def sweep_overrides(folder: Path) -> list[str]:
    """The sweep's overrides (`hydra.overrides.task` of its multirun.yaml); [] for a damaged file."""
    cfg = load_yaml(folder / "multirun.yaml")
    try:
        return [str(o) for o in cfg["hydra"]["overrides"]["task"] or []]
    except (TypeError, KeyError):
        return []


def run_versions(records: list[dict]) -> list[tuple[dict, int]]:
    """The distinct `versions` the completed runs recorded, with how many runs recorded each."""
    seen: dict[str, list] = {}
    for r in records:
        if r["status"] != "completed":
            continue
        v = r.get("versions") or {}
        key = json.dumps(v, sort_keys=True)
        seen.setdefault(key, [v, 0])[1] += 1
    return [(v, n) for v, n in seen.values()]


def inline_markdown(text: str) -> str:
    """Escaped text with markdown's `code` and **bold** as HTML (the markers survive html.escape)."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def markdown_to_html(text: str, limit: int | None = TABLE_ROWS, source: str = "") -> str:
    """The markdown subset the report writes (headings, pipe tables, list items, paragraphs), escaped;
    a table's first `limit` rows."""
    out, table = [], []

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table
                    if not set(line.replace("|", "").strip()) <= set("-: ")]
            out.append(html_table(rows, limit=limit, source=source))
            table.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        flush()
        if not line.strip():
            continue
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)  # '#' a section (h2), '##' h3
            out.append(f"<h{level}>{inline_markdown(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith(("- ", "* ")):
            out.append(f"<ul><li>{inline_markdown(line[2:])}</li></ul>")
        else:
            out.append(f"<p>{inline_markdown(line)}</p>")
    flush()
    return "\n".join(out)


def report_versions() -> dict[str, str]:
    """The versions `clexp.core.results.versions` records, read without importing torch or Lightning (a second
    and ~800 MB that a report does not need): torch's own `version.py` (it has the local label, +cu130),
    the installed distributions' metadata for the others."""
    import importlib.metadata as metadata
    import importlib.util
    import platform

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return ""

    out = {"python": platform.python_version(), "torch": dist("torch"), "lightning": dist("pytorch-lightning"),
           "hydra": dist("hydra-core")}
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]",
                          _read(Path(spec.origin).with_name("version.py")), re.M)
        out["torch"] = found[1] if found else out["torch"]
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _pct1(v) -> str:
    return "n/a" if not isinstance(v, (int, float)) or v != v else f"{100 * v:.1f}"


def _relative(folder: str, out_dir: Path) -> str:
    """A job's folder relative to the report's folder when below it (string operations only: 100,000 jobs)."""
    full, base = os.path.abspath(folder), os.path.abspath(out_dir)
    return os.path.relpath(full, base) if full.startswith(base + os.sep) else str(folder)


def shown(path: Path) -> str:
    """A folder as the page names it: relative to the working directory when below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(Path(path).resolve())


def write_html(records: list[dict], out_dir: Path, written: dict[str, Path], result: dict) -> Path:
    """`report.html` in `out_dir`, from the records of `clexp.review.records.collect`, the files the report
    wrote (its figures and markdown tables) and `clexp.review.report.review`'s result (keys, rows, selection)."""
    out_dir = Path(out_dir)
    keys, rows = result["keys"], result["rows"]
    failed = [r for r in records if r["status"] != "completed"]
    completed = len(records) - len(failed)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>Sweep report: {esc(out_dir.resolve().name)}</h1>",
             f'<p class="meta">{esc(shown(out_dir))} · {len(records)} jobs: {completed} completed, '
             f'<span class="{"failed" if failed else "ok"}">{len(failed)} failed</span> · made {esc(now)} by '
             "<code>clexp-report</code></p>"]

    parts.append("<h2>Sweep</h2>")
    folders = sweep_folders(records)
    if folders:
        for folder in folders:
            overrides = sweep_overrides(folder)
            parts.append(f"<p>{esc(shown(folder))}</p>")
            parts.append(html_table([["override"], *[[o] for o in overrides]], cls="overrides") if overrides
                         else "<p>(no overrides)</p>")
            parts.append(f"<p>Command: <code>{esc('clexp -m ' + ' '.join(overrides))}</code></p>")
    else:
        parts.append("<p>No <code>multirun.yaml</code> found next to the jobs (not a Hydra sweep folder).</p>")

    parts.append("<h2>Software</h2>")
    names = ["python", "torch", "lightning", "hydra"]
    mine = report_versions()
    recorded = run_versions(records)
    for v, _ in recorded:
        names += [k for k in v if k not in names]
    names += [k for k in mine if k not in names]
    table = [["", *names]]
    table += [[f"runs ({n})", *[str(v.get(k, "")) for k in names]] for v, n in recorded]
    table.append(["this report", *[str(mine.get(k, "")) for k in names]])
    parts.append(html_table(table, cls="versions"))

    parts.append("<h2>Summary</h2>")
    grouping = " × ".join([*GROUP, *keys])
    parts.append(f"<p>One row per configuration ({esc(grouping)}); {inline_markdown(INTERVAL_NOTE)}; ✓: the "
                 "strength selected on validation (what the selection reads is the validation column; the test "
                 "columns of the other strengths are shown, never used to select).</p>")
    if rows:
        table = format_rows(rows, result["marked"])
        parts.append(html_table(table, cls="summary", numeric_from=table[0].index("n"), limit=TABLE_ROWS,
                                source="summary.csv"))
    else:
        parts.append("<p>(no completed run)</p>")

    others = [(name, p) for name, p in written.items() if Path(p).suffix == ".md" and name != "md"
              and Path(p).exists()]
    for name, path in others:
        csv_name = Path(path).with_suffix(".csv").name if Path(path).with_suffix(".csv").exists() else ""
        body = markdown_to_html(Path(path).read_text(), source=csv_name)
        if not body.startswith("<h2>"):  # a file without a title of its own: its name
            body = f"<h2>{esc(Path(path).name)}</h2>\n" + body
        parts.append(f'<div class="md" data-source="{esc(Path(path).name)}">{body}</div>')

    figures = [Path(p) for p in written.values() if Path(p).suffix == ".png" and Path(p).exists()]
    if figures:
        parts.append("<h2>Figures</h2>")
        for p in figures[:FIGURES]:
            parts.append(f'<figure><img src="{png_data_uri(p)}" alt="{esc(p.stem)}">'
                         f"<figcaption>{esc(p.name)}</figcaption></figure>")
        if len(figures) > FIGURES:
            parts.append(f'<p class="meta">The first {FIGURES} of {len(figures)} figures; all of them are PNG '
                         "files next to this page.</p>")

    parts.append(f"<h2>Jobs ({len(records)})</h2>")
    jobs = [["job", "status", "seed", "method", "strength", "overrides", "val avg acc (%)", "avg acc (%)",
             "forgetting (%)", "BWT (%)"]]
    listed = sorted(records, key=lambda r: _relative(r["folder"], out_dir))
    for r in listed[:JOBS_SHOWN]:
        done = r["status"] == "completed"
        jobs.append([_relative(r["folder"], out_dir), r["status"], "" if r.get("seed") is None else str(r["seed"]),
                     str(r.get("method") or ""), "" if r.get("strength") is None else f"{r['strength']:g}",
                     r.get("overrides", ""),
                     *(_pct1(r.get(k)) if done else "" for k in ("val_avg_acc", "avg_acc", "forgetting", "bwt"))])
    parts.append(html_table(jobs, cls="jobs", numeric_from=6))
    if len(records) > JOBS_SHOWN:
        parts.append(f'<p class="meta">The first {JOBS_SHOWN} of {len(records)} jobs; all of them in '
                     f"<code>{esc(Path(written.get('jobs', 'jobs_table.csv')).name)}</code>.</p>")

    parts.append(f'<h2 class="{"failed" if failed else ""}">Failed jobs ({len(failed)})</h2>')
    if failed:
        items = [f"<li><code>{esc(_relative(r['folder'], out_dir))}</code> {esc(r.get('overrides', ''))}<br>"
                 f'<span class="failed error">{esc(r.get("error") or "(no error recorded)")}</span></li>'
                 for r in failed[:FAILED_SHOWN]]
        parts.append('<ul class="failed-jobs">' + "".join(items) + "</ul>")
        if len(failed) > FAILED_SHOWN:
            parts.append(f'<p class="meta">The first {FAILED_SHOWN} of {len(failed)} failed jobs.</p>')
    else:
        parts.append("<p>None.</p>")

    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc('clexp sweep report: ' + out_dir.resolve().name)}</title>\n<style>\n{STYLE}\n</style>\n"
            "</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
    path = out_dir / HTML_FILE
    path.write_text(page, encoding="utf-8")
    return path
