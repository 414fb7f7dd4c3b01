"""Helpers of `bench/gpu_check.sh` (one command for a GPU session):

  python -m bench.gpu_check precision --device cuda --out DIR [--tiny] [--methods ...] [--precisions ...]
      every method at fp32 and in mixed precision on a short stream (in this one process, no import cost
      per run); DIR/precision.md (the table), DIR/precision.json (the rows, rewritten after every run, so a
      time limit keeps what was done). Exit 1 when a run failed, ended non-finite, or kept an importance
      buffer in half precision; accuracy outside the noise is flagged in the table, not an error.
  python -m bench.gpu_check compare RUN_A RUN_B [--atol 0.02] [--out FILE]
      the two runs' results.json acc_matrix: identical, equal within atol, or different (exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

METHODS = ("naive", "ewc", "online_ewc", "si", "mas", "l2", "lwf", "kfac_ewc")
PRECISIONS = ("bf16-mixed", "16-mixed")
HALF = ("torch.float16", "torch.bfloat16")


def stream_overrides(device: str, tiny: bool) -> list[str]:
    """A short stream: the offline digits, 5 experiences x 3 epochs (tiny: 2 x 1, a narrow MLP)."""
    common = ["logger=none", "trainer.enable_progress_bar=false", "plots=false"]
    common += ["trainer=gpu"] if device == "cuda" else ["trainer.accelerator=cpu"]
    if tiny:
        return [*common, "scenario.n_experiences=2", "train.epochs=1", "model.hidden=[64]"]
    return [*common, "train.epochs=3"]


def run_in_process(overrides: list[str], run_dir: Path):
    """compose → preset → validate → StreamRunner.run(), as `clexp` does; returns (results, runner)."""
    from hydra import compose, initialize_config_dir

    from clexp.config import conf_source
    from clexp.config.presets import apply_preset
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    with initialize_config_dir(conf_source.config_dir(), version_base="1.3", job_name="gpu_check"):
        cfg = compose(conf_source.CONFIG_NAME, overrides=list(overrides))
    apply_preset(cfg, list(overrides))
    runner = StreamRunner(cfg, run_dir, parts=validate(cfg))
    return runner.run(), runner


def buffer_check(runner) -> dict:
    """The regularizer's floating buffers: their dtypes, any in half precision, any not finite."""
    import torch

    reg = runner.module.regularizer
    buffers = dict(reg.named_buffers()) if reg is not None else {}
    floating = {n: b for n, b in buffers.items() if b.is_floating_point()}
    params = {str(p.dtype) for p in runner.model.parameters()}
    return {
        "dtypes": sorted({str(b.dtype) for b in floating.values()}),
        "half": sorted(n for n, b in floating.items() if str(b.dtype) in HALF),
        "nonfinite": sorted(n for n, b in floating.items() if not bool(torch.isfinite(b).all())),
        "importance_dtypes": sorted({str(b.dtype) for n, b in floating.items()
                                     if n.startswith(("importance__", "omega__"))}),
        "param_dtypes": sorted(params),
    }


def refused(err: Exception) -> bool:
    """Lightning (or torch) refusing a precision on this device, rather than a failure of clexp."""
    text = f"{type(err).__name__}: {err}".lower()
    return ("precision" in text or "amp" in text or "autocast" in text) and (
        "not supported" in text or "misconfiguration" in text or "only supported" in text)


