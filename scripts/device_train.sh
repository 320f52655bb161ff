#!/usr/bin/env bash
# One burst on a lent GPU machine (the `device` tool): measure, train, send the whole training state back.
#
#   here:    python scripts/build_subset.py ~/.cache/neurocodec/corpus .devdata --megabytes 28 --codec opus \
#              --opus-level 0.85 --slice N       (about 80 min of Ogg Opus at 46 kbps; burst N gets slice N)
#            (and Python wheels the image lacks in .whl/: librosa, soundfile, soxr, constriction and their needs)
#            a previous burst's state, if any: .devstate/state-*.safetensors (scripts/shards.py pack-state RUN …)
#   there:   MINUTES=9.5 bash scripts/device_train.sh      (carry .devdata, .whl and .devstate; timeout_s 600)
#            A call carries the repository (35 MB) and at most 29 MB more: the state (54 MB, 4 shards) goes in
#            two calls before, each `mkdir -p /tmp/keep && cp .devstate/* /tmp/keep/` with half the shards in
#            .devstate, and this call runs with STATE=/tmp/keep (a warm machine keeps its files between calls).
#   back:    python scripts/shards.py unpack-state OUT/state-*.safetensors RUN  (RUN: ~/.cache/neurocodec/runs/gpu)
#            cat OUT/log.jsonl >> RUN/log.jsonl   (the curve across bursts: each burst logs from its own start)
#            then judge RUN/generator.safetensors on the validation folder; continue on the CPU with --resume
#
# Steps: (1) benchmarks/train_speed.py, old path against fast path on this GPU (about a minute with compiling),
# (2) training on the fast path (examples/default-gpu.toml) until a minute and a half before MINUTES run out,
# continuing .devstate when it is there (discriminators, optimiser moments and schedule included), else starting
# from the released weights with fresh discriminators, (3) the state packed into 16 MiB shards under OUT with the
# run log and the benchmark's JSON (at most 8 files come back).
# Environment: PY (python, default python3), OUT (where results go), RUN (the run folder, default /tmp/run),
# MINUTES (the whole command's budget, default 9.5), BENCH (0 skips the benchmark), CONFIG (default
# examples/default-gpu.toml), INIT (weights a new run starts from, default the released model; empty: none),
# STATE (the folder of a previous burst's packed state, default .devstate).
set -euo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}
RUN=${RUN:-/tmp/run}
MINUTES=${MINUTES:-9.5}
CONFIG=${CONFIG:-examples/default-gpu.toml}
INIT=${INIT-neurocodec/weights/default.safetensors}
STATE=${STATE:-.devstate}
START=$(date +%s)
mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "${BENCH:-1}" != 0 ]; then
  $PY benchmarks/train_speed.py --device cuda --config "$CONFIG" --steps 20 --warmup 8 \
    --old-batch 32 --json "$OUT/train_speed.json" 2>&1 | grep -v Warning || true
fi
rm -rf "$RUN"
if ls "$STATE"/state-*.safetensors >/dev/null 2>&1; then
  $PY scripts/shards.py unpack-state "$STATE"/state-*.safetensors "$RUN"
  FROM=(--resume)
elif [ -n "$INIT" ]; then
  FROM=(--init "$INIT")
else
  FROM=()
fi
# Time left for training: the budget, less what has gone, less 90 s for the last evaluation, packing and copying.
LEFT=$($PY -c "print(max(0.5, $MINUTES - ($(date +%s) - $START) / 60 - 1.5))")
echo "training for $LEFT minutes"
TRAIN=(-c "import sys, torch; torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True; torch.backends.cudnn.benchmark = True; sys.argv[0] = 'neurocodec'; from neurocodec.cli import main; main()")
$PY "${TRAIN[@]}" train "$CONFIG" --run-dir "$RUN" "${FROM[@]}" --minutes "$LEFT" --quiet \
  ${DEVICE_ARGS:-} || echo "training stopped with status $?"
$PY scripts/shards.py pack-state "$RUN" "$OUT/state"
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
ls -l "$OUT"
