#!/usr/bin/env bash
# Continue the default model on a lent GPU machine (the `device` tool), in two legs, and send back fp16 generator
# shards after each leg (files come back at most 16 MB each) plus the run log.
#
#   here:    python scripts/build_subset.py ~/.cache/neurocodec/corpus .devdata --megabytes 25.5
#            (and Python wheels the image lacks in .whl/: librosa, soundfile, soxr, constriction and their needs)
#   there:   bash scripts/device_train.sh MINUTES_LEG1 MINUTES_LEG2      (carry .devdata and .whl)
#   back:    python scripts/merge_shards.py OUT/leg2-*.safetensors RUN/generator.safetensors
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
# TF32 matmuls/convolutions: the losses are in log space; 10-bit mantissas change nothing measurable there.
TRAIN=(-c "import sys, torch; torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True; torch.backends.cudnn.benchmark = True; sys.argv[0] = 'neurocodec'; from neurocodec.cli import main; main()")
shard() {  # shard LEG: the run's generator as two fp16 safetensors halves
  $PY - "$RUN/generator.safetensors" "$OUT/$1" <<'EOF'
import sys
from safetensors import safe_open
from safetensors.torch import save_file
with safe_open(sys.argv[1], "pt") as f:
    meta, names = f.metadata(), list(f.keys())
    tensors = {k: f.get_tensor(k) for k in names}
half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
total, part, parts = sum(v.numel() * v.element_size() for v in half.values()), {}, []
for k in names:
    part[k] = half[k]
    if sum(v.numel() * v.element_size() for v in part.values()) > total / 2:
        parts.append(part); part = {}
parts.append(part)
for i, p in enumerate(parts):
    save_file(p, f"{sys.argv[2]}-{i}.safetensors", metadata=meta)
print("shards:", [len(p) for p in parts], "step", meta.get("step"))
EOF
}
rm -rf "$RUN"
$PY "${TRAIN[@]}" train examples/default-gpu.toml --run-dir "$RUN" --init neurocodec/weights/default.safetensors \
  --minutes "${1:-4}" --quiet ${DEVICE_ARGS:-}
shard leg1
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
$PY "${TRAIN[@]}" train examples/default-gpu.toml --run-dir "$RUN" --resume --minutes "${2:-3}" --quiet ${DEVICE_ARGS:-}
shard leg2
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
