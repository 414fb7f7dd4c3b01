"""`clexp-report PATH [PATH ...]`: a sweep's results.json files → tables and plots.

Rows: one per configuration. Jobs are grouped by dataset × scenario × incremental × method × strength
(λ, or c for SI) and by every other override that differs between the jobs (read from each job's
`.hydra/overrides.yaml`, compared on the job's resolved config where the key is a value of it, and
on the option chosen where it is a config group such as `optimizer=adam`) — except `seed`: the
jobs left in a row are its seeds. Each such key gets a column of its own. A row gives n (its
number of runs) and mean ± std of the final average accuracy, forgetting and BWT (non-finite
values are left out of the statistics).

Written into the output folder (the first path, or `--out`):
- `summary.csv`, `summary.md` (with the failed jobs), and the same table on stdout;
- `acc_vs_strength.png`: final average accuracy against strength, one panel per scenario
  (dataset / scenario / incremental), one curve per method (and per value of the other differing
  keys), methods without a strength as dashed reference lines; strengths whose runs diverged
  (jobs that failed during training and whose overrides or config name a strength, or completed
  runs with a non-finite average accuracy) are marked with a red × on the bottom axis. Jobs refused
  by validation (ConfigError, DataError) never trained: they are only listed with the failed jobs;
- the mean accuracy matrix of each row as a heatmap, one figure per scenario: `acc_matrices.png`
  when the sweep has a single scenario, otherwise `acc_matrices_<dataset>-<scenario>-<incremental>.png`
  for each (and no `acc_matrices.png`);
- `report.html`: all of it in one self-contained file (figures embedded, the sweep's overrides and the
  software versions at the top, every job and the failed ones), for a browser offline (clexp/report_html.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

STATS = ("avg_acc", "forgetting", "bwt")
GROUP = ("dataset", "scenario", "incremental", "method", "strength")
SCENARIO = ("dataset", "scenario", "incremental")
# overrides already shown by a GROUP column (or the seed, the one key that rows average over)
COVERED = frozenset({"seed", "dataset", "dataset.name", "scenario", "scenario.name", "scenario.incremental",
                     "method", "method.name", "method.lam", "method.c"})
# where a failed job without a config says its GROUP columns
FROM_OVERRIDES = {"dataset": ("dataset.name", "dataset"), "scenario": ("scenario.name", "scenario"),
                  "incremental": ("scenario.incremental",), "method": ("method.name", "method")}
REFUSED = ("ConfigError:", "DataError:")  # errors of validation: the job never trained


class ReportError(Exception):
    """A path that does not exist or holds no results."""


def strength_of(method_cfg: dict) -> float | None:
    """λ, or c for SI; None for methods without a strength (naive, joint)."""
    for key in ("lam", "c"):
        if method_cfg.get(key) is not None:
            try:
                return float(method_cfg[key])
            except (TypeError, ValueError):
                return None
    return None


def _strength_name(method_cfg: dict) -> str:
    return "c" if method_cfg.get("lam") is None and method_cfg.get("c") is not None else "λ"


def _scalar(text: str):
    """An override's value as the config would hold it (int, float, bool, None or the string)."""
    low = text.strip().lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip("'\"")


def parse_overrides(lines) -> dict[str, str]:
    """`.hydra/overrides.yaml`'s list → {key: value as written}; `+`/`++` dropped, `~key` deleted."""
    out = {}
    for line in map(str, lines):
        if line.startswith("~"):
            out[line[1:].split("=", 1)[0]] = "(deleted)"
            continue
        key, _, value = line.lstrip("+").partition("=")
        out[key] = value
    return out


def _load_yaml(path: Path):
    try:
        return OmegaConf.load(path) if path.exists() else None
    except Exception:  # a damaged file: the job is still reported, without this information
        return None


def _job_files(folder: Path) -> dict:
    """What the job's `.hydra` folder tells: its overrides, its config groups' options, its config."""
    hydra = folder / ".hydra"
    overrides = _load_yaml(hydra / "overrides.yaml")
    overrides = [str(o) for o in overrides] if overrides is not None else []
    hydra_cfg = _load_yaml(hydra / "hydra.yaml")
    choices = {}
    if hydra_cfg is not None:
        choices = OmegaConf.to_container(OmegaConf.select(hydra_cfg, "hydra.runtime.choices", default={}) or {})
    config = _load_yaml(hydra / "config.yaml")
    if config is not None:
        try:
            config = OmegaConf.to_container(config, resolve=True)
        except Exception:
            config = OmegaConf.to_container(config, resolve=False)
    return {"overrides": " ".join(overrides), "override_values": parse_overrides(overrides),
            "choices": {str(k): v for k, v in choices.items()}, "hydra_config": config}


