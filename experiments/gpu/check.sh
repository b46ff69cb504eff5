#!/usr/bin/env bash
# The GPU check: every CUDA path of SwiftNAS once, and the engine benchmark, on a bare GPU machine; one summary.
#
#   bash experiments/gpu/check.sh [STAGE ...]       # on the GPU machine, from the repository root
#   bash experiments/gpu/check.sh --dry-run [STAGE ...]   # the same commands at toy sizes on the CPU (the suite)
#
# Stages (default: all, in this order): install bench search fidelity pilot supernet oneshot torchrun onnx
# (and verdicts, only when named):
#   install   the carried wheels (.whl/: optuna, alembic, sqlalchemy, mako, colorlog, timm) into /tmp/site
#   bench     experiments/bench_engine.py --train-device cuda (every job against the bare loop); $BENCH_ARGS
#             replaces its arguments
#   search    nas search --workers 4 on one GPU (K trainings at once) at a 1 ms budget on CIFAR-10
#   fidelity  a one-minute chunk of the fidelity benchmark with 4 workers, into its own journal
#   pilot     a chunk ($PILOT_MINUTES, default 2) of fidelity benchmark version 2's pilot with 4 workers: the GPU
#             candidates ($PILOT_PROTOCOLS), into experiments/fidelity/v2/pilot/gpu.journal (committed, so the next
#             GPU session continues it; a copy comes back in $OUT: commit it with the figures)
#   verdicts  a chunk ($VERDICT_MINUTES, default 6) of the headline plan, experiments/verdicts/gpu.yaml
#             (bench_verdicts.py run): its folder comes back in $OUT as verdicts-gpu.tar.gz (no weights); unpack
#             it over experiments/verdicts/ and commit it, so the next session continues the plan
#   supernet  one epoch of nas supernet train over the CIFAR-scale space
#   oneshot   a one-shot search scored by that supernet
#   torchrun  torchrun --nproc_per_node 1 nas retrain of XS at 64 px for one epoch (NCCL), with its ONNX export
#   onnx      nas export of the GPU-trained checkpoint to ONNX, checked in onnxruntime
#
# Prepare here first: the wheels into .whl/ (the device tool's README says how) and the data into .carry/:
#   mkdir -p .carry && cp ../shared/datasets/cifar10-jpeg.tar.gz .carry/
# then call the device tool's run with carry [".whl", ".carry"] and a timeout that leaves time for a rerun, e.g.
#   bash experiments/gpu/check.sh 2>&1 | tail -60        (about 8 minutes; summary.md and bench.json come back)
# Data: CIFAR-10's JPEG archive, carried in .carry/ (../shared does not travel). Outputs and a summary.md go to
# $OUT (the device tool's folder; /tmp/gpu-check elsewhere). Each stage's log is $OUT/<stage>.log; a failing stage
# is recorded and the next one runs.
set -u
cd "$(dirname "$0")/../.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(install bench search fidelity pilot supernet oneshot torchrun onnx)
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
WORK=${WORK:-/tmp/swiftnas-gpu}
rm -rf "$WORK"; mkdir -p "$WORK"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 NAS_CACHE_DIR=${NAS_CACHE_DIR:-$WORK/cache}
SUMMARY=$OUT/summary.md

if [ $DRY = 1 ]; then
  PY=${PY:-.venv/bin/python}
  DEV=cpu
  DATA=${CHECK_DATA:?the dry run needs CHECK_DATA (a data spec, e.g. imagefolder:tests/data/tiny)}
  TRIALS=2; WORKERS=2; SN_EPOCHS=1; SN_SET="--set batch_size=16"; RT_EXPORT=none
  RT_SET="--set batch_size=16 --loader-workers 0"
  FID_MIN=0.02; ONESHOT=4; BENCH="--quick --jobs proxy retrain64 supernet"; PROXY_SET="--proxy-subset 64"
  PILOT_MIN=0.02; PILOT_JOURNAL=$WORK/pilot.journal; PILOT_WORKERS=1
  VERDICT_PLAN=$WORK/verdicts/dry.yaml; VERDICT_MIN=0.15
  mkdir -p "$WORK/verdicts"
  cat > "$VERDICT_PLAN" <<EOF
name: dry
data: $DATA
recipe: experiments/verdicts/recipe-gpu.yaml
seeds: 2
search: {budgets: [1ms], trials: 1, args: [--proxy-subset, "64", --proxy-epochs, "1"]}
EOF
else
  PY=${PY:-python3}
  DEV=cuda
  DATA=${CHECK_DATA:-cifar10:.carry/cifar10-jpeg.tar.gz}
  TRIALS=16; WORKERS=4; SN_EPOCHS=1; SN_SET=""; RT_SET="--loader-workers 8"; RT_EXPORT=onnx
  FID_MIN=1; ONESHOT=200; BENCH=${BENCH_ARGS:-}; PROXY_SET=""
  PILOT_MIN=${PILOT_MINUTES:-2}; PILOT_JOURNAL=experiments/fidelity/v2/pilot/gpu.journal; PILOT_WORKERS=4
  VERDICT_PLAN=experiments/verdicts/gpu.yaml; VERDICT_MIN=${VERDICT_MINUTES:-6}
