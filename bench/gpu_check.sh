#!/usr/bin/env bash
# The GPU session's one command (issue 23): GPU tests, make test-fast, make run, the benchmark table,
# mixed precision vs fp32 for every method, and one-GPU DDP vs one process — every log, table and
# figure in one folder, under a time limit of its own (8 minutes in all, every step under `timeout`).
#
#   bash bench/gpu_check.sh [--device cpu|cuda] [--tiny] [--out DIR] [--only STEP,...] [--limit SECONDS]
#
#   --device   cuda (default) or cpu (the dry run: `bash bench/gpu_check.sh --device cpu --tiny`)
#   --tiny     small sizes everywhere (the benchmarks' smoke mode, short streams, a quick test subset)
#   --out      the output folder (default bench/results/gpu-<date>); OUT/summary.md lists every step
#   --only     rerun only these steps (names as in summary.md: gpu-tests,test-fast,run,bench,precision,ddp)
#   --limit    the total time limit in seconds (default 480)
#
# It installs nothing when .venv exists (`make install` only when it is missing; `make` is told the
# install stamp is up to date). Every step runs even when an earlier one failed; the exit code is
# non-zero when any step failed or ran out of time (exit code 124 in summary.md).
set -u

DEVICE=cuda
TINY=0
OUT=""
ONLY=""
LIMIT=480
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --device=*) DEVICE="${1#*=}"; shift ;;
    --tiny) TINY=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --only=*) ONLY="${1#*=}"; shift ;;
    --limit) LIMIT="$2"; shift 2 ;;
    --limit=*) LIMIT="${1#*=}"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cpu|cuda) ;; *) echo "gpu_check.sh: --device must be cpu or cuda, not $DEVICE" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
OUT="${OUT:-bench/results/gpu-$(date +%Y-%m-%d)}"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
export WANDB_MODE=offline WANDB_SILENT=true PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export MPLCONFIGDIR="$OUT/.cache/matplotlib"
[ "$DEVICE" = cpu ] && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" CUDA_VISIBLE_DEVICES=""

START=$(date +%s)
STEPS=(gpu-tests test-fast run bench precision ddp)
RESERVE=20           # seconds kept for each later step, so that a slow step cannot starve the rest
TSV="$OUT/.steps.tsv"
: > "$TSV"
FAILED=0

if [ ! -x .venv/bin/python ]; then
  echo "no .venv: make install" | tee "$OUT/install.log"
  timeout 300 make install >> "$OUT/install.log" 2>&1 || { echo "make install failed (see $OUT/install.log)"; exit 1; }
fi
PY="$ROOT/.venv/bin/python"
MAKE=(make -o .venv/.installed)   # never reinstall: the stamp counts as up to date

{
  echo "date: $(date -Is)"
  echo "host: $(hostname)  device: $DEVICE  tiny: $TINY  limit: ${LIMIT}s"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) file(s) changed"
  "$PY" -c 'import torch, pytorch_lightning as pl; print("torch", torch.__version__, "lightning", pl.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: --device cuda but torch sees no GPU (see $OUT/environment.txt); the steps will fail" >&2
fi

wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# step NAME CAP_SECONDS COMMAND...: run COMMAND under timeout (its cap, or less to keep RESERVE for each
# later step and the total under LIMIT), output in OUT/NAME.log, one line in the summary
step() {
  local name="$1" cap="$2"; shift 2
  wanted "$name" || return 0
  local later=0 seen=0 s
  for s in "${STEPS[@]}"; do
    if [ "$seen" = 1 ] && wanted "$s"; then later=$((later + 1)); fi
    [ "$s" = "$name" ] && seen=1
  done
  local left=$((LIMIT - ($(date +%s) - START) - later * RESERVE))
  local budget=$(( cap < left ? cap : left ))
  local t0 rc
  t0=$(date +%s)
  if [ "$budget" -lt 5 ]; then
    echo "no time left" > "$OUT/$name.log"; rc=124
  else
    echo "== $name (up to ${budget}s): $*"
    timeout --kill-after=10 "$budget" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
  fi
  local dt=$(( $(date +%s) - t0 ))
  [ "$rc" -ne 0 ] && FAILED=1
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$budget" >> "$TSV"
  echo "   $name: exit $rc in ${dt}s ($( [ "$rc" = 124 ] && echo 'timed out' || tail -n 1 "$OUT/$name.log" | cut -c1-100))"
}

# (a) the GPU-only tests (skipped without a GPU), then the fast suite (on the cpu dry run: a quick subset)
PYTEST_TMP="$OUT/.pytest-tmp"   # its own: a pytest run beside (or around) this one keeps its temporary folders
mkdir -p "$PYTEST_TMP"          # (pytest creates --basetemp itself, but not its parent)
step gpu-tests 150 "$PY" -m pytest -q -p no:cacheprovider --basetemp="$PYTEST_TMP/gpu" tests/test_gpu.py --junitxml="$OUT/gpu-tests.xml"
if [ "$DEVICE" = cpu ] && [ "$TINY" = 1 ]; then
  # the configs compose and validate (test_compose.py, less its minute-long exhaustive product)
  step test-fast 90 "$PY" -m pytest -q -p no:cacheprovider --basetemp="$PYTEST_TMP/fast" -m "not slow" \
    tests/test_compose.py -k "not every_method_preset_combination" --junitxml="$OUT/test-fast.xml"
