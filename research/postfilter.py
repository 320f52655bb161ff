#!/usr/bin/env python3
"""A decoder-side post-filter, first round (issue 30): does a small network steering a per-bin spectral gain on the
decoded audio lift the no-reference judge (DNSMOS, our weak one) without costing PESQ, STOI or log-mel?

    python research/postfilter.py cache [--minutes 40 --music-minutes 15]   # decode training audio once
    python research/postfilter.py train [--minutes 25] [--resume]           # codec frozen: the filter alone
    python research/postfilter.py eval [--files 40]                         # validation folder, with and without
    python research/postfilter.py classical [--files 40 --grid 1:-10,2:-20] # a classical suppressor instead

Everything runs in the normalised domain the decoder works in (the input normalised by its level envelope, as
encoding does; the decoder's output before the level is restored): the filter sees audio near -23 dBFS whatever
the file's level, and the level envelope restores the level after it, as it would in the product. Pairs come from
the training folder at 3, 6 and 12 kbps (the light runtime, level loop off: the loop only moves points); judged on
the validation folder. Nothing here is part of the product.

The filter: STFT (512 / 128 at 24 kHz), log magnitude → 1x1 conv to 192 channels → 6 residual dilated conv blocks
(kernel 3, dilations 1 2 4 8 1 2: ±0.4 s of context) → 1x1 conv to a gain per bin in (0, 2) (2·sigmoid, 1 at
initialisation: the filter starts as the identity), applied to the complex spectrum (the decoder's phase kept).
Loss: multi-scale log-mel L1 (512/64, 1024/80, 2048/128) + 0.1 x log-magnitude L1 at 512, against the original.

Round 2 (`train --gan`): the same filter, from round 1's weights, adds a least-squares adversarial term and feature
matching against a slim discriminator (the trainer's band-split complex-STFT ones at windows 2048 1024 512, 8
channels: the discriminators cost 5-25x the filter's step on the CPU), DAC's weights (reconstruction 15, adversarial
1, feature matching 2), on 0.5 s crops.
Filters are kept as CACHE/NAME.safetensors (`--name`, default `filter`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CACHE = Path("~/.cache/neurocodec/postfilter").expanduser()
CORPUS = Path("~/.cache/neurocodec/corpus").expanduser()
SR = 24000
N_FFT, HOP = 512, 128
KBPS = (3.0, 6.0, 12.0)


def pairs(paths: list[Path], minutes: float, rng: np.random.Generator, kbps_choices=KBPS) -> tuple[list, list, list]:
    """(normalised originals, decodings, kbps) at the model's rate for `minutes` of `paths` (shuffled)."""
    from neurocodec.audio import read_audio, resample
    from neurocodec.level import LevelCoder
    from neurocodec.loader import load_model
    from neurocodec.stream import decode_audio, encode_audio

    model = load_model(runtime="onnx", threads=2)
    coder = LevelCoder.for_model(SR, model.config.hop_length)
    xs, ys, rates = [], [], []
    total = 0.0
    for path in rng.permutation(np.array(paths, dtype=object)):
        if total >= minutes * 60:
            break
        audio, sr = read_audio(path)
        x = resample(audio.mean(axis=0, keepdims=True), sr, SR)
        if x.shape[-1] < SR or np.sqrt(np.mean(x ** 2)) < 1e-4:
            continue
        x, _ = coder.normalize(x.astype(np.float32))
        kbps = float(rng.choice(kbps_choices))
        n_q = model.n_q_for_kbps(kbps)
        encoded = encode_audio(model.net, x, SR, n_q, level=False)
        y = decode_audio(model.net, encoded)
        xs.append(x[0].astype(np.float16))
        ys.append(y[0].astype(np.float16))
        rates.append(kbps)
        total += x.shape[-1] / SR
    return xs, ys, rates


def cache(args) -> None:
    from neurocodec.audio import list_audio

    rng = np.random.default_rng(0)
    CACHE.mkdir(parents=True, exist_ok=True)
    for kind, minutes in (("speech", args.minutes), ("music", args.music_minutes)):
        t0 = time.perf_counter()
        xs, ys, rates = pairs(list_audio([CORPUS / "train" / kind]), minutes, rng)
        np.savez(CACHE / f"train-{kind}.npz", x=np.concatenate(xs), y=np.concatenate(ys),
                 lengths=np.array([len(x) for x in xs]), kbps=np.array(rates))
        print(f"{kind}: {sum(len(x) for x in xs) / SR / 60:.1f} min in {time.perf_counter() - t0:.0f} s")


