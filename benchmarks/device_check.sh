#!/usr/bin/env bash
# One prepared check of trickbag's CUDA path on a GPU machine, in under 8 minutes:
#   1. the GPU tests (pytest -m gpu): no device sync in a training step (bf16, fp16, compiled),
#      CUDA batches equal to the CPU DataLoader's bits, speed options resolved on CUDA;
#   2. a profile of both loops (op calls, kernel launches, syncs, CPU and device time per step) for
#      the two launch-bound models, where the engine measured 7-11% slower on an H200;
#   3. the throughput table: engine vs a hand-written loop (benchmarks/gpu_throughput.py);
#   4. one `trickbag lr-find` and one short `trickbag run` of the CIFAR-10 recipe in bf16, on the
#      CIFAR-shaped synthetic data (no files needed).
# Everything lands in $OUT (default ./device-check): device_check.log, profile.tar.gz,
# throughput.md/.json, lr_find.json/.png and the run's metrics.jsonl. Each step has its own time
# limit, so one that hangs cannot take the others down, and files are copied out as they appear.
#
# On a node without network, first run benchmarks/offline_wheels.sh where there is one and bring
# .whl/ along: it is installed here into /tmp/site (the node's torch is used as it is).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-check}
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
t0=$(date +%s)
step() { echo "== $* [$(( $(date +%s) - t0 ))s]" | tee -a "$LOG"; }

if [ -d .whl ]; then
    step "installing .whl/ into /tmp/site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3 | tee -a "$LOG"
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
$PY -c "import torch, trickbag; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name(), '| trickbag', trickbag.__version__)" 2>&1 | tee -a "$LOG"

step "1. pytest -m gpu"
timeout "${GPU_TESTS_S:-120}" $PY -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tail -25 | tee -a "$LOG"

work=$(mktemp -d)
step "2. profile: engine vs hand-written loop, per step"
mkdir -p "$work/profile"
timeout "${PROFILE_S:-60}" $PY benchmarks/gpu_throughput.py --profile "$work/profile/p" --compile no --models resnet20,airbench94 \
    --precisions bf16 --steps 40 2>&1 | grep -v -e Warning -e USDT | tee -a "$LOG"
tar -czf "$OUT/profile.tar.gz" -C "$work" profile 2>/dev/null

step "3. throughput: engine vs hand-written loop"
timeout "${THROUGHPUT_S:-240}" $PY benchmarks/gpu_throughput.py --budget "${THROUGHPUT_BUDGET_S:-170}" --steps 100 --warmup 20 \
    --markdown "$OUT/throughput.md" --json "$OUT/throughput.json" 2>&1 | grep -v Warning | tee -a "$LOG"

RECIPE=cifar10-resnet20-bag-of-tricks
SYNTH=(--set data.name=synthetic_cifar10 --set training.precision=bf16)
step "4. trickbag lr-find $RECIPE (synthetic data, bf16)"
timeout "${LR_FIND_S:-60}" trickbag lr-find "$RECIPE" "${SYNTH[@]}" --steps 100 --out "$work/lr" 2>&1 | tail -30 | tee -a "$LOG"
cp "$work"/lr/lr_find.json "$work"/lr/lr_find.png "$OUT"/ 2>/dev/null

step "5. trickbag run $RECIPE (synthetic data, bf16, 3 epochs)"
timeout "${RUN_S:-60}" trickbag run "$RECIPE" "${SYNTH[@]}" --set training.epochs=3 --out "$work/run" 2>&1 | tail -12 | tee -a "$LOG"
cp "$work"/run/metrics.jsonl "$OUT"/ 2>/dev/null
step "done"
