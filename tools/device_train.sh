#!/usr/bin/env bash
# One burst on a lent GPU machine (the `device` tool): measure, train, send the whole training state back.
#
#   here:    python tools/build_subset.py ~/.cache/neurocodec/corpus DIR --megabytes 26.3 --codec opus \
#              --opus-level 0.85 --slice N       (about 77 min of Ogg Opus at 46 kbps; each slice other excerpts)
#            (and Python wheels the image lacks in .whl/: librosa, soundfile, soxr, constriction and their needs)
#            a previous burst's state, if any: .devstate/state-*.safetensors (tools/shards.py pack-state RUN …)
#   there:   A call carries the repository (36 MB; 11 MB without the released weights, which need not travel when
#            a state's generator does: move them aside here for the calls, and back after) and what `carry` names,
#            64 MiB in all, so a burst's data and state travel in separate calls; ignored paths a call carried stay
#            on the warm machine for the next call (it goes back 30 s after a call, so each call follows at once).
#            The sequence of the H200 burst of the eleventh period (116 min of data, 54 MB of state, 12.5 minutes of
#            device time in all):
#            call 1 (carry .devdata with one slice of 43 MB, .whl):
#                   TRAIN=0 BENCH=0 bash tools/device_train.sh   installs the wheels in /tmp/site (43 s, start included);
#            call 2 (carry .devstate; .devdata and /tmp/site are still there):
#                   MINUTES=9.2 BENCH=0 bash tools/device_train.sh   (timeout_s = MINUTES x 60 + 30; 7.1 min trained)
#            call 3, with what device time is left (CONTINUE=1: resume the run the last call left in RUN, no shards):
#                   CONTINUE=1 MINUTES=4.5 BENCH=0 bash tools/device_train.sh
#            Two data slices go the older way: call 1 with STASH=1 keeps its data part and state shards in KEEP,
#            call 2 carries the next part and the other shards and trains on all of them.
#            With no state (none packed, or a fresh machine lost it), training starts from the released weights
#            (--init) with fresh discriminators and optimiser, the learning rate ramped (train.warmup_steps).
#   back:    python tools/shards.py unpack-state OUT/state-*.safetensors RUN  (RUN: the run packed, ~/.cache/neurocodec/runs/cpu-init since the twelfth period)
#            cat OUT/log.jsonl >> RUN/log.jsonl   (the curve across bursts: each burst logs from its own start)
#            then judge RUN/generator.safetensors on the validation folder; continue on the CPU with --resume
#
# Steps: (1) benchmarks/train_speed.py, old path against fast path on this GPU (about a minute, uncompiled),
# (2) training on the fast path (examples/default-gpu.toml) until two minutes before MINUTES run out,
# continuing .devstate when it is there (discriminators, optimiser moments and schedule included), else starting
# from the released weights with fresh discriminators, (3) the state packed into 16 MiB shards under OUT with the
# run log and the benchmark's JSON (at most 8 files come back).
# Environment: PY (python, default python3), OUT (where results go), RUN (the run folder, default /tmp/run),
# MINUTES (the whole command's budget, default 9.5), BENCH (0 skips the benchmark), TRAIN (0 skips training),
# CONFIG (default examples/default-gpu.toml), INIT (weights a new run starts from, default the released model;
# empty: none), STATE (the folder of a previous burst's packed state, default .devstate), KEEP (where data parts
# and state shards wait for the next call on a warm machine, default /tmp/keep), STASH (1: keep this call's there),
# BENCH_SECONDS (the benchmark's limit, default 120), BENCH_ARGS (more benchmark options, e.g. --compile),
# BATCH (another batch size than the config's, e.g. 128), FALLBACK_BATCH (the batch of a second try when the
# first leaves no checkpoint, default 128; empty: no second try), CONTINUE (1: resume RUN as an earlier call on
# this warm machine left it, instead of unpacking STATE).
set -euo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}
RUN=${RUN:-/tmp/run}
MINUTES=${MINUTES:-9.5}
CONFIG=${CONFIG:-examples/default-gpu.toml}
INIT=${INIT-neurocodec/weights/default.safetensors}
STATE=${STATE:-.devstate}
KEEP=${KEEP:-/tmp/keep}
START=$(date +%s)
# The same config at another batch size ($2), written to /tmp (data paths in configs are relative to the working
# folder); prints its path.
at_batch() {
  local out=/tmp/$(basename "${1%.toml}")-b$2.toml
  sed "s/^batch_size = .*/batch_size = $2/" "$1" > "$out" && echo "$out"
}
if [ -n "${BATCH:-}" ]; then CONFIG=$(at_batch "$CONFIG" "$BATCH"); fi
mkdir -p "$OUT"
# Data and state in parts: this call's are kept for the next call (STASH=1), or join those earlier calls kept.
if [ "${STASH:-0}" = 1 ]; then
  mkdir -p "$KEEP/state"
  if [ -d .devdata/train ]; then cp -r .devdata/train "$KEEP/train-$START"; fi
  cp "$STATE"/state-*.safetensors "$KEEP/state/" 2>/dev/null || true
