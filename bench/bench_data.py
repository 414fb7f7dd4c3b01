"""The data path measured: images streamed from files against the same images decoded into memory.

An image folder of JPEG and PNG files (10 classes, 64×64 RGB, half of each format) is written to a
temporary folder, then trained on through clexp's real runner (`dataset=image_folder`, one
experience, the CNN of conf/model/cnn.yaml, batch 64, SGD, `train.iterations` steps) in fresh
processes that take turns:

- time per training step, streaming (`dataset.in_memory=false`, 2 worker processes) against in
  memory (`dataset.in_memory=true`) on the same images — target ≤ 1.3×; a step's time is the
  steady state between the end of step 5 and the last step (data waits included, evaluation not);
- peak resident memory of the streaming path's training process for a folder 4× larger against the
  base folder — target ≤ 1.2× (flat in the dataset size); the in-memory path's pair is shown too
  (it grows with the data), and the worker processes' peak.

Each number is the median over the rounds (the machines are shared: their speed drifts). Set
OMP_NUM_THREADS=1 for comparable CPU numbers.

    python -m bench.bench_data [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cli, row

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES, BATCH, WORKERS, WARM = 64, 10, 64, 2, 5


def write_images(folder: Path, n: int, seed: int = 0) -> Path:
    """`n` images in `folder/<class>/`: smooth colour fields plus noise (JPEG and PNG alternate)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    for i in range(n):
        c = i % CLASSES
        d = folder / f"class{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        base = np.stack([np.sin(3 * xx + c), np.cos(2 * yy - c), xx * yy], -1) * 80 + 120
        px = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(d / f"{i:06d}.{'jpg' if i % 2 else 'png'}", quality=90)
    return folder


CHILD = r'''
import json, resource, sys, tempfile, time
import pytorch_lightning as pl

sys.path.insert(0, sys.argv[1])
train_root, test_root, in_memory, steps, device, warm = sys.argv[2:8]
steps, warm = int(steps), int(warm)
from hydra import compose, initialize_config_dir
from clexp.core.runner import StreamRunner
from clexp.train import CONF_DIR
from clexp.core.validation import validate

class Clock(pl.Callback):
    def __init__(self):
        self.t = []
    def on_train_batch_end(self, trainer, *args):
        self.t.append(time.perf_counter())

overrides = ["dataset=image_folder", f"dataset.train_root={train_root}", f"dataset.test_root={test_root}",
             f"dataset.in_memory={in_memory}", "dataset.workers=%d", "model=cnn", "scenario.n_experiences=1",
             "train.epochs=null", f"train.iterations={steps}", "train.batch_size=%d", "train.val_fraction=0",
             "optimizer=sgd", "logger=none", "trainer.enable_progress_bar=false", f"trainer.accelerator={device}",
             "plots=false"]
with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
    cfg = compose("config", overrides=overrides)
clock = Clock()
with tempfile.TemporaryDirectory() as tmp:
    StreamRunner(cfg, tmp, parts=validate(cfg), extra_callbacks=[clock]).run()
t = clock.t
step = (t[-1] - t[warm - 1]) / (len(t) - warm)
print("RESULT " + json.dumps({"step_s": step, "steps": len(t),
      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
''' % (WORKERS, BATCH)


def child(train_root: Path, test_root: Path, in_memory: bool, steps: int, device: str) -> dict:
    """One training run in a fresh process: its step time and peak resident memory."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(train_root), str(test_root),
                          str(in_memory).lower(), str(steps), device, str(WARM)],
                         capture_output=True, text=True, env=env, timeout=1200)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"bench_data child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    n, steps, rounds = (160, 12, 1) if tiny else (1024, 80, 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        base, big = write_images(tmp / "base", n), write_images(tmp / "big", 4 * n, seed=1)
        test = write_images(tmp / "test", 10 * CLASSES, seed=2)
        print(f"bench_data: wrote {5 * n + 10 * CLASSES} images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        speed, memory = [], {"stream": [], "stream4": [], "mem": [], "mem4": []}
        for _ in range(rounds):  # alternate: the machine's speed drifts
            mem = child(base, test, True, steps, device)
            stream = child(base, test, False, steps, device)
            speed.append((mem["step_s"], stream["step_s"]))
            memory["mem"].append(mem["rss_mb"]), memory["stream"].append(stream["rss_mb"])
            memory["stream4"].append(child(big, test, False, steps, device)["rss_mb"])
            memory["mem4"].append(child(big, test, True, steps, device)["rss_mb"])
            workers_rss = stream["workers_rss_mb"]
    ratio = statistics.median(s / m for m, s in speed)
    mem_s, stream_s = statistics.median(m for m, _ in speed), statistics.median(s for _, s in speed)
    peak = {k: statistics.median(v) for k, v in memory.items()}
    rss_ratio = peak["stream4"] / peak["stream"]
    what = f"{n} JPEG/PNG {SIZE}x{SIZE}, CNN batch {BATCH}"
    return [
        row("data", f"stream ({WORKERS} workers) vs memory step, {device}", ratio, "<= 1.3", ratio <= 1.3, stream_s,
            memory_step_s=mem_s, images=what),
        row("data", "stream peak RSS, 4x folder vs 1x", rss_ratio, "<= 1.2", rss_ratio <= 1.2, None,
            stream_rss_mb=peak["stream"], stream4_rss_mb=peak["stream4"], workers_rss_mb=workers_rss),
        row("data", "memory peak RSS, 4x folder vs 1x (reference)", peak["mem4"] / peak["mem"], "-", True, None,
            memory_rss_mb=peak["mem"], memory4_rss_mb=peak["mem4"]),
    ]


def main(argv=None):
    rows = None

    def keep(tiny, device):
        nonlocal rows
        rows = run(tiny, device)
        return rows

    cli(keep, __doc__, argv)
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in ("bench", "case", "ratio", "target", "ok", "seconds")}
        print(f"  {r['case']}: {json.dumps(extra)}")


if __name__ == "__main__":
    main()
