#!/usr/bin/env python3
"""Variable-rate allocations side by side: which segments should give up codebooks, measured by PESQ-WB?

    python research/vbr_allocations.py [--allocations quality,count0.74,count0.74@1,…] [--files 20] [--reference 8]

A development set of 12 s speech files is made from the validation folder (its short clips joined source by
source, pauses between prompts included, like the evaluation set's 12 s excerpts; never the evaluation set). Each
file is encoded with every codebook and decoded with 1 … 16 (once, cached); then each allocation picks the
codebooks of every 0.2 s segment (`vbr.py`'s segments), the codes are encoded again with the level loop for them
and decoded as a reader would. Printed: bits (mixed context model, the segments' counts) against constant
`--reference` codebooks, log-mel distance and PESQ-WB (means over the files), and how many segments got each count.

Allocations (`NAME[@ALPHA][^P][~A][%Z][#L][&F]`; with `@ALPHA` the segment distance is relative to the segment's own
loudness plus ALPHA times the file's, `vbr.segment_distances(relative=ALPHA)`, instead of the file's alone; with
`^P` the allocation works on distance ** P (a mean target on d ** P weighs a segment's worst more, as PESQ's L6
over its split-second intervals does); with `~A` loudness the decoding adds counts A times what it misses, as
PESQ's asymmetric disturbance does, `vbr.segment_distances(asymmetry=A)`; with `%Z` a loudness difference counts
only beyond Z x the smaller loudness instead of `vbr.DEAD_ZONE` (0.25, PESQ's masking), `dead_zone=Z`; with `#L` loudness is mel power ** L
instead of `vbr.LOUDNESS_POWER` (0.3; PESQ's Zwicker loudness uses 0.23); with `&F` the mel bands reach F Hz
only, `fmax=F`, e.g. 8000, the band PESQ-WB hears, instead of half the sample rate):
  * quality     what `--quality` does: argmin distortion + λ · codebooks, mean distortion within the reference's;
  * qualityall  the same with one λ for every file (the largest whose mean distortion over all the files' segments
                stays within the reference's), as a CRF-like target calibrated once would spend: savings where they
                are cheapest across files, not within each file;
  * bits        the same with λ · bits (each segment's bits with n codebooks under the mixed model, `bit_table`):
                a fine codebook costs a fraction of a coarse one, so hard segments take more of them;
  * countR      the same argmin with λ set so that the mean count per file is R x reference (equal bits, so that
                distance measures compare at one rate);
  * pauseX      the reference everywhere except segments X dB below the file's 90th-percentile segment level,
                which get the fewest codebooks within 1.5 x the reference's distance there;
  * oracleR     PESQ itself as the distance, an upper bound on what any segment distance can reach: each
                segment's cost with n codebooks is the file's PESQ-WB drop when that segment alone is cut from the
                decoding with n codebooks into the reference's (measured for n in ORACLE_COUNTS, interpolated
                between), summed over segments as if independent; argmin cost + λ · bits with λ such that the file
                spends R x the reference's bits (`bit_table`). Costs ~20 min for 19 files on 2 cores
                (`--oracle-cache FILE` keeps them); `--oracle-shifts 0,192` averages the drops over two PESQ frame
                grids (PESQ frames are 16 ms from the file's start: drops measured on one grid partly fit that grid,
                which `--pesq-shifts 96,288`, PESQ on two other grids, exposes);
  * pesqlikeR   the same with `research/pesq_like.py`'s raw-MOS drops, a PESQ-structured disturbance computed from
                the decodings (what an encoder could run);
  * learnedR    the same with the oracle's drops predicted from what an encoder can compute (`drop_features`: the
                segment's loudness distances, level, bits) by gradient-boosted trees fitted on the other files'
                oracle drops (leave one file out): can the oracle be learnt? Needs the oracle's costs (cache).
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
from pathlib import Path

import numpy as np
import torch


from neurocodec import codes, entropy, metrics, vbr
from neurocodec.audio import list_audio, read_audio, resample
from neurocodec.loader import load_model
from neurocodec.stream import decode_audio, encode_audio

import pesq_like  # research/pesq_like.py, beside this file

VALID = Path("~/.cache/neurocodec/corpus/valid/speech").expanduser()
SECONDS = 12


def development_set(sample_rate: int, files: int) -> list[np.ndarray]:
    """12 s files `[T]` joined from the validation speech clips of each source (a random `files` of them)."""
    out = []
    for source in sorted(p for p in VALID.iterdir() if p.is_dir()):
        joined: list[np.ndarray] = []
        for f in list_audio([source]):
            audio, sr = read_audio(f)
            joined.append(resample(audio.mean(0, keepdims=True), sr, sample_rate)[0])
            if sum(map(len, joined)) >= SECONDS * sample_rate:
                out.append(np.concatenate(joined)[: SECONDS * sample_rate].astype(np.float32))
                joined = []
    pick = sorted(np.random.default_rng(0).permutation(len(out))[:files])
    return [out[i] for i in pick]


def bit_table(coder: entropy.MixModel, codes: np.ndarray, segment_frames: int) -> np.ndarray:
    """`[n_q, segments]`: the ideal bits of each segment's codes with 1 … n_q codebooks under the mixed context
    model `coder` (codes `[C, n_q, F]`, the channels summed; every code's context as if every codebook were coded at
    every frame, as constant rate codes them)."""
    channels, n_q, frames = codes.shape
    per = np.zeros((n_q, frames))
    for ch in range(channels):
        qs, rows, symbols = entropy.mix_contexts(coder, codes[ch], np.full(frames, n_q))
        bits = np.empty(len(qs))
        for q in range(n_q):
            sel = qs == q
            bits[sel] = -np.log2(coder.probs(q)[rows[sel], symbols[sel]])
        per += bits.reshape(frames, n_q).T  # coding order is frame-major
    segments = -(-frames // segment_frames)
    seg = np.arange(frames) // segment_frames
    return np.cumsum(np.stack([np.bincount(seg, weights=row, minlength=segments) for row in per]), axis=0)


def relative_levels(audio: np.ndarray, segment_samples: int, segments: int) -> np.ndarray:
    """Each segment's level `[segments]` in dB against the file's 90th-percentile segment (audio `[T]`)."""
    level = np.array([10 * np.log10(np.mean(audio[i * segment_samples:(i + 1) * segment_samples] ** 2) + 1e-12)
                      for i in range(segments)])
    return level - np.percentile(level, 90)


def at_count(table: np.ndarray, mean_count: float) -> np.ndarray:
    """argmin over n of table + λ n `[segments]`, with the smallest λ whose mean count is at most `mean_count`."""
    counts = np.broadcast_to(np.arange(1, table.shape[0] + 1.0)[:, None], table.shape)
    return at_bits(table, counts, mean_count * table.shape[1])


ORACLE_COUNTS = (1, 2, 3, 4, 5, 6, 7, 10, 12, 16)


def pesq_drops(job: tuple[np.ndarray, list[np.ndarray], int, int, int, int]) -> np.ndarray:
    """`[n_q, segments]`: PESQ-WB of the reference decoding minus that with one segment cut from the decoding with
    n codebooks (0 for the reference; interpolated between ORACLE_COUNTS). job: the input `[T]` and the decodings
    with 1 … n_q codebooks `[T]`, both at 16 kHz and aligned, the reference count, samples per segment, segments,
    and the samples cut from the start of both before PESQ (which moves PESQ's frame grid against the segments)."""
    from pesq import pesq
    ref, ests, reference, seg, segments, shift = job
    base = pesq(16000, ref[shift:], ests[reference - 1][shift:], "wb")
    known = sorted(set(ORACLE_COUNTS) | {reference})
    drops = np.zeros((len(known), segments))
    for i, n in enumerate(known):
        for s in range(segments if n != reference else 0):
            est = ests[reference - 1].copy()
            est[s * seg:(s + 1) * seg] = ests[n - 1][s * seg:(s + 1) * seg]
            drops[i, s] = base - pesq(16000, ref[shift:], est[shift:], "wb")
    counts = np.arange(1, len(ests) + 1)
    return np.stack([np.interp(counts, known, drops[:, s]) for s in range(segments)], axis=1)


def drop_features(table: np.ndarray, level: np.ndarray, bits: np.ndarray, reference: int) -> np.ndarray:
    """`[n_q, segments, 8]`: per segment and count n, what an encoder can compute: n, its loudness distance
    (`table` `[n_q, segments]`) and that minus the reference's, one codebook's minus the reference's, the level
    against the file's loud segments (`level` `[segments]`), log distance ratio to the reference, bits beyond the
    reference's (`bits` `[n_q, segments]`), the reference's distance."""
    n_q, segments = table.shape
    ref = table[reference - 1]
    return np.stack([np.broadcast_to(np.arange(1.0, n_q + 1)[:, None], table.shape), table, table - ref,
                     np.broadcast_to(table[0] - ref, table.shape), np.broadcast_to(level, table.shape),
                     np.log((table + 1e-4) / (ref + 1e-4)), bits - bits[reference - 1],
                     np.broadcast_to(ref, table.shape)], axis=-1)


def learned_drops(features: list[np.ndarray], oracle: list[np.ndarray], reference: int) -> list[np.ndarray]:
    """Each file's oracle drops `[n_q, segments]` predicted from its `drop_features` by gradient-boosted trees
    fitted on the other files' (leave one file out); never smaller with fewer codebooks, 0 at the reference."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # scikit-learn comes with librosa

    out = []
    for i, f in enumerate(features):
        x = np.concatenate([g.reshape(-1, g.shape[-1]) for j, g in enumerate(features) if j != i])
        y = np.concatenate([d.reshape(-1) for j, d in enumerate(oracle) if j != i])
        trees = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                              min_samples_leaf=40, random_state=0).fit(x, y)
        pred = trees.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2])
        pred = np.maximum.accumulate(pred[::-1], axis=0)[::-1]
        out.append(pred - pred[reference - 1])
    return out


def at_bits(table: np.ndarray, bits: np.ndarray, budget: float) -> np.ndarray:
    """argmin over n of table + λ · bits `[segments]` (both `[n_q, segments]`), with the smallest λ (bisection)
    whose bits are at most `budget`."""
    def pick(lam: float) -> np.ndarray:
        return (table + lam * bits).argmin(axis=0) + 1

    def spent(n: np.ndarray) -> float:
        return float(bits[n - 1, np.arange(bits.shape[1])].sum())

    low, high = 0.0, 1.0
    while spent(pick(high)) > budget and high < 1e6:
        high *= 2
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (low, mid) if spent(pick(mid)) <= budget else (mid, high)
    return pick(high)


def choose_all(tables: list[np.ndarray], reference: int) -> list[np.ndarray]:
    """`vbr.choose` with one λ for every file: its argmin is per segment, so on the files' tables `[n_q, segments]`
    side by side it is the largest λ whose mean distortion over all the files' segments is within that of constant
    `reference` codebooks; split back per file."""
    counts = vbr.choose(np.concatenate(tables, axis=1), reference)
    return np.split(counts, np.cumsum([t.shape[1] for t in tables])[:-1])


def allocate(name: str, table: np.ndarray, audio: np.ndarray, reference: int, segment_samples: int,
             bits: np.ndarray, drops: np.ndarray | None = None) -> np.ndarray:
    if name == "constant":
        return np.full(table.shape[1], reference)
    if name == "quality":
        return vbr.choose(table, reference)
    if name == "bits":
        return vbr.choose(table, reference, bits)
    if name.startswith("count"):
        ratio = float(name[5:])
        return at_count(table, ratio * reference)
    if name.startswith(("oracle", "pesqlike", "learned")):
        return at_bits(drops, bits, float(re.sub(r"^[a-z]+", "", name)) * float(bits[reference - 1].sum()))
    if name.startswith("pause"):
        below = float(name[5:])
        out = np.full(table.shape[1], reference)
        for s in np.nonzero(relative_levels(audio, segment_samples, table.shape[1]) < -below)[0]:
            ok = np.nonzero(table[:, s] <= 1.5 * table[reference - 1, s])[0]
            out[s] = ok[0] + 1 if len(ok) else reference
        return out
    raise SystemExit(f"unknown allocation {name!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--allocations", default="quality,bits")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--reference", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--splice", action="store_true", help="also PESQ of each segment cut from the decoding with its "
                    "own count alone (are count changes within a file free?)")
    ap.add_argument("--quiet-gain", type=float, default=1.0, help="with --splice: scale the segments 30 dB below "
                    "the file's 90th-percentile segment by this (does a quieter pause please PESQ?)")
    ap.add_argument("--oracle-cache", type=Path, default=None, help="npz file keeping the oracle's PESQ drops "
                    "(made when missing)")
    ap.add_argument("--oracle-shifts", default="0", help="oracle: samples (at the model's rate) cut from the start "
                    "of both signals before PESQ, comma-separated: the drops are averaged over these frame grids")
    ap.add_argument("--pesq-shifts", default="0", help="the PESQ-WB reported is the mean over these cuts from the "
                    "start of both signals (samples at the model's rate): PESQ frames 16 ms from the start, so an "
                    "allocation tuned to one grid shows here")
    ap.add_argument("--segment-frames", type=int, default=0, help="frames per segment (0: the model's level "
                    "spacing, what `--quality` uses)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    codec, mix, sr = loaded.codec, loaded.entropy.coder, loaded.sample_rate
    spacing = args.segment_frames or loaded.level.spacing_frames
    segment_samples = spacing * codec.hop_length
    files = development_set(sr, args.files)
    print(f"{len(files)} development files of {SECONDS} s", flush=True)
    decoded, bit_tables = [], []
    for audio in files:
        every = encode_audio(loaded.net, audio[None], sr, codec.n_q)
        bit_tables.append(bit_table(mix, every.codes, spacing))
        decoded.append([decode_audio(loaded.net, every._replace(codes=every.codes[:, :n])) for n in range(1, codec.n_q + 1)])

    pesq_shifts = [int(x) for x in args.pesq_shifts.split(",")]
    drops: dict[str, list[np.ndarray]] = {}  # per-segment costs by allocation kind, one `[n_q, segments]` per file
    if any(a.startswith("pesqlike") for a in args.allocations.split(",")):
        drops["pesqlike"] = [
            pesq_like.segment_drops(resample(audio[None], sr, 16000)[0], [resample(e[:1], sr, 16000)[0] for e in ests],
                                    args.reference, segment_samples * 16000 / sr, t.shape[1])
            for audio, ests, t in zip(files, decoded, bit_tables)]
    if any(a.startswith(("oracle", "learned")) for a in args.allocations.split(",")):
        shifts = [int(x) for x in args.oracle_shifts.split(",")]
        cache = args.oracle_cache
        kept: dict[str, np.ndarray] = dict(np.load(cache)) if cache is not None and cache.exists() else {}
        made_for = np.array([len(files), args.reference, spacing, float(sum(f.sum() for f in files))])
        if kept and not np.array_equal(kept.pop("made_for", None), made_for):
            raise SystemExit(f"{cache} was made for other files, reference or segments: delete it or name another")
        seg16 = segment_samples * 16000 // sr
        jobs, keys = [], []
        for i, (audio, ests, t) in enumerate(zip(files, decoded, bit_tables)):
            missing = [x for x in shifts if f"f{i}_s{x}" not in kept]
            if missing:
                ref16 = resample(audio[None], sr, 16000)[0]
                e16 = [resample(e[:1], sr, 16000)[0][: len(ref16)] for e in ests]
                for x in missing:
                    jobs.append((ref16[: len(e16[0])], e16, args.reference, seg16, t.shape[1], x * 16000 // sr))
                    keys.append(f"f{i}_s{x}")
        if jobs:
            with multiprocessing.get_context("spawn").Pool(args.threads) as pool:
                kept.update(zip(keys, pool.map(pesq_drops, jobs)))
            if cache is not None:
                np.savez(cache, made_for=made_for, **kept)
        drops["oracle"] = [np.mean([kept[f"f{i}_s{x}"] for x in shifts], axis=0) for i in range(len(files))]
        print(f"oracle (PESQ frame grid moved by {args.oracle_shifts} samples, drops averaged): PESQ-WB drops per "
              f"segment summed over segments, mean per file, with n codebooks everywhere: "
              + " ".join(f"{n}:{np.mean([d[n - 1].sum() for d in drops['oracle']]):.3f}" for n in ORACLE_COUNTS),
              flush=True)
    if any(a.startswith("learned") for a in args.allocations.split(",")):
        features = [drop_features(np.stack([vbr.segment_distances(audio[None], e, sr, segment_samples, t.shape[1])
                                            for e in ests]),
                                  relative_levels(audio, segment_samples, t.shape[1]), t, args.reference)
                    for audio, ests, t in zip(files, decoded, bit_tables)]
        drops["learned"] = learned_drops(features, drops["oracle"], args.reference)
        from scipy.stats import spearmanr  # scipy comes with librosa

        rise = np.concatenate([f[..., 2] for f in features], axis=1)  # distance minus the reference's
        oracle = np.concatenate(drops["oracle"], axis=1)
        print("per segment, the oracle's drop with n codebooks against the loudness distance's rise (Spearman; mean "
              "drop): " + " ".join(f"{n}: {spearmanr(rise[n - 1], oracle[n - 1])[0]:.2f} ({oracle[n - 1].mean():.4f})"
                                   for n in (1, 2, 4, 6, 7)), flush=True)

    print(f"\nwhere constant {args.reference} codebooks spend their bits (segment level against its file's "
          f"90th-percentile segment):\n\n| level | segments | bits | bits per segment with 1 / 4 / 8 / 16 codebooks "
          f"|\n|---|---|---|---|")
    rel = np.concatenate([relative_levels(a, segment_samples, t.shape[1]) for a, t in zip(files, bit_tables)])
    cost = np.concatenate(bit_tables, axis=1)
    for lo, hi in ((-np.inf, -40), (-40, -30), (-30, -20), (-20, -10), (-10, np.inf)):
        m = (rel >= lo) & (rel < hi)
        per = " / ".join(f"{cost[k - 1, m].mean():.0f}" for k in (1, 4, 8, codec.n_q))
        print(f"| {lo:g} … {hi:g} dB | {m.mean():.3f} | {cost[args.reference - 1, m].sum() / cost[args.reference - 1].sum():.3f}"
              f" | {per} |", flush=True)

    def spliced(audio: np.ndarray, ests: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
        """`[T]`: each segment from the decoding with its count's codebooks everywhere (envelope for all)."""
        quiet = relative_levels(audio, segment_samples, len(counts)) < -30
        out = np.zeros(ests[0].shape[-1], np.float32)
        for s, n in enumerate(counts):
            lo, hi = s * segment_samples, (s + 1) * segment_samples
            out[lo:hi] = ests[n - 1][0, lo:hi] * (args.quiet_gain if quiet[s] else 1.0)
        return out

    def run(name: str) -> tuple[float, float, float, np.ndarray]:
        m = re.fullmatch(r"([a-z]+[0-9.]*)(?:@([0-9.]+))?(?:\^([0-9.]+))?(?:~([0-9.]+))?(?:%([0-9.]+))?(?:#([0-9.]+))?(?:&([0-9.]+))?", name)
        if not m:
            raise SystemExit(f"bad allocation {name!r}")
        alloc, alpha, power, asym = m.group(1), m.group(2), float(m.group(3) or 1), float(m.group(4) or 1)
        dead = float(m.group(5)) if m.group(5) else vbr.DEAD_ZONE
        loudness = float(m.group(6)) if m.group(6) else vbr.LOUDNESS_POWER
        fmax = float(m.group(7)) if m.group(7) else None
        bits, mel, pesq, used, pesq_spliced = 0.0, [], [], [], []
        kind = re.sub(r"[0-9.]+$", "", alloc)
        tables = []
        for audio, ests in zip(files, decoded):
            frames = -(-len(audio) // codec.hop_length)
            segments = -(-frames // spacing)
            tables.append(np.stack([vbr.segment_distances(audio[None], e, sr, segment_samples, segments,
                                                          float(alpha) if alpha else None, asym, dead, loudness, fmax)
                                    for e in ests]) ** power)
        if alloc == "qualityall":
            allocations = choose_all(tables, args.reference)
        else:
            allocations = [allocate(alloc, table, audio, args.reference, segment_samples, cost,
                                    drops[kind][i] if kind in drops else None)
                           for i, (table, audio, cost) in enumerate(zip(tables, files, bit_tables))]
        for audio, ests, counts in zip(files, decoded, allocations):
            x = audio[None]
            frames = -(-len(audio) // codec.hop_length)
            present = codes.frame_counts(counts, spacing, frames)
            encoded = encode_audio(loaded.net, x, sr, codec.n_q, present=present)
            bits += entropy.mix_bits(mix, encoded.codes, counts, spacing)
            est = decode_audio(loaded.net, encoded._replace(codes=codes.keep_codebooks(encoded.codes, present)))[0]
            mel.append(metrics.mel_distance(audio, est, sr))
            pesq.append(np.mean([metrics.pesq_wb(audio[x:], est[x:], sr) for x in pesq_shifts]))
            used.append(counts)
            if args.splice:
                pesq_spliced.append(metrics.pesq_wb(audio, spliced(audio, ests, counts), sr))
        if args.splice:
            print(f"  {name}: spliced PESQ-WB {np.mean(pesq_spliced):.4f} (quiet segments x {args.quiet_gain:g}), "
                  f"decoded {np.mean(pesq):.4f}", flush=True)
        histogram = np.bincount(np.concatenate(used), minlength=codec.n_q + 1)[1:]
        return bits, float(np.mean(mel)), float(np.mean(pesq)), histogram

    bits0, mel0, pesq0, _ = run("constant")
    print(f"\n| allocation | bits vs constant {args.reference} | log-mel distance | PESQ-WB | segments per codebook "
          f"count (1 … {codec.n_q}) |\n|---|---|---|---|---|")
    print(f"| constant {args.reference} | 1.000 | {mel0:.4f} | {pesq0:.3f} | |", flush=True)
    for name in args.allocations.split(","):
        bits, mel, pesq, hist = run(name)
        print(f"| {name} | {bits / bits0:.3f} | {mel:.4f} ({mel - mel0:+.4f}) | {pesq:.3f} ({pesq - pesq0:+.3f}) | "
              f"{' '.join(map(str, hist.tolist()))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
