"""The figures of `clexp-report` (written next to summary.csv, embedded in report.html).

- `plot_strength`: final average accuracy against strength, one panel per scenario, one curve per method
  (and per value of the other swept keys), the validation curve dashed beside it, the strength selected on
  validation ringed with a star, diverged strengths as red × on the bottom axis;
- `plot_matrices`: the mean accuracy matrix of each configuration, one figure per scenario;
- `plot_profiles`: a sweep over several scenarios: the performance profile of each method (rliable style)
  and its IQM over scenarios with the stratified bootstrap interval.
Each figure's size is bounded whatever the number of jobs: the seeds of a configuration are one point.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from clexp.core.plots import pyplot
from clexp.review.records import GROUP, SCENARIO, cell, diverged, job_value, num, order, varying_keys
from clexp.review.summary import grouped, summarize


def extras_label(values: tuple, keys: list[str]) -> str:
    return ", ".join(f"{k}={cell(v)}" for k, v in zip(keys, values))


def slug(panel: tuple) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in panel))


def _log_scale(strengths: list[float]) -> bool:
    """A log axis for strengths spanning 1.5 decades or more (all positive)."""
    return bool(strengths) and min(strengths) > 0 and max(strengths) / min(strengths) >= 30


def _interval_bars(rows: list[dict]) -> list[list[float]]:
    """Error bars of the 95 % interval over seeds (asymmetric for the bootstrap; none for n = 1), in %."""
    low = [100 * (r["avg_acc_mean"] - r["avg_acc_ci95_lo"]) if r.get("avg_acc_ci95_lo") is not None else 0.0
           for r in rows]
    high = [100 * (r["avg_acc_ci95_hi"] - r["avg_acc_mean"]) if r.get("avg_acc_ci95_hi") is not None else 0.0
            for r in rows]
    return [low, high]


def plot_strength(records: list[dict], path: Path, keys: list[str] | None = None, rows: list[dict] | None = None,
                  selected: list[dict] | None = None) -> Path:
    """Final average test accuracy against strength, one curve per method (and value of `keys`), one
    panel per scenario, with the 95 % interval over seeds as error bars (clexp.review.summary), the validation
    accuracy (what selection reads) dashed beside it where the runs
    have a validation split, the strength selected on validation (`selected`: clexp.review.selection.select's
    rows) ringed with a star; diverged strengths as red × on the bottom axis; each panel's legend below.
    `rows`: summarize's rows, when the caller has them already."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    plt = pyplot()
    keys = varying_keys(records) if keys is None else keys
    rows = summarize(records, keys) if rows is None else rows
    bad_runs = diverged(records)
    picked = {(*(r[k] for k in (*SCENARIO, "method")), tuple(r["extras"].get(k) for k in keys)): r["strength"]
              for r in (selected or []) if r["strength"] is not None}
    panels = sorted({tuple(r[k] for k in SCENARIO) for r in rows}, key=lambda p: tuple(map(order, p)))

    def in_panel(r, panel):  # a failed job without a config goes where what its overrides say fits
        return all(r[k] is None or r[k] == v for k, v in zip(SCENARIO, panel))

    def curve_of(r):
        return r["method"], tuple(job_value(r, k) if "override_values" in r else r[k] for k in keys)

    def label_of(method, extras):
        return str(method or "?") + (f" ({extras_label(extras, keys)})" if keys else "")

    content = []
    for panel in panels:
        here = [r for r in rows if tuple(r[k] for k in SCENARIO) == panel]
        curves = sorted({curve_of(r) for r in here}, key=lambda c: tuple(map(order, (c[0], *c[1]))))
        bad = [r for r in bad_runs if in_panel(r, panel)]
        content.append((panel, here, curves, bad))
    entries = max(len(c[2]) + bool(c[3]) for c in content)
    legend_h = 0.25 + 0.19 * ((entries + 1) // 2)
    fig, axes = plt.subplots(2, len(panels), figsize=(6.0 * len(panels), 3.9 + legend_h), squeeze=False,
                             height_ratios=[3.9, legend_h], layout="constrained")
    fmt = FuncFormatter(lambda x, _: num(x))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    for (ax, lax), (panel, here, curves, bad) in zip(axes.T, content):
        lax.axis("off")
        strengths = sorted({r["strength"] for r in here + bad if r["strength"] is not None})
        log = _log_scale(strengths)
        extras_seen = sorted({c[1] for c in curves}, key=lambda e: tuple(map(order, e)))
        lone_naive = sum(1 for m, _ in curves if m == "naive") == 1
        with_val = with_pick = False
        for i, (method, extras) in enumerate(curves):
            pts = sorted((r for r in here if curve_of(r) == (method, extras) and r["avg_acc_mean"] is not None),
                         key=lambda r: order(r["strength"]))
            colour = "gray" if method == "naive" and lone_naive else colours[i % len(colours)]
            if not pts:
                continue
            if pts[0]["strength"] is None:  # a method without strength: a reference line
                ax.axhline(100 * pts[0]["avg_acc_mean"], ls="--", lw=1.3, color=colour, label=label_of(method, extras))
            else:
                ax.errorbar([r["strength"] for r in pts], [100 * r["avg_acc_mean"] for r in pts],
                            yerr=_interval_bars(pts), color=colour, capsize=3, ms=5,
                            marker=markers[extras_seen.index(extras) % len(markers)], label=label_of(method, extras))
                val = [r for r in pts if r.get("val_avg_acc_mean") is not None]
                if val:  # the validation curve selection reads, dashed in the same colour
                    ax.plot([r["strength"] for r in val], [100 * r["val_avg_acc_mean"] for r in val], ls="--",
                            lw=1.1, color=colour, alpha=0.8,
                            label=None if with_val else "dashed: validation (what selection reads); solid: test")
                    with_val = True
                choice = picked.get((*panel, method, extras))
                at = [r for r in pts if r["strength"] == choice]
                if at:  # the strength selected on validation: its test mean, ringed
                    ax.scatter([choice], [100 * at[0]["avg_acc_mean"]], marker="*", s=230, facecolor="none",
                               edgecolor=colour, lw=1.6, zorder=6,
                               label=None if with_pick else "strength selected on validation")
                    with_pick = True
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
        ax.set_ylabel("final average accuracy (%), 95 % interval")
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
        shape = np.shape(runs[0]["acc_matrix"])
        mean = np.mean([np.asarray(r["acc_matrix"], dtype=float) for r in runs
                        if np.shape(r["acc_matrix"]) == shape], axis=0)
        n_rows, T = shape
        im = ax.imshow(100 * mean, vmin=0, vmax=100, cmap="viridis")
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
        head = method + ("" if strength is None else f"  {runs[0]['strength_name']}={num(strength)}")
        extras = extras_label(key[len(GROUP):], keys)
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
    plt = pyplot()
    path = Path(path)
    keys = varying_keys(records) if keys is None else keys
    groups = grouped(records, keys)
    panels = sorted({k[:3] for k in groups}, key=lambda p: tuple(map(order, p)))
    written = {}
    for panel in panels:
        target = path if len(panels) == 1 else path.with_name(f"{path.stem}_{slug(panel)}{path.suffix}")
        here = {k: v for k, v in groups.items() if k[:3] == panel}
        written[target.stem] = _matrix_figure(plt, here, panel, keys, target, limit)
    return written




def plot_profiles(aggregates: list[dict], path: Path) -> Path:
    """A sweep over several scenarios (`aggregates`: clexp.review.comparisons.aggregate_rows): left, each method's
    performance profile (fraction of runs with final average accuracy above τ, averaged over scenarios,
    rliable style); right, its IQM over scenarios with the 95 % stratified bootstrap interval."""
    from clexp.review.stats import profile

    plt = pyplot()
    taus = np.linspace(0.0, 1.0, 201)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6 + 0.12 * len(aggregates)), layout="constrained",
                                      width_ratios=[3, 2])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = []
    for i, a in enumerate(aggregates):
        label = str(a["method"]) + "".join(f" {k}={cell(v)}" for k, v in a["extras"].items())
        labels.append(label)
        left.plot(100 * taus, profile(a["scores"], taus), color=colours[i % len(colours)], lw=1.6, label=label)
        right.errorbar([100 * a["iqm"]], [i], xerr=[[100 * (a["iqm"] - a["iqm_ci95_lo"])],
                                                     [100 * (a["iqm_ci95_hi"] - a["iqm"])]],
                       fmt="o", color=colours[i % len(colours)], capsize=4)
    left.set_xlabel("final average accuracy τ (%)")
    left.set_ylabel("fraction of runs with score > τ")
    left.set_title("performance profile (averaged over scenarios)", fontsize=10)
    left.grid(alpha=0.3)
    left.legend(fontsize=8, frameon=False)
    right.set_yticks(range(len(labels)), labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("IQM of final average accuracy (%)")
    right.set_title("IQM over scenarios, 95 % stratified bootstrap", fontsize=10)
    right.grid(alpha=0.3, axis="x")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