def _describe(cfg: dict | None) -> dict:
    """The GROUP columns of a config (None where the config does not say)."""
    cfg = cfg or {}
    method = cfg.get("method") if isinstance(cfg.get("method"), dict) else {}
    dataset = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else {}
    scenario = cfg.get("scenario") if isinstance(cfg.get("scenario"), dict) else {}
    return {"dataset": dataset.get("name"), "scenario": scenario.get("name"),
            "incremental": scenario.get("incremental"), "method": method.get("name"),
            "strength": strength_of(method), "strength_name": _strength_name(method)}


def collect(paths: list[str | Path]) -> list[dict]:
    """One record per results.json found below the paths (completed and failed jobs)."""
    records = []
    for root in map(Path, paths):
        if not root.exists():
            raise ReportError(f"{root} does not exist")
        files = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError) as err:
                raise ReportError(f"{f}: not a results file ({err})") from None
            folder = f.parent
            job = _job_files(folder)
            if data.get("status", "completed") != "completed":
                cfg = data.get("config") or job["hydra_config"] or {}
                described = _describe(cfg)
                ov = job["override_values"]
                if described["strength"] is None:  # no config: the overrides may still name a strength
                    described["strength"] = strength_of({k.split(".", 1)[1]: _scalar(v) for k, v in ov.items()
                                                         if k in ("method.lam", "method.c")})
                for column, names in FROM_OVERRIDES.items():
                    if described[column] is None:
                        described[column] = next((ov[k] for k in names if k in ov), None)
                error = data.get("error") or ""
                records.append({"status": "failed", "folder": str(folder), "seed": cfg.get("seed"),
                                "error": error.splitlines()[0] if error else "", "config": cfg,
                                **described, **job})
                continue
            cfg = data["config"]
            records.append({
                "status": "completed", "folder": str(folder), "seed": data.get("seed"), "config": cfg,
                **_describe(cfg), "acc_matrix": data["acc_matrix"],
                **{k: data["metrics"].get(k) for k in STATS}, **job,
                "val_avg_acc": (data.get("val_metrics") or {}).get("avg_acc"),  # for clexp.selection
            })
    if not records:
        raise ReportError(f"no results.json under {', '.join(map(str, paths))}")
    return records