else
  if ls -d "$KEEP"/train-* >/dev/null 2>&1; then
    for part in "$KEEP"/train-*; do mv "$part" ".devdata/train/$(basename "$part")"; done
  fi
  if ls "$KEEP"/state/state-*.safetensors >/dev/null 2>&1; then
    cp "$STATE"/state-*.safetensors "$KEEP/state/" 2>/dev/null || true
    STATE=$KEEP/state
  fi
fi
echo "training data: $(find .devdata/train -type f | wc -l) files, $(du -sm .devdata/train | cut -f1) MB"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
# Wheels an earlier call installed on this warm machine serve this one too (a call need not carry them twice).
if [ -d /tmp/site ] && [ -z "${NO_WHEELS:-}" ]; then export PYTHONPATH=/tmp/site:$PWD; else export PYTHONPATH=$PWD; fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "${BENCH:-1}" != 0 ]; then
  # Bounded (BENCH_SECONDS), and its lines reach the log as they come: the first burst's benchmark, piped through
  # a block-buffered grep, spent its 4.5 minutes compiling and returned nothing. BENCH_ARGS: e.g. --compile.
  timeout "${BENCH_SECONDS:-120}" $PY benchmarks/train_speed.py --device cuda --config "$CONFIG" --steps 16 \
    --warmup 6 --profile-steps 3 --old-batch 32 --no-compile ${BENCH_ARGS:-} --json "$OUT/train_speed.json" 2>&1 \
    | grep --line-buffered -v Warning | tee "$OUT/console.log" || true
fi
if [ "${TRAIN:-1}" = 0 ]; then
  ls -l "$OUT"
  exit 0
fi
if ls "$STATE"/state-*.safetensors >/dev/null 2>&1; then
  FROM=(--resume)
elif [ -n "$INIT" ]; then
  FROM=(--init "$INIT")
else
  FROM=()
fi
TRAIN_CMD=(-c "import sys, torch; torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True; torch.backends.cudnn.benchmark = True; sys.argv[0] = 'neurocodec'; from neurocodec.cli import main; main()")
# minutes of the budget left for training: the budget, less what has gone, less 2 min for loading the data, the
# last evaluation, packing and copying
left() { $PY -c "print($MINUTES - ($(date +%s) - $START) / 60 - 2.0)"; }
# Train CONFIG ($1) in RUN (a fresh folder, or the unpacked state) for what is left. Should training overrun, an
# interrupt at the budget less 40 s makes it save its state (the trainer checkpoints on KeyboardInterrupt), so
# that the state is packed and comes back all the same.
train_for_the_rest() {
  if [ "${CONTINUE:-0}" = 1 ] && [ -f "$RUN/state.safetensors" ]; then
    FROM=(--resume)
  else
    rm -rf "$RUN"
    if [ "${FROM[0]:-}" = --resume ]; then $PY tools/shards.py unpack-state "$STATE"/state-*.safetensors "$RUN"; fi
  fi
  touch "$OUT/.started"  # a checkpoint newer than this: the run trained
  local minutes hard
  minutes=$($PY -c "print(max(0.5, $(left)))")
  hard=$($PY -c "print(max(60, int($MINUTES * 60 - ($(date +%s) - $START) - 40)))")
  echo "training $1 for $minutes minutes (interrupted after $hard s at the latest)"
  timeout --signal=INT "$hard" $PY "${TRAIN_CMD[@]}" train "$1" --run-dir "$RUN" "${FROM[@]}" --minutes "$minutes" \
    --quiet ${DEVICE_ARGS:-} 2>&1 | tee -a "$OUT/console.log" || echo "training stopped with status $?"
}
train_for_the_rest "$CONFIG"
# The config's batch (512) was never measured on a GPU: should the run die before its first checkpoint (out of
# memory, say), the rest of the budget trains at the measured batch (FALLBACK_BATCH, default 128) instead of
# coming back empty.
if [ ! "$RUN/state.safetensors" -nt "$OUT/.started" ] && [ -n "${FALLBACK_BATCH-128}" ] && \
    $PY -c "import sys; sys.exit(0 if $(left) >= 1.0 else 1)"; then
  echo "no checkpoint: training again at batch ${FALLBACK_BATCH:-128}"
  train_for_the_rest "$(at_batch "$CONFIG" "${FALLBACK_BATCH:-128}")"
fi
$PY tools/shards.py pack-state "$RUN" "$OUT/state"
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
rm -f "$OUT/.started"
ls -l "$OUT"