def one_run(method: str, precision: str, seed: int, base: list[str], out: Path) -> dict:
    import torch

    name = f"{method}-{precision}-s{seed}"
    row = {"method": method, "precision": precision, "seed": seed, "run_dir": str(out / name)}
    t0 = time.perf_counter()
    try:
        results, runner = run_in_process([*base, f"method={method}", f"trainer.precision={precision}",
                                          f"seed={seed}"], out / name)
        avg = results["metrics"]["avg_acc"]
        cells = [a for r in results["acc_matrix"] for a in r]
        row |= {"status": "ok", "avg_acc": avg, "finite": all(math.isfinite(a) for a in [avg, *cells]),
                "buffers": buffer_check(runner)}
        del runner
    except Exception as err:  # one run's failure must not stop the table
        row |= {"status": "skipped" if refused(err) else "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}
    row["seconds"] = round(time.perf_counter() - t0, 2)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def problems(row: dict) -> list[str]:
    if row["status"] != "ok":
        return [] if row["status"] == "skipped" else [row.get("error", "failed")]
    out = [] if row["finite"] else ["non-finite accuracy"]
    b = row["buffers"]
    if b["half"]:
        out.append(f"half-precision buffers: {', '.join(b['half'][:3])}")
    if b["nonfinite"]:
        out.append(f"non-finite buffers: {', '.join(b['nonfinite'][:3])}")
    if any(d != "torch.float32" for d in b["importance_dtypes"]):
        out.append(f"importance dtypes {b['importance_dtypes']}")
    return out


def precision_table(rows: list[dict], tol_floor: float) -> tuple[str, int, int]:
    """Markdown: one line per method, fp32 and each mixed precision's final average accuracy."""
    by = {(r["method"], r["precision"], r["seed"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    precisions = [p for p in dict.fromkeys(r["precision"] for r in rows) if p != "32-true"]
    acc = lambda r: r.get("avg_acc") if r and r["status"] == "ok" else None  # noqa: E731
    fmt = lambda a: "n/a" if a is None else f"{100 * a:.1f}"  # noqa: E731
    head = ["method", "fp32", "fp32 seed 1 (noise)", *[f"{p} (Δ vs fp32)" for p in precisions], "tolerance", "ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    n_bad = n_off = 0
    for m in methods:
        ref, noise = acc(by.get((m, "32-true", 0))), acc(by.get((m, "32-true", 1)))
        tol = max(tol_floor, abs(ref - noise)) if ref is not None and noise is not None else tol_floor
        cells, ok = [fmt(ref), fmt(noise)], True
        for p in precisions:
            r = by.get((m, p, 0))
            a = acc(r)
            if r is None:
                cells.append("not run")
            elif r["status"] == "skipped":
                cells.append("skipped (refused on this device)")
            elif a is None or ref is None:
                cells.append("FAILED")
                ok = False
            else:
                within = abs(a - ref) <= tol
                cells.append(f"{fmt(a)} ({100 * (a - ref):+.1f}){'' if within else ' outside'}")
                n_off += not within
        bad = [f"{r['method']} {r['precision']}: {msg}" for r in rows if r["method"] == m for msg in problems(r)]
        n_bad += len(bad)
        ok = ok and not bad
        lines.append("| " + " | ".join([m, *cells, f"{100 * tol:.1f}", "yes" if ok else "NO"]) + " |")
    return "\n".join(lines), n_bad, n_off


def precision_main(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = stream_overrides(args.device, args.tiny) + list(args.extra)
    plan = [(m, "32-true", 0) for m in args.methods]
    if args.noise:
        plan += [(m, "32-true", 1) for m in args.methods]
    plan += [(m, p, 0) for m in args.methods for p in args.precisions]
    rows: list[dict] = []
    for method, precision, seed in plan:
        row = one_run(method, precision, seed, base, out)
        rows.append(row)
        status = row["status"] if row["status"] != "ok" else f"avg_acc {100 * row['avg_acc']:.1f}%"
        print(f"{method:<11} {precision:<11} seed {seed}: {status} ({row['seconds']:.1f} s)"
              + (f"  {row['error']}" if "error" in row else ""), flush=True)
        (out / "precision.json").write_text(json.dumps(rows, indent=2))
    table, n_bad, n_off = precision_table(rows, args.tol)
    note = (f"Final average accuracy (%) on a short stream ({' '.join(base)}), device {args.device}. "
            f"Tolerance: the larger of {100 * args.tol:.1f} points and fp32's seed-to-seed difference. "
            f"Buffers: every floating buffer of the regularizer is checked (no half precision, finite; "
            f"importance__/omega__ float32).")
    text = (f"# Mixed precision vs fp32\n\n{note}\n\n{table}\n\n"
            f"{n_bad} problem(s); {n_off} accuracy(ies) outside the tolerance.\n")
    for r in rows:
        for msg in problems(r):
            text += f"\n- {r['method']} {r['precision']} seed {r['seed']}: {msg}"
    (out / "precision.md").write_text(text + "\n")
    print(text)
    return 1 if n_bad else 0


def compare_main(args) -> int:
    import torch

    a = json.loads((Path(args.run_a) / "results.json").read_text())
    b = json.loads((Path(args.run_b) / "results.json").read_text())
    ra, rb = torch.tensor(a["acc_matrix"]), torch.tensor(b["acc_matrix"])
    if ra.shape != rb.shape:
        verdict, code = f"DIFFERENT: shapes {tuple(ra.shape)} vs {tuple(rb.shape)}", 1
    else:
        diff = float((ra - rb).abs().max()) if ra.numel() else 0.0
        if diff == 0.0:
            verdict, code = "identical acc_matrix", 0
        elif diff <= args.atol:
            verdict, code = f"equal within atol {args.atol} (max |difference| {diff:.4f})", 0
        else:
            verdict, code = f"DIFFERENT: max |difference| {diff:.4f} > atol {args.atol}", 1
    text = (f"{args.run_a}\n  acc_matrix {a['acc_matrix']}\n{args.run_b}\n  acc_matrix {b['acc_matrix']}\n"
            f"verdict: {verdict}\n")
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("precision", help="mixed precision vs fp32, every method")
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True,
                   help="also fp32 with seed 1: the run-to-run noise that sets the tolerance")
    p.add_argument("--tol", type=float, default=0.03, help="smallest tolerance (accuracy, 0..1)")
    p.add_argument("extra", nargs="*", help="more clexp overrides (after --)")
    c = sub.add_parser("compare", help="two runs' acc_matrix")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--atol", type=float, default=0.02)
    c.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.command == "precision":
        import os

        os.environ.setdefault("WANDB_MODE", "offline")
        return precision_main(args)
    return compare_main(args)


if __name__ == "__main__":
    sys.exit(main())
