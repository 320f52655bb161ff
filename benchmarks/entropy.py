#!/usr/bin/env python3
"""File size against fixed-width packing, per context-model design, and variable rate against constant rate.

    python benchmarks/entropy.py [--audio ~/.cache/neurocodec/corpus/eval/manifest.json] [--bitrates 1.5,3,6,12]
        [--quality 6] [--limit N]

Part 1, for each bitrate, on the same codes (those the shipped writer puts in its .ncd 2.0 files):
  * fixed width: n_q × log2(codebook_size) bits per frame;
  * per design, the payload (entropy-coded codes and level side information, real range-coder bytes) and the
    whole file (the 2.0 file's framing: header, chunk headers, index, trailer) as ratios to fixed width, and the
    speed of entropy decoding alone (audio seconds per second, one thread):
      - static:   the 1.x tables, one clustered context per code (previous frame for codebook 0, the same frame's
                  coarser code above it), what 1.x files use;
      - adaptive: per chunk, every codebook's marginal table plus counts of the codes seen so far in the chunk
                  (CABAC/PPM-style adaptation, integers);
      - mixed:    the 2.x model: two clustered experts (previous frame of the same codebook, the same frame's
                  coarser code) mixed in the log domain with integers (what 2.0 files use);
  * framing: the 2.0 file's bytes that are not payload, as a share of the file.
Part 2: `--quality Q` (variable rate) against constant Q kbps through real files: real kbps, log-mel distance and,
on speech, PESQ-WB (means over the files; the eval's metrics).
Entropy coding is lossless: part 1's designs decode to identical codes.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

ADAPT_SHIFT = 10  # an adaptive count weighs 2**10 of the marginal's 2**16 (≈ 1.6 % of the mass per occurrence)


def adaptive_rows(marginal: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The adaptive design's integer tables `[F, K]` for one codebook's codes `[F]` of a chunk: the marginal
    frequencies plus 2**ADAPT_SHIFT per earlier occurrence, renormalised to 2**16 with integers."""
    from neurocodec.entropy import TOTAL

    k = marginal.shape[-1]
    onehot = np.zeros((len(codes), k), np.int64)
    onehot[np.arange(len(codes)), codes] = 1
    counts = np.cumsum(onehot, axis=0) - onehot  # occurrences before each frame
    w = marginal[None, :] + (counts << ADAPT_SHIFT)
    freqs = 1 + (w * (TOTAL - k)) // w.sum(axis=-1, keepdims=True)
    top = np.argmax(w, axis=-1)
    freqs[np.arange(len(codes)), top] += TOTAL - freqs.sum(axis=-1)
    return freqs


def adaptive_encode(marginals: np.ndarray, codes: np.ndarray) -> bytes:
    """codes `[C, n_q, F]` → payload (codebook by codebook, frame by frame)."""
    import constriction

    from neurocodec.entropy import TOTAL

    enc = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    for c in range(codes.shape[0]):
        for q in range(codes.shape[1]):
            rows = adaptive_rows(marginals[q], codes[c, q])
            enc.encode(codes[c, q].astype(np.int32), family, rows.astype(np.float64) / TOTAL)
    return enc.get_compressed().astype("<u4").tobytes()


