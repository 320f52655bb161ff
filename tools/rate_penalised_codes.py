#!/usr/bin/env python3
"""Rate-penalised code choice (entropy-constrained VQ) against fewer codebooks: does choosing cheaper codes buy
smaller files at equal quality?

    python tools/rate_penalised_codes.py [--lams 0.01,0.02] [--mode time] [--iterations 2] [--fit-minutes 60]
        [--limit 12] [--n-q 8] [--fewer 6,7]

Each RVQ stage normally takes the code of highest cosine similarity. Here it takes the code maximising
cos - λ · bits, bits being the code's cost under the 2.x context model (decoder unchanged, format unchanged; only
the encoder's choice moves). Modes:
  * coarse: bits given the same frame's coarser code only (every frame at once);
  * time:   bits given both contexts the coder uses (the previous frame's code of the same codebook as well),
            chosen frame by frame;
  * l2:     (λ = 0 only is meaningful) the code nearest the residual in the latent space instead of by cosine.
The tables are refitted (`entropy.fit_mix`) on the codes of `--fit-minutes` of random training audio chosen this
way, `--iterations` times (tables and choice converge together, as in ECVQ), and judged on the validation folder
at `--n-q` codebooks: bits per code under the refitted tables, log-mel distance, PESQ-WB on speech. The
reference line refits the tables on plain codes of the same training audio (λ = 0), and `--fewer` gives the
released model's plain codes at fewer codebooks, the other way to spend fewer bits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


from neurocodec import entropy, metrics
from neurocodec.audio import list_audio, read_audio
from neurocodec.eval.run import collect
from neurocodec.loader import load_model
from neurocodec.stream import decode_audio, encode_audio

CORPUS = Path("~/.cache/neurocodec/corpus").expanduser()


def chooser(rvq, mix: entropy.MixModel, lam: float, mode: str):
    """A replacement for `ResidualVectorQuantizer.encode`: z `[B, latent_dim, T]`, n_q → codes `[B, n_q, T]`."""
    g = mix.groups
    bits = [torch.from_numpy(-np.log2(mix.probs(q))).float() for q in range(mix.n_q)]  # [(g+1)^2, K] each
    coarse_map = torch.from_numpy(mix.coarse_map)
    k = rvq.codebook_size

    def encode(z: torch.Tensor, n_q: int) -> torch.Tensor:
        rvq._check_n_q(n_q)
        residual, codes = z, []
        for q, vq in enumerate(rvq.quantizers[:n_q]):
            ze = vq.in_proj(residual)
            batch, frames = ze.shape[0], ze.shape[2]
            if mode == "l2":
                table = vq.decode(torch.arange(k)[None])[0].t()  # [K, latent_dim]
                r = residual.transpose(1, 2).reshape(-1, residual.shape[1])
                score = 2 * r @ table.t() - (table * table).sum(1)[None]
            else:
                e = F.normalize(ze.transpose(1, 2).reshape(-1, ze.shape[1]), dim=1)
                score = e @ F.normalize(vq.codebook.weight, dim=1).t()
            score = score.reshape(batch, frames, k)
            coarse = torch.full((batch, frames), g) if q == 0 else coarse_map[q][codes[-1]]
            if lam == 0 or mode == "l2":
                idx = score.argmax(-1)
            elif mode == "coarse":  # the previous frame unknown: its "no context" row
                idx = (score - lam * bits[q][g * (g + 1) + coarse]).argmax(-1)
            else:
                idx = torch.empty(batch, frames, dtype=torch.long)
                for b in range(batch):
                    prev = g
                    for t in range(frames):
                        c = int((score[b, t] - lam * bits[q][prev * (g + 1) + coarse[b, t]]).argmax())
                        idx[b, t], prev = c, int(mix.prev_map[q, c])
            residual = residual - vq.decode(idx)
            codes.append(idx)
        return torch.stack(codes, 1)

    return encode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--lams", default="0.01,0.02")
    ap.add_argument("--mode", choices=("coarse", "time", "l2"), default="time")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--fit-minutes", type=float, default=60.0)
    ap.add_argument("--limit", type=int, default=12, help="validation files per kind")
    ap.add_argument("--n-q", type=int, default=8)
    ap.add_argument("--fewer", default="6,7", help="codebook counts for the plain-codes reference")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    rvq = loaded.codec.quantizer
    plain = rvq.encode

    files = list_audio([CORPUS / "train" / "speech", CORPUS / "train" / "music"])
    fitting, seconds = [], 0.0
    for i in np.random.default_rng(1).permutation(len(files)):
        audio, sr = read_audio(files[i])
        fitting.append((audio.mean(0, keepdims=True), sr))
        seconds += audio.shape[-1] / sr
        if seconds >= args.fit_minutes * 60:
            break
    valid = [(it, *read_audio(it.path)) for it in collect([CORPUS / "valid" / "speech", CORPUS / "valid" / "music"],
                                                          args.limit)]
    print(f"fitting on {seconds / 60:.1f} min of training audio; judged on {len(valid)} validation files at "
          f"{args.n_q} codebooks ({args.mode})", flush=True)

    def fit(choose) -> entropy.MixModel:
        rvq.encode = choose
        seqs = [encode_audio(loaded.net, a, sr, rvq.n_q, loop=False).codes[0] for a, sr in fitting]
        return entropy.fit_mix(seqs, rvq.n_q, rvq.codebook_size)

    def judge(choose, mix: entropy.MixModel, n_q: int) -> tuple[float, float, float]:
        rvq.encode = choose
        bits = count = 0
        mel, pesq = [], []
        for item, audio, sr in valid:
            ref = audio.mean(0).astype(np.float32)
            encoded = encode_audio(loaded.net, ref[None], sr, n_q)
            bits += entropy.mix_bits(mix, encoded.codes)
            count += encoded.codes.size
            est = decode_audio(loaded.net, encoded)[0]
            mel.append(metrics.mel_distance(ref, est, sr))
            if item.kind == "speech":
                try:
                    pesq.append(metrics.pesq_wb(ref, est, sr))
                except Exception:  # the pesq package raises on clips it finds no speech in
                    pass
        return bits / count, float(np.mean(mel)), float(np.mean(pesq))

    def show(label: str, n_q: int, result: tuple[float, float, float]) -> None:
        b, m, p = result
        print(f"| {label} | {n_q} | {b:.3f} | {b * n_q:.1f} | {m:.4f} | {p:.3f} |", flush=True)

    print("\n| codes | codebooks | bits per code | bits per frame | log-mel distance | PESQ-WB |\n|---|---|---|---|---|---|")
    for n in [int(x) for x in args.fewer.split(",") if x]:
        show("plain, released tables", n, judge(plain, loaded.entropy.coder, n))
    show("plain, released tables", args.n_q, judge(plain, loaded.entropy.coder, args.n_q))
    show("plain, tables refitted here", args.n_q, judge(plain, fit(plain), args.n_q))
    for lam in [float(x) for x in args.lams.split(",") if x]:
        mix = loaded.entropy.coder
        for it in range(args.iterations):
            t0 = time.time()
            mix = fit(chooser(rvq, mix, lam, args.mode))
            show(f"{args.mode} λ={lam:g}, refit {it + 1} ({time.time() - t0:.0f} s)", args.n_q,
                 judge(chooser(rvq, mix, lam, args.mode), mix, args.n_q))
    return 0


if __name__ == "__main__":
    sys.exit(main())
