#!/usr/bin/env python3
"""Speed and memory of the default model against Opus, measured in one run.

    python benchmarks/speed.py [--threads 2] [--seconds 60] [--no-hour] [--model default] [--efforts 1,2,3,4]

Prints, for `--seconds` of real speech (the bundled example, tiled) at 24 kHz:
  * model-only encode and decode real-time factors (`Codec.encode` / `Codec.decode`, windowed, inference mode);
  * the file path users run (`LoadedModel.encode_file`: read → resample → model → entropy coding → .ncd;
    `decode_file`);
  * `opusenc --bitrate 6` and `opusdec` wall times on the same WAV, and the ratio neurocodec ÷ Opus;
  * peak RSS of a child process that encodes and decodes a 1-hour file;
  * with `--efforts`, the file encode's real-time factor at each encoder effort (`encode --effort`).
Targets (issue "Codec core"): ≥ 20x real time each way, ratio ≤ 3, peak RSS ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load(model: str):
    from neurocodec.config import load_config
    from neurocodec.entropy import uniform_model
    from neurocodec.errors import CheckpointError
    from neurocodec.loader import LoadedModel, load_model

    try:
        return load_model(model, "cpu"), "trained"
    except CheckpointError:
        # Speed does not depend on the weights: measure the default architecture when no model is installed.
        from neurocodec.checkpoint import CheckpointInfo
        from neurocodec.model import Codec

        cfg = load_config(ROOT / "examples" / "default.toml").model
        info = CheckpointInfo(cfg.name, cfg, "0" * 64, {}, uniform_model(cfg.quantizer.n_q, cfg.quantizer.codebook_size))
        return LoadedModel.build(Codec(cfg).state_dict(), info, "cpu"), "untrained (no bundled model)"


def speech(seconds: float, rate: int) -> np.ndarray:
    from neurocodec.audio import read_audio, resample

    audio, sr = read_audio(ROOT / "examples" / "speech.flac")
    audio = resample(audio.mean(axis=0, keepdims=True), sr, rate)[0]
    return np.tile(audio, int(np.ceil(seconds * rate / len(audio))))[: int(seconds * rate)].astype(np.float32)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def hour_child(model: str, threads: int) -> None:
    """Run in a child process: encode + decode 1 hour, report peak RSS (MB)."""
    import soundfile as sf
    import torch

    torch.set_num_threads(threads)
    loaded, _ = load(model)
    rate = loaded.sample_rate
    block = speech(60, rate)
    with tempfile.TemporaryDirectory() as tmp:
        wav, ncd, out = Path(tmp, "hour.flac"), Path(tmp, "hour.ncd"), Path(tmp, "out.flac")
        with sf.SoundFile(wav, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
            for _ in range(60):
                f.write(block)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        loaded.encode_file(str(wav), str(ncd), kbps=6.0)
        t1 = time.perf_counter()
        loaded.decode_file(str(ncd), str(out))
        t2 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(peak, 1), "rss_before_mb": round(base, 1),
                      "encode_x_realtime": round(3600 / (t1 - t0), 1), "decode_x_realtime": round(3600 / (t2 - t1), 1)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="default")
    ap.add_argument("--no-hour", action="store_true", help="skip the 1-hour peak-RSS measurement")
    ap.add_argument("--efforts", default="", help="comma-separated encoder efforts to time through files")
    ap.add_argument("--hour-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hour_child:
        hour_child(args.model, args.threads)
        return 0

    import soundfile as sf
    import torch

    torch.set_num_threads(args.threads)
    loaded, state = load(args.model)
    codec, info = loaded.codec, loaded.info
    rate = codec.sample_rate
    audio = speech(args.seconds, rate)
    x = torch.from_numpy(audio)[None, None]
    n_q = info.config.n_q_for_kbps(6.0)
    params = sum(p.numel() for p in codec.parameters())
    print(f"model {info.name} ({state}), {params / 1e6:.2f}M params, {args.threads} threads, "
          f"{args.seconds:g} s of speech at {rate} Hz, 6 kbps ({n_q} codebooks)")
    codec.encode(x[..., :rate], n_q)  # warm-up
    codes = codec.encode(x, n_q)
    t_enc = best_of(lambda: codec.encode(x, n_q), args.repeats)
    t_dec = best_of(lambda: codec.decode(codes), args.repeats)
    results = {"model_encode_x_realtime": args.seconds / t_enc, "model_decode_x_realtime": args.seconds / t_dec}
    with tempfile.TemporaryDirectory() as tmp:
        wav, ncd, out = Path(tmp, "in.wav"), Path(tmp, "x.ncd"), Path(tmp, "out.wav")
        sf.write(wav, audio, rate, subtype="PCM_16")
        t_fenc = best_of(lambda: loaded.encode_file(str(wav), str(ncd), kbps=6.0), args.repeats)
        t_fdec = best_of(lambda: loaded.decode_file(str(ncd), str(out)), args.repeats)
        results["file_encode_x_realtime"] = args.seconds / t_fenc
        results["file_decode_x_realtime"] = args.seconds / t_fdec
        results["ncd_kbps"] = ncd.stat().st_size * 8 / args.seconds / 1000
        for effort in (int(e) for e in args.efforts.split(",") if e.strip()):
            t = best_of(lambda: loaded.encode_file(str(wav), str(ncd), kbps=6.0, effort=effort), args.repeats)
            results[f"file_encode_effort{effort}_x_realtime"] = args.seconds / t
        if shutil.which("opusenc") and shutil.which("opusdec"):
            opus = Path(tmp, "x.opus")
            t_oenc = best_of(lambda: subprocess.run(["opusenc", "--quiet", "--bitrate", "6", str(wav), str(opus)],
                                                    check=True), args.repeats)
            t_odec = best_of(lambda: subprocess.run(["opusdec", "--quiet", str(opus), str(out)], check=True),
                             args.repeats)
            results.update({"opus_encode_x_realtime": args.seconds / t_oenc,
                            "opus_decode_x_realtime": args.seconds / t_odec,
                            "ratio_encode_vs_opus": t_fenc / t_oenc, "ratio_decode_vs_opus": t_fdec / t_odec,
                            "ratio_total_vs_opus": (t_fenc + t_fdec) / (t_oenc + t_odec)})
        else:
            print("opusenc/opusdec not found (apt-get install opus-tools): no Opus comparison")
    if not args.no_hour:
        child = subprocess.run([sys.executable, __file__, "--hour-child", "--model", args.model,
                                "--threads", str(args.threads)], capture_output=True, text=True)
        if child.returncode:
            print(child.stderr[-2000:])
        else:
            hour = json.loads(child.stdout.strip().splitlines()[-1])
            results.update({f"hour_{k}": v for k, v in hour.items()})
    for key, value in results.items():
        print(f"{key:>32}: {value:8.2f}")
    targets = [("model_encode_x_realtime", ">=", 20), ("model_decode_x_realtime", ">=", 20),
               ("ratio_total_vs_opus", "<=", 3), ("hour_peak_rss_mb", "<=", 500)]
    for key, op, bound in targets:
        if key in results:
            ok = results[key] >= bound if op == ">=" else results[key] <= bound
            print(f"target {key} {op} {bound}: {'met' if ok else 'NOT met'} ({results[key]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