fi
NAS="$PY -m nas"

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no GPU (dry run)'), $(nproc) cores"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' +modified')"
  echo "- data: $DATA; stages: ${STAGES[*]}"
  echo
  echo "| stage | exit | seconds | last line |"
  echo "|---|---|---|---|"
} > "$SUMMARY"

stage() {  # stage NAME COMMAND...: run, time, log, record one summary row
  local name=$1; shift
  local t0=$(date +%s.%N)
  echo "== $name: $*" | tee "$OUT/$name.log"
  "$@" >> "$OUT/$name.log" 2>&1
  local rc=$?
  local secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  local last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | tr '|' '/' | cut -c1-160)
  echo "| $name | $rc | $secs | $last |" >> "$SUMMARY"
  echo "== $name: exit $rc after ${secs}s"
  return 0
}

for s in "${STAGES[@]}"; do
  case $s in
    install)
      if [ $DRY = 1 ]; then echo "| install | skipped (dry run) | 0 | |" >> "$SUMMARY"; continue; fi
      stage install python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
      export PYTHONPATH=/tmp/site:$PWD
      $PY -c "import torch, timm, optuna; print('torch', torch.__version__, 'timm', timm.__version__, 'optuna', optuna.__version__, 'cuda', torch.cuda.is_available())" >> "$OUT/install.log" 2>&1
      ;;
    bench)
      stage bench $PY experiments/bench_engine.py --train-device $DEV --data "$DATA" $BENCH --json "$OUT/bench.json" ;;
    search)
      stage search $NAS search --latency-budget 1ms --device iphone14 --data "$DATA" --trials $TRIALS \
        --workers $WORKERS --train-device $DEV --out "$WORK/search" $PROXY_SET ;;
    fidelity)
      stage fidelity $PY experiments/bench_fidelity.py run --data "$DATA" --train-device $DEV --workers $WORKERS \
        --minutes $FID_MIN --protocols proxy-56px-2ep-4k reference --journal "$WORK/fidelity.journal" ;;
    pilot)
      stage pilot $PY experiments/bench_fidelity.py pilot run --data "$DATA" --train-device $DEV --workers $PILOT_WORKERS \
        --minutes $PILOT_MIN --journal "$PILOT_JOURNAL" \
        --protocols ${PILOT_PROTOCOLS:-v1-reference 56px-10ep-crop 56px-20ep-crop 56px-10ep-flip 112px-10ep-crop}
      cp "$PILOT_JOURNAL" "${PILOT_JOURNAL%.journal}.csv" "$OUT/" 2>/dev/null || true ;;
    verdicts)
      stage verdicts $PY experiments/bench_verdicts.py run --plan "$VERDICT_PLAN" --train-device $DEV \
        --minutes $VERDICT_MIN
      name=$(basename "${VERDICT_PLAN%.yaml}")
      tar --exclude='*.pth' -czf "$OUT/verdicts-$name.tar.gz" -C "$(dirname "$VERDICT_PLAN")" "$name" 2>/dev/null \
        || true ;;
    supernet)
      stage supernet $NAS supernet train --space experiments/supernet/swiftformer-cifar.yaml --data "$DATA" \
        --epochs $SN_EPOCHS --train-device $DEV --out "$WORK/supernet" $SN_SET ;;
    oneshot)
      stage oneshot $NAS search --latency-budget 1ms --device iphone14 --data "$DATA" --trials $ONESHOT \
        --space experiments/supernet/swiftformer-cifar.yaml --evaluator "supernet:$WORK/supernet" \
        --train-device $DEV --out "$WORK/oneshot" ;;
    torchrun)
      stage torchrun $PY -m torch.distributed.run --nproc_per_node 1 -m nas retrain swiftformer:xs --data "$DATA" \
        --resolution 64 --epochs 1 --train-device $DEV --out "$WORK/retrain" --export $RT_EXPORT $RT_SET ;;
    onnx)
      stage onnx $NAS export "$WORK/retrain/arch.json" --checkpoint "$WORK/retrain/model.pth" --format onnx \
        --out "$WORK/retrain/check.onnx" ;;
    *) echo "unknown stage $s; accepted: install bench search fidelity pilot verdicts supernet oneshot torchrun onnx" >&2
       exit 2 ;;
  esac
done
cp "$WORK"/search/*.csv "$OUT/" 2>/dev/null || true
if [ -f "$OUT/bench.log" ]; then
  { echo; echo "## bench_engine"; echo; grep -A100 '^| job' "$OUT/bench.log"; } >> "$SUMMARY"
fi
echo >> "$SUMMARY"; echo "wrote $SUMMARY"; cat "$SUMMARY"
