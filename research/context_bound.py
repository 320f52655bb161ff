#!/usr/bin/env python3
"""How far context modelling can take the default model's codes: held-out bits per code of count-based contexts
and of a large float network given far more context than any deployable coder.

    python research/context_bound.py [--train-hours 4] [--seconds 120] [--n-q 8]

Codes: the bundled model's, of level-normalised audio (what files carry), cached under
~/.cache/neurocodec/codes/ (training audio: random files of corpus/train; held out: corpus/valid). Reported, per
codebook and on average, on the validation codes (fitted on the training codes only):
  * count-based tables with 15 clustered contexts (`entropy.rangecoder.cluster`): no context, the previous frame of the same
    codebook, the same frame's coarser code, and both mixed as the shipped 2.x model mixes them;
  * a float network (embeddings of 24 context codes: every codebook of the two previous frames and every coarser
    codebook of the same frame, a 256-unit hidden layer, a softmax per codebook) trained for `--seconds` on
    the training codes: a bound on what more context buys, not a coder (floats are not bit-exact, and it is
    slow).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path("~/.cache/neurocodec/codes").expanduser()
CORPUS = Path("~/.cache/neurocodec/corpus").expanduser()


def codes(split: str, hours: float) -> list[np.ndarray]:
    """`[16, F]` code arrays of a corpus split (cached)."""
    path = CACHE / f"{split}.npz"
    if not path.exists():
        from neurocodec.audio import list_audio, read_audio
        from neurocodec.loader import load_model
        from neurocodec.stream import encode_audio

        model = load_model("default", "cpu")
        files = list_audio([str(CORPUS / split / "speech"), str(CORPUS / split / "music")])
        order = np.random.default_rng(0).permutation(len(files)) if split == "train" else range(len(files))
        out, seconds = [], 0.0
        for i in order:
            audio, sr = read_audio(files[i])
            out.append(encode_audio(model.net, audio.mean(axis=0, keepdims=True), sr, loop=False).codes[0]
                       .astype(np.int16))
            seconds += audio.shape[-1] / sr
            if seconds > hours * 3600:
                break
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, *out)
    z = np.load(path)
    return [z[k].astype(np.int64) for k in z.files if k.startswith("arr_")]


def count_based(train: list[np.ndarray], valid: list[np.ndarray], n_q: int, k: int) -> dict[str, list[float]]:
    from neurocodec import entropy

    def fit(cond, q):
        pair = np.zeros((k + 1, k))
        for s in train:
            c, t = cond(s, q)
            np.add.at(pair, (c, t), 1)
        assign = np.append(entropy.rangecoder.cluster(pair[:k], 15, 12, 0.5), 15)
        tab = np.stack([pair[assign == g].sum(0) + 0.5 for g in range(16)])
        return assign, np.log2(tab / tab.sum(1, keepdims=True))

    prev = lambda s, q: (np.concatenate([[k], s[q, :-1]]), s[q])  # noqa: E731
    coarse = lambda s, q: ((s[q - 1] if q else np.full(s.shape[1], k)), s[q])  # noqa: E731
    none = lambda s, q: (np.full(s.shape[1], k), s[q])  # noqa: E731
    out: dict[str, list[float]] = {"none": [], "previous frame": [], "coarser code": [], "both, mixed": []}
    for q in range(n_q):
        fitted = {name: fit(fn, q) for name, fn in (("none", none), ("previous frame", prev), ("coarser code", coarse))}
        fns = {"none": none, "previous frame": prev, "coarser code": coarse}
        for name in ("none", "previous frame", "coarser code", "both, mixed"):
            bits = n = 0
            for s in valid:
                if name == "both, mixed":
                    (ap, lp), (ac, lc), (_, lu) = fitted["previous frame"], fitted["coarser code"], fitted["none"]
                    cp, t = prev(s, q)
                    cc, _ = coarse(s, q)
                    logits = lp[ap[cp]] + lc[ac[cc]] - lu[15][None]
                    logits -= np.log2(np.exp2(logits).sum(1, keepdims=True))
                else:
                    a, lt = fitted[name]
                    c, t = fns[name](s, q)
                    logits = lt[a[c]]
                bits -= logits[np.arange(len(t)), t].sum()
                n += len(t)
            out[name].append(bits / n)
    return out


def network(train: list[np.ndarray], valid: list[np.ndarray], n_q: int, k: int, seconds: float) -> list[float]:
    torch.manual_seed(0)
    slots = 3 * n_q

    def build(seqs):
        xs, ys, qs = [], [], []
        for s in seqs:
            s = s[:n_q]
            t = s.shape[1]
            padded = np.concatenate([np.full((n_q, 2), k), s], 1)
            for q in range(n_q):
                same = np.where(np.arange(n_q)[:, None] < q, s, k)
                xs.append(np.concatenate([padded[:, 1:1 + t], padded[:, :t], same]).T)
                ys.append(s[q])
                qs.append(np.full(t, q))
        return torch.tensor(np.concatenate(xs)), torch.tensor(np.concatenate(ys)), torch.tensor(np.concatenate(qs))

    xt, yt, qt = build(train)
    xv, yv, qv = build(valid)

    class Net(torch.nn.Module):
        def __init__(self, dim=128, hidden=256):
            super().__init__()
            self.emb = torch.nn.Embedding(slots * (k + 1), dim)
            self.qe = torch.nn.Embedding(n_q, dim)
            self.mlp = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Linear(dim, hidden), torch.nn.GELU())
            self.out = torch.nn.Parameter(torch.randn(n_q, hidden, k) * 0.02)
            self.bias = torch.nn.Parameter(torch.zeros(n_q, k))

        def forward(self, x, q: int):
            h = self.mlp(self.emb(x + torch.arange(slots) * (k + 1)).sum(1) + self.qe.weight[q])
            return h @ self.out[q] + self.bias[q]

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    by_q = [torch.nonzero(qt == q)[:, 0] for q in range(n_q)]
    t0, step = time.time(), 0
    while time.time() - t0 < seconds:
        q = step % n_q
        i = by_q[q][torch.randint(0, len(by_q[q]), (2048,))]
        loss = torch.nn.functional.cross_entropy(net(xt[i], q), yt[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    with torch.no_grad():
        return [float(torch.nn.functional.cross_entropy(net(xv[qv == q], q), yv[qv == q])) / np.log(2)
                for q in range(n_q)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-hours", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=120.0, help="training time of the network")
    ap.add_argument("--n-q", type=int, default=8, help="codebooks (8: 6 kbps)")
    args = ap.parse_args()
    train, valid = codes("train", args.train_hours), codes("valid", 0)
    k = 1024
    rows = count_based(train, valid, args.n_q, k)
    rows["network, 24 context codes (bound)"] = network(train, valid, args.n_q, k, args.seconds)
    print(f"held-out bits per code (validation, {sum(s.shape[1] for s in valid)} frames), fixed width 10")
    for name, bits in rows.items():
        print(f"{name:36s} " + " ".join(f"{b:5.2f}" for b in bits) + f"   mean {np.mean(bits):.3f} "
              f"({np.mean(bits) / 10:.3f} of fixed width)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
