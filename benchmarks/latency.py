#!/usr/bin/env python3
"""Live coding measured, not estimated: a paced source through `neurocodec encode --live - - | neurocodec decode
--live - -`, as a sound card feeds `arecord | … | aplay`.

    python benchmarks/latency.py [--seconds 20] [--threads 1] [--eval-files 0] [--quality-only]

1. Latency. The source is the example speech (tiled) with a click (5 ms, -6 dBFS) every second, written as 16-bit
   WAV in 20 ms blocks at real-time pace once both processes have started (start-up is not counted: the source
   waits for the decoder's WAV header, which it writes only once the encoder's `.ncd` header has reached it).
   Every block's write time is kept, and every read of the decoder's output with its time; output sample n is
   input sample n (the codec does not shift time), so each sample's delay is (when it came out) - (when it went
   in). Reported: the first sample's delay (first out vs first in), each click's delay (and that the click is in
   the output within ±10 ms of its place), the median and worst over all samples.
2. Speed and CPU. The same chain fed as fast as it reads (no pacing): audio seconds / wall seconds; and for the
   paced run, the CPU seconds both processes used (their own `ru_utime + ru_stime`, from `os.wait4`) per second
   of audio: the share of a core a live call keeps busy. Each process runs `--threads` threads.
3. Memory. Each process's peak RSS on the unpaced run of `--seconds`; run it with a long `--seconds` to see that
   it does not grow with the stream.
4. Quality (`--eval-files N`): PESQ-WB at 6 kbps of the live path (`stream_encoder(live=True)`, 20 ms blocks, and
   `stream_decoder(live=True)`) against the file path on the first N speech files of the evaluation set.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "examples" / "speech.flac"
RATE = 16000
BLOCK = RATE // 50  # 20 ms


def source_audio(seconds: float) -> tuple[np.ndarray, list[int]]:
    """The example speech tiled to `seconds`, with a 5 ms click at -6 dBFS every second (a click's sample
    positions are returned)."""
    import soundfile as sf
    import soxr

    speech, sr = sf.read(SPEECH, dtype="float32")
    speech = soxr.resample(speech, sr, RATE).astype(np.float32) * 0.5
    n = int(seconds * RATE)
    x = np.tile(speech, -(-n // len(speech)))[:n]
    clicks = list(range(RATE // 2, n - RATE // 2, RATE))
    burst = 0.5 * np.sin(2 * np.pi * 2000 * np.arange(RATE // 200) / RATE).astype(np.float32)
    for c in clicks:
        x[c: c + len(burst)] += burst
    return np.clip(x, -1, 1), clicks


def wav_header() -> bytes:
    return (b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, 2 * RATE, 2, 16)
            + b"data\xff\xff\xff\xff")


def chain(threads: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    cmd = [sys.executable, "-m", "neurocodec.cli"]
    enc = subprocess.Popen(cmd + ["encode", "--live", "-q", "--threads", str(threads), "-", "-"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dec = subprocess.Popen(cmd + ["decode", "--live", "-q", "--threads", str(threads), "-", "-"],
                           stdin=enc.stdout, stdout=subprocess.PIPE)
    enc.stdout.close()
    return enc, dec


def usage(proc: subprocess.Popen) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a finished child."""
    _, status, ru = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"a live process failed (status {status})")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def run_chain(x: np.ndarray, threads: int, paced: bool) -> dict:
    pcm = np.round(x * 32767).astype("<i2").tobytes()
    enc, dec = chain(threads)
    enc.stdin.write(wav_header())
    enc.stdin.flush()
    head = dec.stdout.read(44)  # both processes are up and the chain is open
    assert len(head) == 44, "the decoder wrote no WAV header"
    written: list[tuple[int, float]] = []  # (samples written after this block, time)

    def feed():
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(x), BLOCK)):
            if paced:
                time.sleep(max(0.0, t0 + i * BLOCK / RATE - time.monotonic()))
            enc.stdin.write(pcm[2 * start: 2 * (start + BLOCK)])
            enc.stdin.flush()
            written.append((min(len(x), start + BLOCK), time.monotonic()))
        enc.stdin.close()

    thread = threading.Thread(target=feed)
    t_start = time.monotonic()
    thread.start()
    received: list[tuple[int, float]] = []  # (samples received in all, time)
    data = bytearray()
    fd = dec.stdout.fileno()
    while chunk := os.read(fd, 1 << 16):
        data += chunk
        received.append((len(data) // 2, time.monotonic()))
    wall = time.monotonic() - t_start
    thread.join()
    cpu_enc, rss_enc = usage(enc)
    cpu_dec, rss_dec = usage(dec)
    y = np.frombuffer(bytes(data[: len(data) // 2 * 2]), "<i2").astype(np.float32) / 32768
    return {"written": written, "received": received, "y": y, "wall": wall, "cpu": cpu_enc + cpu_dec,
            "rss": (rss_enc, rss_dec)}


def delays(result: dict, positions: list[int]) -> list[float]:
    """Each position's delay: when the output held sample `p` minus when the input held it."""
    w_n = np.array([n for n, _ in result["written"]])
    w_t = np.array([t for _, t in result["written"]])
    r_n = np.array([n for n, _ in result["received"]])
    r_t = np.array([t for _, t in result["received"]])
    out = []
    for p in positions:
        i, j = np.searchsorted(w_n, p + 1), np.searchsorted(r_n, p + 1)
        if i < len(w_t) and j < len(r_t):
            out.append(float(r_t[j] - w_t[i]))
    return out


def click_found(x: np.ndarray, y: np.ndarray, c: int) -> bool:
    """The click's burst is the loudest 5 ms of the output within ±50 ms of its place, within ±10 ms."""
    lo, hi = c - RATE // 20, c + RATE // 20
    env = np.convolve(y[lo:hi] ** 2, np.ones(RATE // 200), "same")
    return abs(lo + int(np.argmax(env)) - (c + RATE // 400)) <= RATE // 100


def quality(files: int, threads: int) -> dict:
    from neurocodec import metrics
    from neurocodec.audio import read_audio
    from neurocodec.eval.run import collect
    from neurocodec.loader import load_model

    model = load_model(runtime="onnx", threads=threads)
    manifest = Path("~/.cache/neurocodec/corpus/eval/manifest.json").expanduser()
    items = [it for it in collect([manifest]) if it.kind == "speech"][:files]
    live, whole = [], []
    for it in items:
        audio, sr = read_audio(it.path)
        audio = audio[:1]
        ref = audio[0]
        enc, dec = model.stream_encoder(sr, 1, live=True), model.stream_decoder(sr, 1, live=True)
        step = sr // 50
        out = [dec.push(enc.push(audio[:, s:s + step])) for s in range(0, audio.shape[-1], step)]
        y = np.concatenate(out + [dec.push(enc.flush()), dec.flush()], -1)[0, : len(ref)]
        live.append(metrics.pesq_wb(ref, y, sr))
        from neurocodec.stream import decode_audio, encode_audio

        z = decode_audio(model.net, encode_audio(model.net, audio, sr, model.n_q_for_kbps(6.0)))[0]
        whole.append(metrics.pesq_wb(ref, z, sr))
    return {"files": len(items), "pesq_live": float(np.mean(live)), "pesq_file": float(np.mean(whole)),
            "worst_file_difference": float(np.min(np.array(live) - np.array(whole)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1, help="per process (two processes)")
    ap.add_argument("--eval-files", type=int, default=0)
    ap.add_argument("--quality-only", action="store_true", help="only the quality part (4)")
    args = ap.parse_args()
    if args.quality_only:
        print(json.dumps(quality(args.eval_files, args.threads), indent=1))
        return
    x, clicks = source_audio(args.seconds)
    paced = run_chain(x, args.threads, paced=True)
    every = delays(paced, list(range(0, len(x), BLOCK)))
    click_delays = delays(paced, clicks)
    y = paced["y"]
    report = {
        "source_s": args.seconds, "threads_per_process": args.threads,
        "first_sample_delay_s": round(delays(paced, [0])[0], 3),
        "click_delay_s": {"median": round(float(np.median(click_delays)), 3),
                          "max": round(float(np.max(click_delays)), 3), "count": len(click_delays)},
        "clicks_in_place": sum(click_found(x, y, c) for c in clicks if c + RATE // 20 < len(y)),
        "sample_delay_s": {"median": round(float(np.median(every)), 3), "max": round(float(np.max(every)), 3)},
        "samples_out": int(len(y)), "samples_in": int(len(x)),
        "cpu_share_paced": round(paced["cpu"] / args.seconds, 3),
    }
    fast = run_chain(x, args.threads, paced=False)
    report["realtime_factor_unpaced"] = round(args.seconds / fast["wall"], 2)
    report["peak_rss_mb"] = {"encode": round(fast["rss"][0]), "decode": round(fast["rss"][1])}
    if args.eval_files:
        report["quality_6kbps"] = quality(args.eval_files, args.threads)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
