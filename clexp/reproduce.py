"""`clexp-reproduce NAME`: a published preset's whole table, run as one Hydra sweep and set beside the
paper's numbers.

    clexp-reproduce hsu2018_split_mnist [--seeds 0,1,2] [--faithful | --correct | --both]
                    [--methods naive,ewc,...] [--scenarios task,domain,class] [--launcher parallel]
                    [--data mnist_t10k=PATH [--keep-epochs]] [--out DIR] [OVERRIDE ...]

The preset (conf/experiment/NAME.yaml) names the table (`preset.reproduce`: methods and scenarios) and
the published numbers (`preset.paper`). The jobs — methods × scenarios × modes × seeds — are ONE
multirun of `clexp` (`python -m clexp -m ...`): its launchers (`--launcher parallel` is
`hydra/launcher=parallel`), its per-job failure records and its resume (clexp/launch/sweep_resume.py: a job
whose folder holds a completed results.json of the same config is skipped) all apply. Each job's
folder is named after what it runs (`<method>_<scenario>_<faithful|correct>_seed<seed>`), so re-running
the command — with more seeds, or after a kill — runs only what is missing.

Modes: `faithful` (`preset.faithful=true`: the estimators the papers' code used, `preset.estimators`),
`correct` (clexp's own estimators at the published strengths). `--both` (the default) runs both.

Written to the output folder (default `outputs/reproduce/NAME[-mnist_t10k]`): `table.md`, `table.csv`,
`reproduce.png` (grouped bars: the paper with its error bars, clexp faithful and correct with their
std over seeds) and `sweep.log` (the sweep's output); the table is printed too. With
`--data mnist_t10k=PATH` the runs use the 10,000 real MNIST test images in PATH as a stand-in
(`dataset=mnist_t10k`, 8,000 training images): the title says so. A stand-in has fewer images per
experience, so that each experience still takes the paper's number of optimizer steps `train.epochs` is
scaled by the preset's `paper_train_size` over the stand-in's (Hsu et al.: 4 epochs of 60,000 → 30 of
8,000); `--keep-epochs`, or a `train.epochs=`/`train.iterations=` override, keeps the given epochs. The
title names the epochs and every extra override.

Bad input (an unknown preset, a bad seed list, a data folder that is not there, ...): one line, exit 2.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from clexp.config import conf_source

MODES = {"faithful": "true", "correct": "false"}
# --data NAME=PATH: the files it needs, and its number of training images (the steps of an epoch on it)
DATA = {"mnist_t10k": {"files": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), "train_size": 8000}}
FOOTNOTE = ("* no estimator of the paper's own recorded (preset.estimators): faithful and correct are the same "
            "computation, one set of runs fills both columns")
SUBDIR = "${method.name}_${scenario.incremental}_faithful-${preset.faithful}_seed${seed}"


class ReproduceError(ValueError):
    """Bad input: one line, exit 2."""


# ------------------------------------------------------------------------------------------ input


def load_preset(name: str) -> dict:
    """The `preset` node of conf/experiment/NAME.yaml (as a dict), with a `reproduce` table."""
    folder = Path(conf_source.config_dir()) / "experiment"
    path = folder / f"{name}.yaml"
    known = sorted(p.stem for p in folder.glob("*.yaml")
                   if (OmegaConf.load(p).get("preset") or {}).get("reproduce"))
    if not path.is_file():
        raise ReproduceError(f"unknown preset {name!r}: one of {', '.join(known)}")
    node = OmegaConf.load(path).get("preset")
    preset = OmegaConf.to_container(node, resolve=False) if node is not None else {}
    if not preset.get("reproduce"):
        raise ReproduceError(f"experiment={name} has no table to reproduce (preset.reproduce): one of "
                             f"{', '.join(known)}")
    return preset


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ReproduceError(f"--seeds {text!r}: a comma-separated list of distinct integers >= 0, e.g. 0,1,2")
    return seeds


def parse_list(option: str, text: str | None, allowed: list[str]) -> list[str]:
    if text is None:
        return list(allowed)
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if not items or bad or len(set(items)) != len(items):
        raise ReproduceError(f"{option} {text!r}: a comma-separated list of distinct values among "
                             f"{', '.join(allowed)}")
    return items


def parse_data(spec: str | None) -> tuple[str, Path] | None:
    if spec is None:
        return None
    name, sep, path = spec.partition("=")
    if not sep or name not in DATA or not path:
        raise ReproduceError(f"--data {spec!r}: NAME=PATH with NAME one of {', '.join(DATA)} "
                             "(e.g. mnist_t10k=/path/to/mnist-t10k)")
    folder = Path(path).expanduser().resolve()
    missing = [stem for stem in DATA[name]["files"]
               if not any((folder / f"{stem}{ext}").is_file() for ext in (".gz", ""))]
    if not folder.is_dir() or missing:
        raise ReproduceError(f"--data {spec}: {folder} " + ("is not a folder" if not folder.is_dir() else
                             f"lacks {', '.join(m + '[.gz]' for m in missing)}"))
    return name, folder


def stand_in_epochs(name: str, preset: dict, data: str | None, overrides: list[str], keep: bool) -> int | None:
    """On a stand-in, the epochs per experience that give the paper's optimizer steps: the preset's
    `train.epochs` × `paper_train_size` / the stand-in's training images (rounded); None when nothing is
    scaled (full data, `--keep-epochs`, a preset counted in iterations, or epochs set on the command line)."""
    from clexp.config.overrides import override_key

    paper = preset.get("paper_train_size")
    given = {override_key(o) for o in overrides}
    if data is None or keep or not paper or given & {"train.epochs", "train.iterations"}:
        return None
    train = OmegaConf.load(Path(conf_source.config_dir()) / "experiment" / f"{name}.yaml").get("train") or {}
    epochs = train.get("epochs")
    if not epochs or train.get("iterations") is not None:
        return None
    return max(1, round(int(epochs) * int(paper) / DATA[data]["train_size"]))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clexp-reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="the preset: conf/experiment/NAME.yaml (e.g. hsu2018_split_mnist)")
    p.add_argument("overrides", nargs="*", help="more clexp overrides for every job (e.g. train.epochs=1)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--faithful", dest="mode", action="store_const", const="faithful",
                      help="only the papers' own estimators (preset.faithful=true)")
    mode.add_argument("--correct", dest="mode", action="store_const", const="correct",
                      help="only clexp's estimators at the published strengths")
    mode.add_argument("--both", dest="mode", action="store_const", const="both", help="both (the default)")
    p.add_argument("--methods", help="comma-separated subset of the preset's methods")
    p.add_argument("--scenarios", help="comma-separated subset of the preset's scenarios (task, domain, class)")
    p.add_argument("--launcher", help="a Hydra launcher of clexp's (conf/hydra/launcher/), e.g. parallel")
    p.add_argument("--data", help="NAME=PATH: a stand-in dataset, mnist_t10k=FOLDER (the 10k real test images)")
    p.add_argument("--keep-epochs", action="store_true",
                   help="on a stand-in (--data), the preset's train.epochs (fewer steps than the paper) instead of "
                        "the epochs that give the paper's number of optimizer steps")
    p.add_argument("--out", help="output folder (default outputs/reproduce/NAME[-DATA])")
    p.add_argument("--table-only", action="store_true", help="no runs: the table of what the folder holds")
    return p


def sweep_arguments(name: str, preset: dict, methods: list[str], scenarios: list[str], modes: list[str],
                    seeds: list[int], sweep_dir: Path, data: tuple[str, Path] | None, launcher: str | None,
                    extra: list[str]) -> list[str]:
    """The `clexp -m` command line of the whole table."""
    # the seed first: Hydra's basic launcher runs the product in this order, so the first seed's whole
    # table is done before the second seed starts
    args = ["-m", f"experiment={name}", f"seed={','.join(map(str, seeds))}", f"method={','.join(methods)}",
            f"scenario.incremental={','.join(scenarios)}",
            f"preset.faithful={','.join(MODES[m] for m in modes)}",
            f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={SUBDIR}",
            "logger=none", "trainer.enable_progress_bar=false", "plots=false"]
    if data is not None:
        args += [f"dataset={data[0]}", f"dataset.path={data[1]}"]
    if launcher:
        args.append(f"hydra/launcher={launcher}")
    return args + list(extra)


# ------------------------------------------------------------------------------------------ table


def _mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def _cell(mean, std, n=None) -> str:
    if mean is None:
        return "—"
    text = f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")
    return text + ("" if n is None else f" (n={n})")


def collect_table(sweep_dir: Path, preset: dict, methods: list[str] | None = None,
                  scenarios: list[str] | None = None) -> list[dict]:
    """One row per (scenario, method): the paper's mean and spread, clexp's mean ± std (%) over the
    completed seeds of each mode, and the number of failed jobs. Reads every results.json below
    `sweep_dir` (clexp.review.report.collect). A method the preset records no estimator for (naive, joint,
    SI, ...) computes the same in both modes: its runs of either mode fill both columns (one run per
    seed: `--faithful`, then `--correct --methods` the ones with an estimator, saves those runs)."""
    from clexp.review import report
    try:
        records = report.collect([sweep_dir], keep_config=True) if Path(sweep_dir).exists() else []
    except report.ReportError:
        records = []
    table = preset.get("reproduce") or {}
    methods = methods or list(table.get("methods") or [])
    scenarios = scenarios or list(table.get("scenarios") or [])
    paper = preset.get("paper") or {}
    estimators = preset.get("estimators") or {}
    rows = []
    for scenario in scenarios:
        for method in methods:
            row = {"scenario": scenario, "method": method}
            published = (paper.get(method) or {}).get(scenario) or {}
            row["paper_mean"], row["paper_std"] = published.get("mean"), published.get("std")
            mine = [r for r in records if r.get("method") == method and r.get("incremental") == scenario]
            failed = sum(r["status"] != "completed" for r in mine)
            for mode, flag in MODES.items():
                if method in estimators:
                    runs = [r for r in mine if _faithful(r) is (flag == "true")]
                else:  # the same computation in both modes: one run per seed
                    runs = list({r.get("seed"): r for r in sorted(mine, key=lambda r: r["status"] != "completed",
                                                                  reverse=True)}.values())
                accs = [100 * r["avg_acc"] for r in runs if r["status"] == "completed" and r.get("avg_acc") is not None]
                row[f"{mode}_mean"], row[f"{mode}_std"], row[f"{mode}_n"] = _mean_std(accs)
                row[f"{mode}_seeds"] = sorted(r.get("seed") for r in runs if r["status"] == "completed")
            row["failed"] = failed
            row["same_in_both"] = method not in estimators
            rows.append(row)
    return rows


def _faithful(record: dict) -> bool:
    return bool(((record.get("config") or {}).get("preset") or {}).get("faithful", False))


def title(name: str, preset: dict, data: str | None, epochs: int | None = None, overrides: list[str] = ()) -> str:
    spread = preset.get("paper_spread", "std")
    text = (f"{name}: final average accuracy (%), clexp mean ± std over seeds; paper mean ± {spread} "
            f"({preset.get('paper_source', 'no source recorded')})")
    if data == "mnist_t10k":
        text += (" — clexp on the 10k-image stand-in (mnist_t10k: the 10,000 real MNIST test images split "
                 "8,000/2,000), not full MNIST")
    if epochs is not None:
        text += (f"; train.epochs={epochs}: the paper's optimizer steps per experience on the stand-in's "
                 f"{DATA[data]['train_size']:,} training images")
    if overrides:
        text += f"; overrides: {' '.join(overrides)}"
    return text


def format_table(rows: list[dict]) -> list[list[str]]:
    header = ["scenario", "method", "paper", "clexp (faithful)", "clexp (correct)"]
    body = []
    for r in rows:
        cells = [r["scenario"], r["method"] + ("*" if r.get("same_in_both") else ""),
                 _cell(r["paper_mean"], r["paper_std"])]
        for mode in MODES:
            cells.append(_cell(r[f"{mode}_mean"], r[f"{mode}_std"], r[f"{mode}_n"] or None))
        if r["failed"]:
            cells[-1] += f" [{r['failed']} failed]"
        body.append(cells)
    return [header, *body]


def write_table(rows: list[dict], out_dir: Path, heading: str) -> dict[str, Path]:
    """`table.md` (the title, then a markdown table), `table.csv` (every number) and `reproduce.png`."""
    from clexp.review.report import markdown_table

    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "table.md"
    md.write_text(f"{heading}\n\n{markdown_table(format_table(rows))}\n\n{FOOTNOTE}\n")
    path_csv = out_dir / "table.csv"
    with open(path_csv, "w", newline="") as f:
        keys = [k for k in rows[0] if not k.endswith("_seeds")] if rows else []
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return {"table.md": md, "table.csv": path_csv, "reproduce.png": plot_table(rows, out_dir / "reproduce.png",
                                                                                heading)}


def plot_table(rows: list[dict], path: Path, heading: str) -> Path:
    """Grouped bars, one panel per scenario, one group per method: paper (its error bars), clexp
    faithful and clexp correct (std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    fig, axes = plt.subplots(1, max(len(scenarios), 1), figsize=(4.5 * max(len(scenarios), 1), 3.8), squeeze=False)
    bars = (("paper", "paper", "0.6"), ("faithful", "clexp (faithful)", "tab:orange"),
            ("correct", "clexp (correct)", "tab:blue"))
    width = 0.27
    for ax, scenario in zip(axes[0], scenarios):
        sub = [r for r in rows if r["scenario"] == scenario]
        for k, (key, label, color) in enumerate(bars):
            xs = [i + (k - 1) * width for i in range(len(sub))]
            means = [r[f"{key}_mean"] if r[f"{key}_mean"] is not None else float("nan") for r in sub]
            errs = [r[f"{key}_std"] or 0.0 for r in sub]
            ax.bar(xs, means, width, yerr=errs, capsize=2, color=color, label=label)
        ax.set_xticks(range(len(sub)), [r["method"] for r in sub], rotation=45, ha="right")
        ax.set_title(f"{scenario}-IL")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("final average accuracy (%)")
    import textwrap

    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3, frameon=False)
    fig.suptitle("\n".join(textwrap.wrap(heading, 140)), fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ main


def run_sweep(args: list[str], log: Path) -> int:
    """`python -m clexp ARGS` with its output in `log`; its exit status."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # this clexp first (a checkout run in place)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ clexp {' '.join(args)}\n")
        f.flush()
        return subprocess.call([sys.executable, "-m", "clexp", *args], stdout=f, stderr=subprocess.STDOUT, env=env)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)
    try:
        preset = load_preset(args.name)
        seeds = parse_seeds(args.seeds)
        table = preset["reproduce"]
        methods = parse_list("--methods", args.methods, list(table["methods"]))
        scenarios = parse_list("--scenarios", args.scenarios, list(table["scenarios"]))
        data = parse_data(args.data)
        if args.launcher is not None:
            from clexp.launch.launchers import PLUGINS

            if args.launcher not in PLUGINS:
                raise ReproduceError(f"--launcher {args.launcher!r}: one of {', '.join(PLUGINS)}")
        bad = [o for o in args.overrides if "=" not in o]
        if bad:
            raise ReproduceError(f"{bad[0]!r}: overrides are KEY=VALUE (or give the preset's name once)")
    except ReproduceError as err:
        print(f"clexp-reproduce: error: {err}", file=sys.stderr)
        return 2
    modes = ["faithful", "correct"] if args.mode in (None, "both") else [args.mode]
    epochs = stand_in_epochs(args.name, preset, data[0] if data else None, args.overrides, args.keep_epochs)
    extra = list(args.overrides) + ([f"train.epochs={epochs}"] if epochs is not None else [])
    out = Path(args.out or Path("outputs") / "reproduce" / (args.name + (f"-{data[0]}" if data else "")))
    out = out.expanduser().resolve()
    sweep_dir = out / "sweep"
    if not args.table_only:
        sweep = sweep_arguments(args.name, preset, methods, scenarios, modes, seeds, sweep_dir, data, args.launcher,
                                extra)
        n = len(methods) * len(scenarios) * len(modes) * len(seeds)
        print(f"clexp-reproduce {args.name}: {n} jobs ({len(methods)} methods × {len(scenarios)} scenarios × "
              f"{len(modes)} modes × {len(seeds)} seeds) as one sweep in {sweep_dir}; output in {out / 'sweep.log'}",
              flush=True)
        code = run_sweep(sweep, out / "sweep.log")
        if code == 2:
            print(f"clexp-reproduce: error: the sweep refused its input (see {out / 'sweep.log'})", file=sys.stderr)
            return 2
    rows = collect_table(sweep_dir, preset, methods, scenarios)
    heading = title(args.name, preset, data[0] if data else None, epochs, args.overrides)
    files = write_table(rows, out, heading)
    from clexp.review.report import text_table

    print(f"\n{heading}\n")
    print(text_table(format_table(rows)))
    if any(r.get("same_in_both") for r in rows):
        print(FOOTNOTE)
    print(f"\n{', '.join(str(p) for p in files.values())}")
    failed = sum(r["failed"] for r in rows)
    return 1 if failed else 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
