"""What a launcher costs a sweep of small jobs: 8 jobs of the default experiment (seeds 0-7; its default
logger, figures and checkpoints) with 2 workers, under `parallel` (joblib), `submitit_local` and `ray`,
each against the ideal: the sum of the jobs' own times divided by 2 — target ≤ 1.3×.

A job's own time is its Hydra job (from `on_job_start` to `on_job_end`, in the job's process: config,
data, training, evaluation, results, figures, its wandb run), measured when the jobs run one after the
other under the basic launcher. A launcher's time is its whole `clexp -m` command, start to exit (the
launching process, starting the workers, the jobs, jobs.csv and the sweep's summary). Every process gets
OMP_NUM_THREADS=1 (one core per job; Ray sets the same itself); Ray stays on 127.0.0.1. `submitit_local`
starts all jobs at once (its local executor has no queue), the others 2 at a time. Launchers whose plugin
is not installed are left out of the table.

    python -m bench.bench_launchers [--jobs 8] [--workers 2] [--launchers parallel submitit_local ray] [ARG=VALUE ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra.experimental.callback import Callback

ROOT = Path(__file__).resolve().parents[1]
TIME_FILE = "bench_job_time.json"
LAUNCHERS = {
    "parallel": (["hydra/launcher=parallel", "hydra.launcher.n_jobs={workers}"], "hydra_plugins.hydra_joblib_launcher"),
    "submitit_local": (["hydra/launcher=submitit_local"], "hydra_plugins.hydra_submitit_launcher"),
    "ray": (["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus={workers}"], "hydra_plugins.hydra_ray_launcher"),
}


class JobTimer(Callback):
    """Hydra callback (added by this script): the job's own time into its folder."""

    def on_job_start(self, config, **kwargs) -> None:
        self._start = time.perf_counter()

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        folder = Path(HydraConfig.get().runtime.output_dir)
        (folder / TIME_FILE).write_text(json.dumps({"seconds": time.perf_counter() - self._start}))


def sweep(name: str, extra: list[str], n_jobs: int, work: Path, args: list[str]) -> tuple[float, list[float]]:
    """Run the sweep in `work/name`; return (its wall time, each job's own time)."""
    folder = work / name
    cmd = [sys.executable, "-m", "clexp", "-m", *extra, f"seed={','.join(map(str, range(n_jobs)))}",
           f"hydra.sweep.dir={folder}", "+hydra.callbacks.bench_timer._target_=bench.bench_launchers.JobTimer",
           "trainer.enable_progress_bar=false", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
           "WANDB_SILENT": "true",
           # Ray's single-machine mode: its instance on 127.0.0.1, not on the machine's network address
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"bench_launchers: {name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    times = [json.loads(p.read_text())["seconds"] for p in sorted(folder.glob(f"*/{TIME_FILE}"))]
    statuses = [json.loads(p.read_text()).get("status") for p in folder.glob("*/results.json")]
    if len(times) != n_jobs or statuses.count("completed") != n_jobs:
        raise SystemExit(f"bench_launchers: {name}: {len(times)} timed jobs, {statuses.count('completed')} "
                         f"completed, of {n_jobs}")
    return wall, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--launchers", nargs="*", default=list(LAUNCHERS), choices=list(LAUNCHERS),
                        help="(overrides go before this option: it takes every word after it)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("overrides", nargs="*", help="clexp overrides for every job (default: none)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_launchers_") as tmp:
        work = Path(tmp)
        wall, own = sweep("basic", [], args.jobs, work, args.overrides)
        ideal = sum(own) / args.workers
        print(f"{args.jobs} jobs, own time {sum(own) / len(own):.1f} s each (min {min(own):.1f}, max {max(own):.1f}), "
              f"sum {sum(own):.1f} s; ideal with {args.workers} workers {ideal:.1f} s; "
              f"basic launcher (one after the other) {wall:.1f} s")
        rows.append({"launcher": "basic (1 worker)", "wall_s": wall, "ideal_s": sum(own), "ratio": wall / sum(own)})
        for name in args.launchers:
            extra, plugin = LAUNCHERS[name]
            if importlib.util.find_spec(plugin) is None:
                print(f"{name}: not installed, left out")
                continue
            wall, times = sweep(name, [e.format(workers=args.workers) for e in extra], args.jobs, work,
                                args.overrides)
            rows.append({"launcher": name, "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
                         "job_mean_s": sum(times) / len(times)})
    print(f"\n{'launcher':<18}{'wall s':>9}{'ideal s':>9}{'ratio':>8}{'job s (there)':>15}")
    for r in rows:
        job = f"{r['job_mean_s']:.1f}" if "job_mean_s" in r else ""
        print(f"{r['launcher']:<18}{r['wall_s']:>9.1f}{r['ideal_s']:>9.1f}{r['ratio']:>7.2f}x{job:>15}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