def adaptive_decode(marginals: np.ndarray, payload: bytes, channels: int, n_q: int, frames: int) -> np.ndarray:
    """The decoder of `adaptive_encode`: a table per symbol, updated as codes arrive."""
    import constriction

    from neurocodec.entropy import TOTAL

    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    family = constriction.stream.model.Categorical(perfect=False)
    k = marginals.shape[-1]
    out = np.empty((channels, n_q, frames), np.int64)
    for c in range(channels):
        for q in range(n_q):
            w = marginals[q].copy()
            for t in range(frames):
                freqs = 1 + (w * (TOTAL - k)) // w.sum()
                freqs[np.argmax(w)] += TOTAL - freqs.sum()
                code = int(dec.decode(family, (freqs.astype(np.float64) / TOTAL)[None])[0])
                out[c, q, t] = code
                w[code] += 1 << ADAPT_SHIFT
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--audio", nargs="+", default=[str(Path("~/.cache/neurocodec/corpus/eval/manifest.json").expanduser())])
    ap.add_argument("--bitrates", default="1.5,3,6,12")
    ap.add_argument("--quality", default="6", help="comma-separated --quality values for part 2 ('' skips it)")
    ap.add_argument("--limit", type=int, default=None, help="files per kind")
    ap.add_argument("--no-adaptive", action="store_true", help="skip the (slow) adaptive design")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from neurocodec import container, entropy
    from neurocodec.audio import read_audio, write_audio
    from neurocodec.eval.run import collect, measure
    from neurocodec.loader import load_model
    from neurocodec.ncdfile import decode_chunk

    model = load_model(args.model, "cpu")
    info = model.info
    ent = info.entropy
    items = collect(args.audio, args.limit)
    bits = math.log2(info.config.quantizer.codebook_size)
    marginals = ent.freqs[:, ent.n_contexts - 1]  # the 1.x "no context" rows: each codebook's marginal
    designs = ["static", "mixed"] + ([] if args.no_adaptive else ["adaptive"])
    print(f"model {info.name}, 1.x tables {ent.sha256[:12]}, 2.x model {ent.coder.sha256[:12]}, {len(items)} files "
          f"({', '.join(sorted({i.kind for i in items}))})")
    print("\n## Size against fixed width (payload: codes + level side information; file: with the 2.0 framing)\n")
    print("| kbps | n_q | fixed kbps | " + " | ".join(f"{d} payload | {d} file | {d} decode xRT" for d in designs)
          + " | 2.0 framing % | real kbps |")
    print("|" + "---|" * (4 + 3 * len(designs) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        refs = {}
        for item in items:
            audio, sr = read_audio(item.path)
            refs[item.id] = (audio.mean(axis=0).astype(np.float32), sr)
            write_audio(Path(tmp, f"{item.id}.wav"), refs[item.id][0][None], sr)
        for kbps in (float(x) for x in args.bitrates.split(",") if x):
            n_q = model.n_q_for_kbps(kbps)
            fixed = file_bits = seconds = 0.0
            payload = dict.fromkeys(designs, 0.0)
            decode_s = dict.fromkeys(designs, 0.0)
            for item in items:
                ncd = Path(tmp, f"{item.id}.ncd")
                model.encode_file(str(Path(tmp, f"{item.id}.wav")), str(ncd), kbps=kbps)
                data = ncd.read_bytes()
                parsed = container.parse(data)
                h = parsed.header
                seconds += parsed.length / h.sample_rate
                file_bits += len(data) * 8
                for chunk in parsed.chunks:
                    fixed += chunk.frame_count * chunk.n_q * bits
                    t0 = time.perf_counter()
                    block = decode_chunk(h, chunk, ent)
                    decode_s["mixed"] += time.perf_counter() - t0
                    payload["mixed"] += len(chunk.payload) * 8
                    codes, points = block.codes, block.points
                    side = entropy.level_bits(points, h.level)  # the level points alone (ideal)
                    static = entropy.encode_chunk(ent, codes, points, h.level)
                    payload["static"] += len(static) * 8
                    t0 = time.perf_counter()
                    got, _ = entropy.decode_chunk(ent, static, h.channels, chunk.n_q, chunk.frame_count, h.level)
                    decode_s["static"] += time.perf_counter() - t0
                    assert np.array_equal(got, codes)
                    if "adaptive" in designs:
                        adaptive = adaptive_encode(marginals, codes)
                        payload["adaptive"] += len(adaptive) * 8 + side
                        t0 = time.perf_counter()
                        got = adaptive_decode(marginals, adaptive, h.channels, chunk.n_q, chunk.frame_count)
                        decode_s["adaptive"] += time.perf_counter() - t0
                        assert np.array_equal(got, codes)
            framing = file_bits - payload["mixed"]
            cells = " | ".join(f"{payload[d] / fixed:.3f} | {(payload[d] + framing) / fixed:.3f} | "
                               f"{seconds / max(decode_s[d], 1e-9):.0f}" for d in designs)
            print(f"| {kbps:g} | {n_q} | {fixed / seconds / 1000:.2f} | {cells} | {100 * framing / file_bits:.2f} | "
                  f"{file_bits / seconds / 1000:.3f} |", flush=True)

        qualities = [float(x) for x in args.quality.split(",") if x]
        if qualities:
            print("\n## Variable rate (--quality Q) against constant Q kbps, through real files\n")
            print("| mode | kbps asked | real kbps | bits vs constant | mel distance | PESQ-WB (speech) | files |")
            print("|---|---|---|---|---|---|---|")
        for q in qualities:
            rows = {}
            for mode in ("constant", "variable"):
                real, mel, pesq = [], [], []
                for item in items:
                    src, ncd, out = (Path(tmp, f"{item.id}.{x}") for x in ("wav", "ncd", "out.wav"))
                    options = {"kbps": q} if mode == "constant" else {"kbps": None, "quality": q}
                    model.encode_file(str(src), str(ncd), **options)
                    model.decode_file(str(ncd), str(out))
                    ref, sr = refs[item.id]
                    est = read_audio(out)[0][0]
                    m = measure(ref, est, sr, item.kind)
                    real.append(ncd.stat().st_size * 8 / (len(ref) / sr) / 1000)
                    mel.append(m["mel_distance"])
                    if item.kind == "speech" and not math.isnan(m.get("pesq", math.nan)):
                        pesq.append(m["pesq"])
                rows[mode] = (np.mean(real), np.mean(mel), np.mean(pesq) if pesq else math.nan)
            for mode, (real, mel, pesq) in rows.items():
                print(f"| {mode} | {q:g} | {real:.3f} | {real / rows['constant'][0]:.3f} | {mel:.4f} | {pesq:.3f} | "
                      f"{len(items)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