else
  NPROC=$(nproc 2>/dev/null || echo 2); N=$(( NPROC / 2 )); [ "$N" -gt 8 ] && N=8; [ "$N" -lt 1 ] && N=1
  step test-fast 200 "${MAKE[@]}" test-fast ARGS="-p no:cacheprovider --basetemp=$PYTEST_TMP/fast -n $N --dist loadfile --ignore=tests/test_gpu.py --junitxml=$OUT/test-fast.xml"
fi

# (b) the default experiment through make run
if [ "$DEVICE" = cuda ]; then RUN_DEV="trainer=gpu"; else RUN_DEV="trainer.accelerator=cpu"; fi
SMALL=""
[ "$TINY" = 1 ] && SMALL="scenario.n_experiences=2 train.epochs=1 logger=none"
step run 90 "${MAKE[@]}" run ARGS="$RUN_DEV trainer.enable_progress_bar=false $SMALL hydra.run.dir=$OUT/run"

# (c) the benchmark table (the cpu dry run leaves out bench_process: its processes take a minute there)
BENCH_ARGS=(--device "$DEVICE" --json "$OUT/bench.json")
[ "$TINY" = 1 ] && BENCH_ARGS+=(--tiny)
[ "$DEVICE" = cpu ] && [ "$TINY" = 1 ] && BENCH_ARGS+=(--only bench_overhead bench_penalty bench_fisher bench_ngd bench_kfac)
step bench 200 "$PY" -m bench "${BENCH_ARGS[@]}"

# (d) bf16-mixed and 16-mixed against fp32 for every method (cpu dry run: bf16-mixed, ewc and si)
PREC_ARGS=(--device "$DEVICE" --out "$OUT/precision")
if [ "$DEVICE" = cpu ]; then PREC_ARGS+=(--methods ewc si --precisions bf16-mixed); fi
[ "$TINY" = 1 ] && PREC_ARGS+=(--tiny)
step precision 150 "$PY" -m bench.gpu_check precision "${PREC_ARGS[@]}"

# (e) trainer=ddp with one device against a plain run: the same acc_matrix (a function: exported for timeout)
ddp_check() {
  local base=(method=ewc scenario.n_experiences=2 train.epochs=1 "model.hidden=[64]" logger=none plots=false
              trainer.enable_progress_bar=false)
  local plain ddp1
  if [ "$DEVICE" = cuda ]; then plain=(trainer=gpu); ddp1=(trainer=ddp trainer.accelerator=gpu trainer.devices=1)
  else plain=(trainer.accelerator=cpu); ddp1=(trainer=ddp trainer.accelerator=cpu trainer.devices=1); fi
  rm -rf "$OUT/ddp"
  echo "== plain: ${base[*]} ${plain[*]}"
  "$PY" -m clexp "${base[@]}" "${plain[@]}" hydra.run.dir="$OUT/ddp/plain" || { echo "plain run failed"; return 1; }
  echo "== ddp: ${base[*]} ${ddp1[*]}"
  "$PY" -m clexp "${base[@]}" "${ddp1[@]}" hydra.run.dir="$OUT/ddp/ddp1" || { echo "ddp run failed"; return 1; }
  "$PY" -m bench.gpu_check compare "$OUT/ddp/plain" "$OUT/ddp/ddp1" --out "$OUT/ddp/verdict.txt"
}
export -f ddp_check
export DEVICE OUT PY
step ddp 150 bash -c ddp_check

# stream checkpoints (*.pt) and caches are not results: the folder stays small enough to commit
find "$OUT" -name '*.pt' -delete 2> /dev/null
rm -rf "$OUT/.cache" "$PYTEST_TMP"

# the summary: every step, its exit code and time (a rerun with --only adds its own table below the first)
{
  if [ -n "$ONLY" ] && [ -s "$OUT/summary.md" ]; then
    cat "$OUT/summary.md"
    echo
    echo "## Rerun $(date -Is) (--only $ONLY)"
  else
    echo "# gpu_check: device $DEVICE$( [ "$TINY" = 1 ] && echo ', tiny')"
    echo
    echo "Command: \`bash bench/gpu_check.sh --device $DEVICE$( [ "$TINY" = 1 ] && echo ' --tiny') --out $OUT\`"
    echo
    sed 's/^/    /' "$OUT/environment.txt"
  fi
  echo
  echo "| step | exit code | seconds | limit (s) | log |"
  echo "|---|---|---|---|---|"
  while IFS=$'\t' read -r name rc dt budget; do
    echo "| $name | $rc$( [ "$rc" = 124 ] && echo ' (timed out)') | $dt | $budget | $name.log |"
  done < "$TSV"
  echo
  echo "Total: $(( $(date +%s) - START ))s; $( [ "$FAILED" = 0 ] && echo 'every step passed' || echo 'some step FAILED (exit code not 0 above)')."
  if [ -f "$OUT/ddp/verdict.txt" ]; then echo; echo "DDP (ddp/verdict.txt): $(grep '^verdict' "$OUT/ddp/verdict.txt")"; fi
  if [ -f "$OUT/precision/precision.md" ]; then
    echo; echo "Precision (precision/precision.md): $(grep -m1 'problem(s)' "$OUT/precision/precision.md")"
  fi
  if [ -f "$OUT/bench.json" ]; then
    echo; echo "Benchmarks (bench.log, bench.json): $("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(sum(not x["ok"] for x in r), "of", len(r), "rows miss their target")' "$OUT/bench.json")"
  fi
} > "$OUT/summary.md.tmp"
mv "$OUT/summary.md.tmp" "$OUT/summary.md"
rm -f "$TSV"
echo
cat "$OUT/summary.md"
exit "$FAILED"
