"""`python -m bench.bench_report SWEEP [--jobs 1000 10000 100000] [--work DIR]`: clexp-report at scale.

Generates sweep folders of 1k, 10k, 100k jobs by copying the jobs of a real sweep (every results.json below
SWEEP with its `.hydra` folder) with their seeds renumbered — in results.json (`seed`, `config.seed`), in
`.hydra/overrides.yaml` (`seed=`) and `.hydra/config.yaml` — so that each copy is one more seed of the same
configuration, as a sweep over many seeds would be. Then runs `clexp-report FOLDER --out FOLDER/report`
(the whole report: tables, statistics, figures, report.html) once per size in a fresh process and prints
its wall-clock seconds and peak RSS (the child's `ru_maxrss`, from `os.wait4`), and the size of
report.html. The jobs' PNG figures and checkpoints are not copied (the report reads none of them).
Run it at low priority on a shared machine (`nice -n 10`); the page cache is warm (the folder was just
written), as it is when a report follows its sweep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def templates(sweep: Path) -> list[dict]:
    """The real jobs: their results.json (parsed) and the text of their `.hydra` files."""
    out = []
    for f in sorted(Path(sweep).rglob("results.json")):
        hydra = f.parent / ".hydra"
        out.append({"results": json.loads(f.read_text()),
                    **{name: (hydra / f"{name}.yaml").read_text() for name in ("overrides", "hydra", "config")
                       if (hydra / f"{name}.yaml").exists()}})
    if not out:
        sys.exit(f"bench_report: no results.json under {sweep}")
    return out


def generate(jobs: list[dict], n: int, folder: Path) -> float:
    """`n` job folders in `folder` (0, 1, ...): job k is template k mod len(jobs), seed renumbered to
    seed + 1000 · (k // len(jobs)). Returns the seconds it took."""
    start = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for k in range(n):
        t = jobs[k % len(jobs)]
        seed = int(t["results"].get("seed") or 0) + 1000 * (k // len(jobs))
        job = folder / str(k)
        (job / ".hydra").mkdir(parents=True)
        results = dict(t["results"], seed=seed, config=dict(t["results"]["config"], seed=seed),
                       run_dir=str(job))
        (job / "results.json").write_text(json.dumps(results, indent=2))
        for name in ("overrides", "hydra", "config"):
            if name in t:
                text = re.sub(r"(?m)^(- seed=|seed: )\d+$", lambda m: f"{m[1]}{seed}", t[name])
                (job / ".hydra" / f"{name}.yaml").write_text(text)
    (folder / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - (copies of a real sweep, "
                                          "seeds renumbered: bench/bench_report.py)\n")
    return time.perf_counter() - start


def measure(folder: Path) -> dict:
    """clexp-report on `folder` in a fresh process: seconds, peak RSS (MiB), report.html's size (KiB)."""
    out = folder / "report"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "clexp.review.report", str(folder), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_report: clexp-report failed on {folder}:\n{err[-2000:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024,
            "html_kib": (out / "report.html").stat().st_size / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="a real sweep folder whose jobs are copied")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--work", default="outputs/bench_report", help="where the generated sweeps go")
    parser.add_argument("--keep", action="store_true", help="keep the generated sweep folders")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    jobs = templates(Path(args.sweep))
    rows = []
    print(f"clexp-report at scale: copies of {len(jobs)} real jobs with seeds renumbered; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{dt.date.today().isoformat()}")
    print("load average before: " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + " (a shared machine)")
    header = ("jobs", "generate (s)", "clexp-report (s)", "peak RSS (MiB)", "report.html (KiB)")
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, (8, 12, 16, 14, 17))))
    for n in args.jobs:
        folder = Path(args.work) / f"jobs{n}"
        made = generate(jobs, n, folder)
        row = {"jobs": n, "generate_s": made, **measure(folder)}
        rows.append(row)
        print(f"{n:>8}  {made:>12.1f}  {row['seconds']:>16.1f}  {row['peak_rss_mib']:>14.0f}  "
              f"{row['html_kib']:>17.0f}   (load average after: {os.getloadavg()[0]:.1f})", flush=True)
        if not args.keep:
            shutil.rmtree(folder)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
