#!/usr/bin/env python3
"""How much context does a live window need? (docs/history.md: encoder look-ahead 0 / 6 / 12 / 24 frames, decoder
15 / 32; and whether the envelope's point may look at what has arrived of the next segment.) The live path (`neurocodec/live.py`: causal level envelope, a segment
at a time, the encoder's right context cut to LOOKAHEAD frames, the decoder's to DECODER frames) against the file
path, PESQ-WB at 6 kbps on validation speech (never the evaluation set).

    python research/live_context.py [--files 20] [--lookahead 0,3,6,12,24] [--decoder 15]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CORPUS = Path("~/.cache/neurocodec/corpus").expanduser()


def live_roundtrip(model, audio, sr, n_q, lookahead, decoder_lookahead):
    from neurocodec.live import LiveEncoder
    from neurocodec.stream import StreamDecoder

    level = model.identity.level
    enc = LiveEncoder(model.net, sr, audio.shape[0], n_q, level, lookahead)
    dec = StreamDecoder(model.net, sr, audio.shape[-1], audio.shape[0], level.spacing_frames, level,
                        lookahead=decoder_lookahead)
    out = []
    step = sr // 50  # 20 ms blocks, as a sound card gives them
    for start in range(0, audio.shape[-1], step):
        for block in enc.push(audio[:, start:start + step]):
            out.append(dec.push(block))
    for block in enc.flush():
        out.append(dec.push(block))
    out.append(dec.flush())
    return np.concatenate(out, axis=-1)


def main() -> None:
    from neurocodec import metrics
    from neurocodec.audio import read_audio
    from neurocodec.loader import load_model
    from neurocodec.stream import decode_audio, encode_audio

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--lookahead", default="0,3,6,12,24")
    ap.add_argument("--decoder", default="15")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    model = load_model(runtime="onnx", threads=args.threads)
    n_q = model.n_q_for_kbps(6.0)
    files = sorted((CORPUS / "valid" / "speech").rglob("*.flac"))[:: 7][: args.files]
    rows = {}
    for path in files:
        audio, sr = read_audio(path)
        audio = audio[:1]
        ref = audio[0]
        whole = decode_audio(model.net, encode_audio(model.net, audio, sr, n_q))[0]
        rows.setdefault("file path", []).append(metrics.pesq_wb(ref, whole, sr))
        open_loop = decode_audio(model.net, encode_audio(model.net, audio, sr, n_q, loop=False))[0]
        rows.setdefault("file path, no level loop", []).append(metrics.pesq_wb(ref, open_loop, sr))
        for la in map(int, args.lookahead.split(",")):
            for dl in map(int, args.decoder.split(",")):
                live = live_roundtrip(model, audio, sr, n_q, la, dl)[0]
                rows.setdefault(f"live enc {la} dec {dl}", []).append(metrics.pesq_wb(ref, live, sr))
        print(path.name, {k: round(v[-1], 3) for k, v in rows.items()}, flush=True)
    for k, v in rows.items():
        print(f"{k}: PESQ-WB {np.mean(v):.3f} ({len(v)} files)")


if __name__ == "__main__":
    main()
