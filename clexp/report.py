"""`clexp-report PATH [PATH ...]`: a sweep's results.json files → tables and plots.

Prints mean ± std over seeds of the final average accuracy, forgetting and BWT per
dataset × scenario × incremental × method × strength, saves `summary.csv` and `summary.md`, lists
the failed jobs, and draws `acc_vs_strength.png` and `acc_matrices.png`.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

STATS = ("avg_acc", "forgetting", "bwt")
GROUP = ("dataset", "scenario", "incremental", "method", "strength")


class ReportError(Exception):
    """A path that does not exist or holds no results."""


def strength_of(method_cfg: dict) -> float | None:
    """λ, or c for SI; None for methods without a strength (naive, joint)."""
    for key in ("lam", "c"):
        if method_cfg.get(key) is not None:
            return float(method_cfg[key])
    return None


def collect(paths: list[str | Path]) -> list[dict]:
    """One record per results.json found below the paths (completed and failed jobs)."""
    records = []
    for root in map(Path, paths):
        if not root.exists():
            raise ReportError(f"{root} does not exist")
        files = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for f in files:
            data = json.loads(f.read_text())
            folder = f.parent
            if data.get("status", "completed") != "completed":
                overrides = folder / ".hydra" / "overrides.yaml"
                records.append({"status": "failed", "folder": str(folder),
                                "error": (data.get("error") or "").splitlines()[0] if data.get("error") else "",
                                "overrides": " ".join(OmegaConf.load(overrides)) if overrides.exists() else ""})
                continue
            cfg = data["config"]
            records.append({
                "status": "completed", "folder": str(folder), "seed": data.get("seed"),
                "dataset": cfg["dataset"]["name"], "scenario": cfg["scenario"]["name"],
                "incremental": cfg["scenario"]["incremental"], "method": cfg["method"]["name"],
                "strength": strength_of(cfg["method"]), "acc_matrix": data["acc_matrix"],
                **{k: data["metrics"].get(k) for k in STATS},
            })
    if not records:
        raise ReportError(f"no results.json under {', '.join(map(str, paths))}")
    return records


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(records: list[dict]) -> list[dict]:
    """Mean and sample std over seeds per group (n = number of seeds)."""
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "completed":
            groups[tuple(r[k] for k in GROUP)].append(r)
    rows = []
    for key in sorted(groups, key=lambda k: tuple((v is None, v) for v in k)):
        runs = groups[key]
        row = dict(zip(GROUP, key))
        row["n"] = len(runs)
        for stat in STATS:
            row[f"{stat}_mean"], row[f"{stat}_std"] = _mean_std([r[stat] for r in runs])
        rows.append(row)
    return rows


def _pct(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def format_rows(rows: list[dict]) -> list[list[str]]:
    header = ["dataset", "scenario", "incremental", "method", "strength", "n", "avg acc (%)", "forgetting (%)",
              "BWT (%)"]
    body = [[r["dataset"], r["scenario"], r["incremental"], r["method"],
             "" if r["strength"] is None else f"{r['strength']:g}", str(r["n"]),
             *(_pct(r[f"{s}_mean"], r[f"{s}_std"]) for s in STATS)] for r in rows]
    return [header, *body]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def plot_strength(rows: list[dict], path: Path) -> Path:
    """Final average accuracy against strength, one line per method, one panel per scenario."""
    from clexp.plots import _pyplot

    plt = _pyplot()
    panels = sorted({(r["dataset"], r["scenario"], r["incremental"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        here = [r for r in rows if (r["dataset"], r["scenario"], r["incremental"]) == panel]
        strengths = [r["strength"] for r in here if r["strength"] is not None]
        for method in sorted({r["method"] for r in here}):
            pts = sorted((r for r in here if r["method"] == method), key=lambda r: r["strength"] or 0)
            ys = [100 * r["avg_acc_mean"] for r in pts]
            errs = [100 * (r["avg_acc_std"] or 0) for r in pts]
            if pts[0]["strength"] is None:  # a method without strength: a reference line
                ax.axhline(ys[0], ls="--", lw=1, label=method, color="gray" if method == "naive" else None)
            else:
                ax.errorbar([r["strength"] for r in pts], ys, yerr=errs, marker="o", capsize=3, label=method)
        if strengths and min(strengths) > 0:
            ax.set_xscale("log")
        ax.set_title(" / ".join(panel), fontsize=9)
        ax.set_xlabel("strength (λ, or c for SI)")
        ax.set_ylabel("final average accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_matrices(records: list[dict], path: Path, limit: int = 12) -> Path:
    """The mean accuracy matrix of each group as an annotated heatmap (the first `limit` groups)."""
    from clexp.plots import _pyplot

    plt = _pyplot()
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "completed":
            groups[tuple(r[k] for k in GROUP)].append(r["acc_matrix"])
    keys = sorted(groups, key=lambda k: tuple((v is None, v) for v in k))[:limit]
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        mats = groups[key]
        T = len(mats[0])
        mean = [[statistics.fmean(m[i][j] for m in mats) for j in range(T)] for i in range(T)]
        ax.axis("on")
        ax.imshow([[100 * a for a in r] for r in mean], vmin=0, vmax=100, cmap="viridis")
        for i in range(T):
            for j in range(T):
                ax.text(j, i, f"{100 * mean[i][j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if mean[i][j] < 0.6 else "black")
        strength = "" if key[4] is None else f" {key[4]:g}"
        ax.set_title(f"{key[3]}{strength}, {key[1]}/{key[2]} (n={len(mats)})", fontsize=8)
        ax.set_xticks(range(T))
        ax.set_yticks(range(T))
    if len(groups) > limit:
        fig.suptitle(f"first {limit} of {len(groups)} groups", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(records: list[dict], out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """summary.csv, summary.md (with failed jobs) and the PNG plots in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    written = {"csv": out_dir / "summary.csv", "md": out_dir / "summary.md"}
    if rows:
        with open(written["csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        written["csv"].write_text("")
    failed = [r for r in records if r["status"] != "completed"]
    md = ["# Sweep summary", "", "Mean ± std over seeds (n runs), in percent.", "",
          markdown_table(format_rows(rows)) if rows else "(no completed run)"]
    if failed:
        md += ["", f"## Failed jobs ({len(failed)})", ""]
        md += [f"- `{r['folder']}` {r['overrides']}: {r['error']}" for r in failed]
    written["md"].write_text("\n".join(md) + "\n")
    if plots and rows:
        written["acc_vs_strength"] = plot_strength(rows, out_dir / "acc_vs_strength.png")
        written["acc_matrices"] = plot_matrices(records, out_dir / "acc_matrices.png")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clexp-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="sweep folders (or results.json files)")
    parser.add_argument("--out", default=None, help="where to write the report (default: the first path)")
    parser.add_argument("--no-plots", action="store_true")
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
    failed = [r for r in records if r["status"] != "completed"]
    for r in failed:
        print(f"FAILED {r['folder']} {r['overrides']}\n       {r['error']}")
    print("\nWritten: " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
