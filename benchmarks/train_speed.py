#!/usr/bin/env python3
"""Training throughput: seconds of audio trained per wall-clock second, today's path against the fast path, in one run.

    python benchmarks/train_speed.py [--config examples/default-gpu.toml] [--device cpu|cuda] [--steps 20]
                                     [--paths old,fast] [--fast-batch 128] [--json out.json]

Both paths build the same model and losses from the config, on the same device, in this one process:
  * old: fp32 (TF32 matmuls on a GPU), crops cut on the host from preloaded audio, a host sync every step
    (what the last GPU burst ran: 70 s of audio per second on an H200);
  * fast: bf16 autocast (spectra, quantizer and losses fp32), torch.compile (GPU only, unless --compile),
    crops cut on the device (`data.resident`), a host sync every `--sync-every` steps, `--fast-batch` items.
The GAN is on from the first step (the full cost). After warm-up, `--steps` steps are timed end to end; then a
few more steps are profiled with a device sync after each phase (data, generator forward, discriminators,
losses, generator backward, optimiser), which shows where the time goes (profiled steps are slower), and one
step's operator calls are counted (uncompiled paths; about one kernel launch each on a GPU). Peak memory:
the GPU allocator's peak on CUDA, the process's peak RSS on the CPU. Audio comes from examples/ (any audio
works: speed does not depend on it). On this 2-core CPU a run takes about a minute with the defaults below.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def variant(cfg, path: str, args):
    tc, dc = cfg.train, cfg.data
    tc = dataclasses.replace(tc, gan_start_step=0, eval_every=10**9, checkpoint_every=10**9,
                             checkpoint_minutes=1e9, log_every=1, sync_every=1)
    dc = dataclasses.replace(dc, train=(str(ROOT / "examples"),), valid=(str(ROOT / "examples"),), valid_clips=1,
                             preload=True, resident=False)
    if path == "fast":
        compile_ = args.compile if args.compile is not None else args.device.startswith("cuda")
        tc = dataclasses.replace(tc, precision="bf16", compile=compile_, sync_every=args.sync_every,
                                 log_every=args.sync_every, batch_size=args.fast_batch or tc.batch_size)
        dc = dataclasses.replace(dc, resident=True)
    else:  # today's path whatever the config asks for
        tc = dataclasses.replace(tc, precision="fp32", compile=False, batch_size=args.old_batch or tc.batch_size)
    return dataclasses.replace(cfg, train=tc, data=dc)


def count_operators(step) -> int:
    """Operator calls that reach the dispatcher in `step()` (forward, backward and optimiser): on a GPU each is
    about one kernel launch, what bounds a step of a model this small."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    with Count() as counter:
        step()
    return counter.calls


def measure(cfg, device: str, steps: int, warmup: int, profile_steps: int) -> dict:
    import torch

    from neurocodec.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", device=device)
        tc = cfg.train
        cuda = trainer.device.type == "cuda"

        def run(n: int, profile: dict | None = None) -> float:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n):
                trainer.train_step(sync=(trainer.step + 1) % tc.sync_every == 0 or profile is not None,
                                   profile=profile)
                trainer.step += 1
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        run(warmup)  # compilation, cudnn autotuning, allocator growth
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        seconds = run(steps)
        phases: dict[str, float] = {}
        run(profile_steps, phases)
        ops = None if tc.compile else count_operators(lambda: run(1))
        peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        audio = tc.batch_size * cfg.data.segment_seconds
        total = sum(phases.values()) or 1.0
        return {"batch": tc.batch_size, "segment_s": cfg.data.segment_seconds, "precision": tc.precision,
                "compile": tc.compile, "resident": cfg.data.resident, "sync_every": tc.sync_every,
                "steps": steps, "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 3),
                "audio_s_per_s": round(steps * audio / seconds, 2), "peak_memory_mb": round(peak),
                "notes": trainer.update.notes,
                "phases_percent": {k: round(100 * v / total, 1) for k, v in phases.items()},
                "profiled_ms_per_step": round(1000 * total / max(profile_steps, 1), 1), "operators_per_step": ops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=None,
                    help="default: examples/default-gpu.toml on a GPU, examples/default.toml (batch 8) on the CPU "
                         "(the GPU's batch of 512 does not fit this machine's memory)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--paths", default="old,fast")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on a GPU, 4 on the CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="(default 10 on a GPU, 1 on the CPU)")
    ap.add_argument("--profile-steps", type=int, default=None, help="(default 5 on a GPU, 1 on the CPU)")
    ap.add_argument("--old-batch", type=int, default=None, help="old path's batch (default: the config's)")
    ap.add_argument("--fast-batch", type=int, default=None, help="fast path's batch (default: the config's)")
    ap.add_argument("--sync-every", type=int, default=25)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile on the fast path (default: on a GPU only)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()

    import torch

    from neurocodec.config import load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    if gpu:  # what the old path ran with on the GPU
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (20 if gpu else 4)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    profile_steps = args.profile_steps if args.profile_steps is not None else (5 if gpu else 1)
    args.config = args.config or ROOT / "examples" / ("default-gpu.toml" if gpu else "default.toml")
    cfg = load_config(args.config)
    name = torch.cuda.get_device_name() if gpu else f"cpu, {torch.get_num_threads()} threads"
    results = {"config": str(args.config), "device": name, "paths": {}}
    for path in args.paths.split(","):
        results["paths"][path] = r = measure(variant(cfg, path, args), args.device, steps, warmup, profile_steps)
        print(f"{path:>5}: batch {r['batch']} x {r['segment_s']} s, {r['precision']}, compile {r['compile']}, "
              f"resident {r['resident']}, sync every {r['sync_every']}: {r['steps_per_s']} steps/s = "
              f"{r['audio_s_per_s']} s of audio per s, peak {r['peak_memory_mb']} MB", flush=True)
        print("       where the time goes (profiled): " + ", ".join(f"{k} {v}%" for k, v in r["phases_percent"].items())
              + (f"; {r['operators_per_step']} operator calls per step" if r["operators_per_step"] else ""))
        for note in r["notes"]:
            print(f"       note: {note}")
    if {"old", "fast"} <= set(results["paths"]):
        ratio = results["paths"]["fast"]["audio_s_per_s"] / results["paths"]["old"]["audio_s_per_s"]
        results["fast_over_old"] = round(ratio, 2)
        print(f"fast / old: {ratio:.2f}x audio per second ({name})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