def _lookup(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def job_value(record: dict, key: str):
    """The value of an override key for one job: the resolved config's value where the key is a value
    of the config (so `method.lam=1e2` and `method.lam=100`, or an override equal to the default, are
    the same), the option's name where it is a config group (`optimizer=adam`), None where the job
    has no such key."""
    found, value = _lookup(record.get("config") or {}, key)
    if found and not isinstance(value, dict):
        return json.dumps(value) if isinstance(value, list) else value
    label = record["override_values"].get(key, record["choices"].get(key))
    if label is None:
        return "default" if found else None
    return label if found or key in record["choices"] else _scalar(label)


def varying_keys(records: list[dict]) -> list[str]:
    """The override keys (command-line order) whose value differs between the jobs, but for the seed and
    the keys a GROUP column shows."""
    keys = []
    for r in records:
        for key in r["override_values"]:
            if key not in keys and key not in COVERED and not key.startswith("hydra."):
                keys.append(key)
    return [k for k in keys if len({_order(job_value(r, k)) for r in records}) > 1]


def _order(v):
    """A sort key for mixed values: numbers, then strings, then None."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    if v is None:
        return (2, 0.0, "")
    return (1, 0.0, str(v))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _mean_std(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if _finite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _group_key(r: dict, keys: list[str]) -> tuple:
    return tuple(r[k] for k in GROUP) + tuple(job_value(r, k) for k in keys)


def _grouped(records: list[dict], keys: list[str]) -> dict[tuple, list[dict]]:
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "completed":
            groups[_group_key(r, keys)].append(r)
    return {k: groups[k] for k in sorted(groups, key=lambda k: tuple(map(_order, k)))}


def summarize(records: list[dict], keys: list[str] | None = None) -> list[dict]:
    """Mean and sample std over seeds per configuration (n = number of runs). The configuration: the
    GROUP columns and `keys` (default: `varying_keys(records)`), each a column of the row."""
    keys = varying_keys(records) if keys is None else keys
    rows = []
    for key, runs in _grouped(records, keys).items():
        row = dict(zip((*GROUP, *keys), key))
        row["n"] = len(runs)
        for stat in STATS:
            row[f"{stat}_mean"], row[f"{stat}_std"] = _mean_std([r[stat] for r in runs])
        vals = [r.get("val_avg_acc") for r in runs]  # what selection reads; drawn dashed in acc_vs_strength
        row["val_avg_acc_mean"] = _mean_std(vals)[0] if all(v is not None for v in vals) else None
        rows.append(row)
    return rows


def extra_columns(rows: list[dict]) -> list[str]:
    """The columns of `summarize`'s rows beyond GROUP: the differing override keys."""
    if not rows:
        return []
    return [k for k in rows[0] if k not in GROUP and k != "n" and not k.endswith(("_mean", "_std"))]


def _pct(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def _num(x: float) -> str:
    """A number, short: 100, 0.5, 1e7, 1e-5."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], f"{x:g}")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return _num(v)
    return str(v)


def format_rows(rows: list[dict]) -> list[list[str]]:
    extras = extra_columns(rows)
    header = [*GROUP, *extras, "n", "avg acc (%)", "forgetting (%)", "BWT (%)"]
    body = [[*(_cell(r[k]) for k in (*GROUP, *extras)), str(r["n"]),
             *(_pct(r[f"{s}_mean"], r[f"{s}_std"]) for s in STATS)] for r in rows]
    return [header, *body]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def _extras_label(values: tuple, keys: list[str]) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in zip(keys, values))


def _slug(panel: tuple) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in panel))


def _diverged(records: list[dict]) -> list[dict]:
    """Runs that diverged at a strength: failed during training, or completed with a non-finite average
    accuracy (jobs refused by validation never trained and are not among them)."""
    return [r for r in records if r["strength"] is not None and (
        (r["status"] == "completed" and not _finite(r["avg_acc"]))
        or (r["status"] != "completed" and not r["error"].startswith(REFUSED)))]


def _log_scale(strengths: list[float]) -> bool:
    """A log axis for strengths spanning 1.5 decades or more (all positive)."""
    return bool(strengths) and min(strengths) > 0 and max(strengths) / min(strengths) >= 30


def plot_strength(records: list[dict], path: Path, keys: list[str] | None = None) -> Path:
    """Final average test accuracy against strength, one curve per method (and value of `keys`), one
    panel per scenario, the validation accuracy (what selection reads) dashed beside it where the runs
    have a validation split; diverged strengths as red × on the bottom axis; each panel's legend below."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    from clexp.plots import _pyplot

    plt = _pyplot()
    keys = varying_keys(records) if keys is None else keys
    rows = summarize(records, keys)
    diverged = _diverged(records)
    panels = sorted({tuple(r[k] for k in SCENARIO) for r in rows}, key=lambda p: tuple(map(_order, p)))

    def in_panel(r, panel):  # a failed job without a config goes where what its overrides say fits
        return all(r[k] is None or r[k] == v for k, v in zip(SCENARIO, panel))

    def curve_of(r):
        return r["method"], tuple(job_value(r, k) if "override_values" in r else r[k] for k in keys)

    def label_of(method, extras):
        return str(method or "?") + (f" ({_extras_label(extras, keys)})" if keys else "")

    content = []
    for panel in panels:
        here = [r for r in rows if tuple(r[k] for k in SCENARIO) == panel]
        curves = sorted({curve_of(r) for r in here}, key=lambda c: tuple(map(_order, (c[0], *c[1]))))
        bad = [r for r in diverged if in_panel(r, panel)]
        content.append((panel, here, curves, bad))
    entries = max(len(c[2]) + bool(c[3]) for c in content)
    legend_h = 0.25 + 0.19 * ((entries + 1) // 2)
    fig, axes = plt.subplots(2, len(panels), figsize=(6.0 * len(panels), 3.9 + legend_h), squeeze=False,
                             height_ratios=[3.9, legend_h], layout="constrained")
    fmt = FuncFormatter(lambda x, _: _num(x))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    for (ax, lax), (panel, here, curves, bad) in zip(axes.T, content):
        lax.axis("off")
        strengths = sorted({r["strength"] for r in here + bad if r["strength"] is not None})
        log = _log_scale(strengths)
        extras_seen = sorted({c[1] for c in curves}, key=lambda e: tuple(map(_order, e)))
        lone_naive = sum(1 for m, _ in curves if m == "naive") == 1
        with_val = False
        for i, (method, extras) in enumerate(curves):
            pts = sorted((r for r in here if curve_of(r) == (method, extras) and r["avg_acc_mean"] is not None),
                         key=lambda r: _order(r["strength"]))
            colour = "gray" if method == "naive" and lone_naive else colours[i % len(colours)]
            if not pts:
                continue
            if pts[0]["strength"] is None:  # a method without strength: a reference line
                ax.axhline(100 * pts[0]["avg_acc_mean"], ls="--", lw=1.3, color=colour, label=label_of(method, extras))
            else:
                ax.errorbar([r["strength"] for r in pts], [100 * r["avg_acc_mean"] for r in pts],
                            yerr=[100 * (r["avg_acc_std"] or 0) for r in pts], color=colour, capsize=3, ms=5,
                            marker=markers[extras_seen.index(extras) % len(markers)], label=label_of(method, extras))
                val = [r for r in pts if r.get("val_avg_acc_mean") is not None]
                if val:  # the validation curve selection reads, dashed in the same colour
                    ax.plot([r["strength"] for r in val], [100 * r["val_avg_acc_mean"] for r in val], ls="--",
                            lw=1.1, color=colour, alpha=0.8,
                            label=None if with_val else "dashed: validation (what selection reads); solid: test")
                    with_val = True
        shown = [r for r in bad if not log or r["strength"] > 0]
        if shown:
            which = sorted({label_of(*curve_of(r)) for r in shown})
            label = f"diverged: {len(shown)} run{'s' if len(shown) > 1 else ''} failed or non-finite"
            label += f" ({'; '.join(which)})" if len(which) <= 2 else ""
            ax.scatter([r["strength"] for r in shown], [0] * len(shown), transform=ax.get_xaxis_transform(),
                       marker="x", s=80, lw=2.2, color="red", clip_on=False, zorder=5, label=label)
        if log:
            ax.set_xscale("log")
        if len(strengths) > 1:  # room for the marks at both ends (the × do not widen the axis)
            lo, hi = strengths[0], strengths[-1]
            pad = (hi / lo) ** 0.06 if log else 0.06 * (hi - lo)
            ax.set_xlim(*((lo / pad, hi * pad) if log else (lo - pad, hi + pad)))
        if strengths and len(strengths) <= 8:
            ax.set_xticks(strengths)
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(fmt)
        if len(strengths) > 5:
            ax.tick_params(axis="x", labelrotation=30)
        if not strengths:
            ax.set_xticks([])
            ax.text(0.5, 0.5, "no strength in this sweep", transform=ax.transAxes, ha="center",
                    va="center", color="gray", fontsize=8)
        ax.set_title(" / ".join(map(str, panel)), fontsize=10)
        ax.set_xlabel("strength (λ, or c for SI)" + (", log scale" if log else ""))
        ax.set_ylabel("final average accuracy (%)")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ncol = 1 if max(map(len, labels)) > 38 else 2
            lax.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=8, frameon=False,
                       borderaxespad=0.0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _matrix_figure(plt, groups: dict[tuple, list[dict]], panel: tuple, keys: list[str], path: Path,
                   limit: int) -> Path:
    items = list(groups.items())[:limit]
    cols = min(4, len(items))
    nrows = (len(items) + cols - 1) // cols
    T_max = max(len(runs[0]["acc_matrix"][0]) for _, runs in items)
    side = min(4.2, max(2.6, 1.0 + 0.32 * T_max))
    fig, axes = plt.subplots(nrows, cols, figsize=(side * cols + 1.2, side * nrows + 0.9), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_visible(False)
    im = None
    for ax, (key, runs) in zip(axes.flat, items):
        ax.set_visible(True)
        mats = [r["acc_matrix"] for r in runs]
        n_rows, T = len(mats[0]), len(mats[0][0])
        mean = [[statistics.fmean(m[i][j] for m in mats) for j in range(T)] for i in range(n_rows)]
        im = ax.imshow([[100 * a for a in row] for row in mean], vmin=0, vmax=100, cmap="viridis")
        if T <= 12:
            for i in range(n_rows):
                for j in range(T):
                    a = mean[i][j]
                    ax.text(j, i, f"{100 * a:.0f}" if math.isfinite(a) else "–", ha="center", va="center",
                            fontsize=8 if T <= 6 else 6, color="white" if not a >= 0.6 else "black")
        step = 1 if T <= 10 else (T + 9) // 10
        ax.set_xticks(range(0, T, step))
        ax.set_yticks(range(0, n_rows, step))
        ax.tick_params(labelsize=7)
        method, strength = key[3], key[4]
        head = method + ("" if strength is None else f"  {runs[0]['strength_name']}={_num(strength)}")
        extras = _extras_label(key[len(GROUP):], keys)
        ax.set_title(head + (f"\n{extras}" if extras else "") + f"  (n={len(runs)})", fontsize=8)
    fig.supxlabel("evaluated on experience", fontsize=9)
    fig.supylabel("after training experience", fontsize=9)
    title = f"{' / '.join(map(str, panel))}: mean accuracy matrix over seeds"
    if len(groups) > limit:
        title += f" (first {limit} of {len(groups)} configurations)"
    fig.suptitle(title, fontsize=10)
    fig.colorbar(im, ax=axes, label="accuracy (%)", shrink=min(1.0, 0.6 + 0.2 * nrows), aspect=25)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_matrices(records: list[dict], path: Path, limit: int = 12, keys: list[str] | None = None
                  ) -> dict[str, Path]:
    """The mean accuracy matrix of each configuration as an annotated heatmap (the first `limit` per
    scenario), one figure per scenario: `path` itself for a single scenario, else `<stem>_<scenario>.png`
    next to it. Returns {name: path} (names: the file stems)."""
    from clexp.plots import _pyplot

    plt = _pyplot()
    path = Path(path)
    keys = varying_keys(records) if keys is None else keys
    groups = _grouped(records, keys)
    panels = sorted({k[:3] for k in groups}, key=lambda p: tuple(map(_order, p)))
    written = {}
    for panel in panels:
        target = path if len(panels) == 1 else path.with_name(f"{path.stem}_{_slug(panel)}{path.suffix}")
        here = {k: v for k, v in groups.items() if k[:3] == panel}
        written[target.stem] = _matrix_figure(plt, here, panel, keys, target, limit)
    return written


def write_report(records: list[dict], out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """summary.csv, summary.md (with failed jobs) and the PNG plots in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = varying_keys(records)
    rows = summarize(records, keys)
    written = {"csv": out_dir / "summary.csv", "md": out_dir / "summary.md"}
    if rows:
        with open(written["csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        written["csv"].write_text("")
    failed = [r for r in records if r["status"] != "completed"]
    grouping = ("dataset × scenario × incremental × method × strength"
                + "".join(f" × `{k}`" for k in keys))
    md = ["# Sweep summary", "", f"One row per configuration ({grouping}); mean ± std over seeds (n runs), "
          "in percent.", "", markdown_table(format_rows(rows)) if rows else "(no completed run)"]
    if failed:
        md += ["", f"## Failed jobs ({len(failed)})", ""]
        md += [f"- `{r['folder']}` {r['overrides']}: {r['error']}" for r in failed]
    written["md"].write_text("\n".join(md) + "\n")
    if rows:  # the strength selected on validation per group (clexp/selection.py): selected.csv, .md
        from clexp.selection import write_selection

        written.update(write_selection(records, out_dir, keys))
    if plots and rows:
        written["acc_vs_strength"] = plot_strength(records, out_dir / "acc_vs_strength.png", keys)
        written.update(plot_matrices(records, out_dir / "acc_matrices.png", keys=keys))
    from clexp.report_html import write_html  # last: it embeds the figures and tables written above

    written["html"] = write_html(records, out_dir, written, keys)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clexp-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="sweep folders (or results.json files)")
    parser.add_argument("--out", default=None, help="where to write the report (default: the first path)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--emit-overrides", action="store_true",
                        help="print the `clexp -m ...` command(s) running the selected strengths on the whole "
                             "stream (without scenario.use_first) over --seeds")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="the seeds of --emit-overrides (default 0,1,2,3,4)")
    args = parser.parse_args(argv)
    try:
        records = collect(args.paths)
    except ReportError as err:
        print(f"clexp-report: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(args.paths[0]) if Path(args.paths[0]).is_dir()
                                           else Path(args.paths[0]).parent)
    written = write_report(records, out, plots=not args.no_plots)
    rows = summarize(records)
    if rows:
        print(text_table(format_rows(rows)))
        from clexp.selection import emit_overrides, select, selection_text

        selected = select(records)
        print("\n" + selection_text(selected))
        if args.emit_overrides:
            print("\nThe selected strengths on the whole stream:")
            print("\n".join(emit_overrides(selected, args.seeds)))
    failed = [r for r in records if r["status"] != "completed"]
    for r in failed:
        print(f"FAILED {r['folder']} {r['overrides']}\n       {r['error']}")
    print("\nWritten: " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
