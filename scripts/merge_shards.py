#!/usr/bin/env python3
"""Join the fp16 generator shards that scripts/device_train.sh sends back into one model checkpoint.

    python scripts/merge_shards.py OUT/leg2-0.safetensors OUT/leg2-1.safetensors RUN/generator.safetensors

The result is an ordinary model file (`neurocodec encode --model …`, `neurocodec eval -m …`,
scripts/release_model.py); the shards carry the run's model config and step in their metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from neurocodec.checkpoint import model_config_from_json, save_model  # noqa: E402


def main() -> int:
    *shards, out = sys.argv[1:]
    if not shards:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    state, meta = {}, {}
    for path in shards:
        with safe_open(path, "pt") as f:
            meta = f.metadata()
            state.update({k: f.get_tensor(k).float() for k in f.keys()})
    config = model_config_from_json(meta["config"])
    digest = save_model(out, state, config, extra={"step": meta.get("step", "?")})
    print(f"{out}: {len(state)} tensors, step {meta.get('step')}, weights sha256 {digest[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