def build():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dim: int, dilation: int):
            super().__init__()
            self.conv = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
            self.mix = nn.Conv1d(dim, dim, 1)

        def forward(self, h):
            return h + self.mix(torch.nn.functional.gelu(self.conv(h)))

    class PostFilter(nn.Module):
        def __init__(self, dim: int = 192):
            super().__init__()
            bins = N_FFT // 2 + 1
            self.inp = nn.Conv1d(bins, dim, 1)
            self.blocks = nn.Sequential(*[Block(dim, d) for d in (1, 2, 4, 8, 1, 2)])
            self.out = nn.Conv1d(dim, bins, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

        def forward(self, y):
            """y `[B, T]` decoded → filtered `[B, T]`."""
            spec = torch.stft(y, N_FFT, HOP, window=self.window, return_complex=True)
            feats = spec.abs().clamp_min(1e-5).log()
            gain = 2 * torch.sigmoid(self.out(self.blocks(self.inp(feats))))
            return torch.istft(spec * gain, N_FFT, HOP, window=self.window, length=y.shape[-1])

    return PostFilter()


def loss_fn():
    from neurocodec.spectral import MelSpectrogram, stft

    mels = [MelSpectrogram(SR, w, m) for w, m in ((512, 64), (1024, 80), (2048, 128))]

    def loss(ref, est):
        total = sum((m(est).clamp_min(1e-5).log10() - m(ref).clamp_min(1e-5).log10()).abs().mean() for m in mels)
        mag = (stft(est, 512).abs().clamp_min(1e-5).log10() - stft(ref, 512).abs().clamp_min(1e-5).log10())
        return total / len(mels) + 0.1 * mag.abs().mean()

    return loss


def discriminator():
    from neurocodec.config import DiscriminatorConfig
    from neurocodec.train.discriminators import Discriminator

    return Discriminator(DiscriminatorConfig(periods=(), stft_windows=(2048, 1024, 512), stft_channels=8))


def train(args) -> None:
    import torch
    from safetensors.torch import load_file

    from neurocodec.train.discriminators import (discriminator_loss, feature_matching_loss,
                                                 generator_adversarial_loss)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = [np.load(CACHE / f"train-{kind}.npz") for kind in ("speech", "music")]
    x = np.concatenate([d["x"] for d in data]).astype(np.float32)
    y = np.concatenate([d["y"] for d in data]).astype(np.float32)
    model, loss = build(), loss_fn()
    target = CACHE / f"{args.name}.safetensors"
    if args.resume:
        model.load_state_dict(load_file(str(args.resume)))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    disc = discriminator() if args.gan else None
    if disc is not None:
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=args.lr, betas=(0.8, 0.99))
        disc_path = CACHE / f"{args.name}-disc.safetensors"
        if disc_path.exists():
            disc.load_state_dict(load_file(str(disc_path)))
    rng = np.random.default_rng(0)
    crop = int(args.crop * SR)
    t0, step, log = time.perf_counter(), 0, []
    base = None
    while time.perf_counter() - t0 < args.minutes * 60:
        starts = rng.integers(0, len(x) - crop, args.batch)
        xb = torch.from_numpy(np.stack([x[s:s + crop] for s in starts]))
        yb = torch.from_numpy(np.stack([y[s:s + crop] for s in starts]))
        out = model(yb)
        value = loss(xb, out)
        terms = {}
        if disc is not None:
            d_loss = discriminator_loss(disc(xb[:, None]), disc(out.detach()[:, None]))
            disc_opt.zero_grad()
            d_loss.backward()
            disc_opt.step()
            real, fake = disc(xb[:, None]), disc(out[:, None])
            adv, fm = generator_adversarial_loss(fake), feature_matching_loss(real, fake)
            terms = {"disc": d_loss.item(), "adv": adv.item(), "fm": fm.item()}
            value = 15 * value + adv + 2 * fm
        opt.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if base is None:
            with torch.no_grad():
                base = float(loss(xb, yb))
        if step % args.log_every == 0:
            with torch.no_grad():
                ident = float(loss(xb, yb))
                recon = float(loss(xb, out))
            log.append({"step": step, "loss": recon, "identity": ident, **terms, "s": round(time.perf_counter() - t0)})
            print(json.dumps(log[-1]), flush=True)
            save(model, target)
            if disc is not None:
                save(disc, disc_path)
    save(model, target)
    print(f"{step} steps in {time.perf_counter() - t0:.0f} s")


