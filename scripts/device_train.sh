#!/usr/bin/env bash
# Continue the default model on a lent GPU machine (the `device` tool), in two legs, and send back fp16 generator
# shards after each leg (files come back at most 16 MB each) plus the run log.
#
#   here:    python scripts/build_subset.py ~/.cache/neurocodec/corpus .devdata --megabytes 25.5
#            (and Python wheels the image lacks in .whl/: librosa, soundfile, soxr, constriction and their needs)
#   there:   bash scripts/device_train.sh MINUTES_LEG1 MINUTES_LEG2      (carry .devdata and .whl)
#   back:    python scripts/shards.py merge OUT/leg2-0.safetensors OUT/leg2-1.safetensors RUN/generator.safetensors
#
# Environment: PY (python, default python3), OUT (where results go), RUN (the run directory, default /tmp/run).
set -euo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}
RUN=${RUN:-/tmp/run}
mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# TF32 matmuls and convolutions (tensor cores): the released GPU-trained weights were made this way.
TRAIN=(-c "import sys, torch; torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True; torch.backends.cudnn.benchmark = True; sys.argv[0] = 'neurocodec'; from neurocodec.cli import main; main()")
shard() { $PY scripts/shards.py split "$RUN/generator.safetensors" "$OUT/$1"; }  # fp16 halves, < 16 MB each
rm -rf "$RUN"
$PY "${TRAIN[@]}" train examples/default-gpu.toml --run-dir "$RUN" --init neurocodec/weights/default.safetensors \
  --minutes "${1:-4}" --quiet ${DEVICE_ARGS:-}
shard leg1
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
$PY "${TRAIN[@]}" train examples/default-gpu.toml --run-dir "$RUN" --resume --minutes "${2:-3}" --quiet ${DEVICE_ARGS:-}
shard leg2
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
