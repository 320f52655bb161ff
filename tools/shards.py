#!/usr/bin/env python3
"""Split a model checkpoint into fp16 halves small enough to come back from a lent GPU machine (16 MB a file),
and join such halves into one model checkpoint again.

    python tools/shards.py split RUN/generator.safetensors OUT/leg1      # OUT/leg1-0.safetensors, OUT/leg1-1…
    python tools/shards.py merge OUT/leg1-0.safetensors OUT/leg1-1.safetensors RUN/leg1.safetensors

The whole training state (discriminators, optimiser moments, schedule) travels with `tools/travel.py`:

    python tools/shards.py pack-state RUN OUT/state          # OUT/state-0.safetensors … (16 MiB each)
    python tools/shards.py unpack-state OUT/state-*.safetensors RUN2   # then: neurocodec train --resume -o RUN2

The joined file is an ordinary model checkpoint (`neurocodec encode --model …`, `neurocodec eval -m …`,
tools/release_model.py) with the run's model config and step; its weights are the fp16 values.
"""

from __future__ import annotations

import json
import sys

from safetensors import safe_open
from safetensors.torch import save_file


from neurocodec.checkpoint import model_config_from_json, read_model, save_model
from neurocodec.config import to_dict


def split(checkpoint: str, prefix: str, parts: int = 2) -> list[str]:
    state, info = read_model(checkpoint)
    meta = {"config": json.dumps(to_dict(info.config)), "step": info.extra.get("step", "?")}
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    total = sum(v.numel() * v.element_size() for v in half.values())
    groups: list[dict] = [{}]
    size = 0
    for name, tensor in half.items():
        if size >= total * len(groups) / parts and len(groups) < parts:
            groups.append({})
        groups[-1][name] = tensor
        size += tensor.numel() * tensor.element_size()
    paths = []
    for i, group in enumerate(groups):
        paths.append(f"{prefix}-{i}.safetensors")
        save_file(group, paths[-1], metadata=meta)
    return paths


def merge(shards: list[str], out: str) -> str:
    state, meta = {}, {}
    for path in shards:
        with safe_open(path, "pt") as f:
            meta = f.metadata()
            state.update({k: f.get_tensor(k).float() for k in f.keys()})
    return save_model(out, state, model_config_from_json(meta["config"]), extra={"step": meta.get("step", "?")})


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "split":
        for path in split(args[1], args[2]):
            print(path)
        return 0
    if len(args) == 3 and args[0] == "pack-state":
        from travel import pack

        for path in pack(args[1], args[2]):
            print(f"{path} {path.stat().st_size}")
        return 0
    if len(args) >= 3 and args[0] == "unpack-state":
        from travel import unpack

        print(unpack(args[1:-1], args[-1]))
        return 0
    if len(args) >= 3 and args[0] == "merge":
        digest = merge(args[1:-1], args[-1])
        print(f"{args[-1]}: weights sha256 {digest[:12]}")
        return 0
    print("usage: shards.py split CHECKPOINT PREFIX | merge SHARD... OUT | pack-state RUN PREFIX | "
          "unpack-state SHARD... RUN", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