def save(module, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(path)


def evaluate(args) -> None:
    import torch
    from safetensors.torch import load_file

    from neurocodec import metrics

    torch.set_num_threads(args.threads)
    model = build()
    model.load_state_dict(load_file(str(CACHE / f"{args.name}.safetensors")))
    model.eval()
    for kind in ("speech", "music"):
        xs, ys = valid_pairs(kind, args.kbps, args.files)
        rows = {"decoded": [], "filtered": []}
        for x, y in zip(xs, ys):
            with torch.no_grad():
                f = model(torch.from_numpy(y)[None])[0].numpy()
            for name, est in (("decoded", y), ("filtered", f)):
                r = {"log_mel": metrics.mel_distance(x, est, SR)}
                if kind == "speech":
                    r["pesq"] = metrics.pesq_wb(x, est, SR)
                    r["stoi"] = metrics.stoi(x, est, SR)
                    r.update(metrics.dnsmos(est, SR))
                rows[name].append(r)
        for name, rs in rows.items():
            keys = rs[0].keys()
            print(kind, name, len(rs), "files", {k: round(float(np.mean([r[k] for r in rs])), 3) for k in keys})


def suppress(y: np.ndarray, strength: float, floor_db: float, seconds: float = 1.5) -> np.ndarray:
    """A classical noise suppressor on the decoded audio `[T]` (no training): power spectrum (STFT 512 / 128),
    smoothed over time; the noise floor per bin is its minimum over `seconds` (minimum statistics, x 1.5); the
    gain is spectral subtraction, 1 - strength · noise / power, at least `floor_db`, smoothed over time."""
    from neurocodec.dsp import overlap_add, stft
    from neurocodec.limiter import running_min

    spec = stft(y[None], N_FFT, HOP)[0]  # [bins, frames]
    power = np.abs(spec) ** 2
    smooth = np.empty_like(power)
    acc = power[:, 0]
    for t in range(power.shape[1]):
        acc = 0.7 * acc + 0.3 * power[:, t]
        smooth[:, t] = acc
    width = max(1, int(seconds * SR / HOP))
    padded = np.concatenate([np.repeat(smooth[:, :1], width - 1, axis=1), smooth], axis=1)
    noise = 1.5 * np.stack([running_min(row, width) for row in padded])[:, : power.shape[1]]
    gain = np.maximum(1 - strength * noise / np.maximum(smooth, 1e-12), 10 ** (floor_db / 20))
    for t in range(1, gain.shape[1]):
        gain[:, t] = np.maximum(gain[:, t], 0.5 * gain[:, t - 1])  # release over a few frames: no musical noise
    out = overlap_add((spec * gain)[None], N_FFT, HOP, N_FFT // 2)[0]
    return out[: len(y)]


def valid_pairs(kind: str, kbps: float, count: int) -> tuple[list, list]:
    """(originals, decodings) of the `count` largest validation files of `kind`, cached under CACHE."""
    from neurocodec.audio import list_audio

    path = CACHE / f"valid-{kind}-{kbps:g}-{count}.npz"
    if not path.exists():
        files = list_audio([CORPUS / "valid" / kind])
        files = sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:count]
        xs, ys, _ = pairs(files, 1e9, np.random.default_rng(1), kbps_choices=(kbps,))
        np.savez(path, x=np.concatenate(xs), y=np.concatenate(ys), lengths=np.array([len(x) for x in xs]))
    data = np.load(path)
    cuts = np.cumsum(data["lengths"])[:-1]
    return np.split(data["x"].astype(np.float32), cuts), np.split(data["y"].astype(np.float32), cuts)


def classical(args) -> None:
    """Judge `suppress` at the settings of `--grid` (strength:floor_db,…) on cached validation pairs."""
    from neurocodec import metrics

    settings = [tuple(map(float, g.split(":"))) for g in args.grid.split(",")]
    for kind in ("speech", "music"):
        xs, ys = valid_pairs(kind, args.kbps, args.files)
        rows = {}
        for x, y in zip(xs, ys):
            for name, est in [("decoded", y)] + [(f"suppress {a:g}:{b:g}", suppress(y, a, b)) for a, b in settings]:
                r = {"log_mel": metrics.mel_distance(x, est, SR)}
                if kind == "speech":
                    r["pesq"] = metrics.pesq_wb(x, est, SR)
                    r["stoi"] = metrics.stoi(x, est, SR)
                    r.update(metrics.dnsmos(est, SR))
                rows.setdefault(name, []).append(r)
        for name, rs in rows.items():
            print(kind, name, len(rs), "files",
                  {k: round(float(np.mean([r[k] for r in rs])), 3) for k in rs[0]}, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--minutes", type=float, default=40)
    c.add_argument("--music-minutes", type=float, default=15)
    t = sub.add_parser("train")
    t.add_argument("--minutes", type=float, default=25)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--resume", type=Path, default=None, help="start from these filter weights")
    t.add_argument("--log-every", type=int, default=100)
    t.add_argument("--crop", type=float, default=1.0, help="seconds per training crop")
    t.add_argument("--gan", action="store_true", help="adversarial and feature-matching terms (round 2)")
    t.add_argument("--name", default="filter", help="keep the filter as CACHE/NAME.safetensors")
    e = sub.add_parser("eval")
    e.add_argument("--files", type=int, default=40)
    e.add_argument("--kbps", type=float, default=6.0)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--name", default="filter", help="the filter CACHE/NAME.safetensors")
    k = sub.add_parser("classical")
    k.add_argument("--files", type=int, default=40)
    k.add_argument("--kbps", type=float, default=6.0)
    k.add_argument("--grid", default="1:-10,2:-10,2:-20")
    args = ap.parse_args()
    {"cache": cache, "train": train, "eval": evaluate, "classical": classical}[args.command](args)


if __name__ == "__main__":
    main()
