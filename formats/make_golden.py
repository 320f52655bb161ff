#!/usr/bin/env python3
"""Write the golden .ncd vectors of the current format version (only when the format changes on purpose).

    python formats/make_golden.py

Writes, under formats/golden/: `tiny.safetensors` (the untrained tiny test model, fixed seed, fp16, with 1.x
entropy tables and a 2.x context model fitted on its codes of the LibriVox test clip; kept if present, since every
vector names its weights and tables: a missing 2.x model is added, the rest untouched), a few .ncd files made with
it by today's writer (2.0: one with variable-rate segments), and their entries in `expected.json`: the SHA-256 of
each file, of its decoded codes (-1 where a segment coded fewer codebooks) and of its level points. Entries of older
versions are never rewritten: those files were made by the writer of their version, and tests keep decoding them.
Any change that breaks compatibility with files already written fails the tests.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from neurocodec import container, entropy, payload
from neurocodec.audio import read_audio, write_audio
from neurocodec.checkpoint import save_model
from neurocodec.config import load_config
from neurocodec.model import Codec
from neurocodec.loader import load_model
from neurocodec.stream import encode_audio

OUT = ROOT / "formats" / "golden"


def codes_sha256(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes, dtype="<i8").tobytes()).hexdigest()


def with_counts(path: Path, model, pattern: list[int]) -> None:
    """Rewrite a constant-rate 2.0 file with its segments' codebook counts cycling through `pattern`: a golden
    vector of the variable-rate layout that does not depend on how an encoder chooses the counts."""
    import io

    parsed = container.parse(path.read_bytes())
    h = parsed.header
    buf = io.BytesIO()
    writer = container.Writer(buf, h)
    segment = 0
    for chunk in parsed.chunks:
        block = payload.layout(h).decode(chunk, model.entropy)
        count = -(-chunk.frame_count // h.segment_frames)
        counts = np.array([pattern[(segment + i) % len(pattern)] for i in range(count)])
        segment += count
        top = int(counts.max())
        writer.write_chunk(entropy.encode_chunk_v2(model.entropy.coder, block.codes[:, :top], block.points, h.level,
                                                   counts, h.segment_frames), chunk.frame_count, top)
    writer.close(parsed.length)
    path.write_bytes(buf.getvalue())


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp_model = OUT / "tiny.safetensors"
    audio, sr = read_audio(ROOT / "tests" / "data" / "librivox_0930.flac")
    if not tmp_model.exists():
        torch.manual_seed(0)
        cfg = load_config(ROOT / "examples" / "tiny.toml").model
        state = Codec(cfg).state_dict()
        save_model(tmp_model, state, cfg, name="tiny-golden", dtype=torch.float16)
        codec = load_model(tmp_model, "cpu").codec
        codes = encode_audio(codec, audio, sr, level=False).codes
        tables = entropy.fit([c for c in codes], cfg.quantizer.n_q, cfg.quantizer.codebook_size, n_contexts=8)
        save_model(tmp_model, state, cfg, name="tiny-golden", dtype=torch.float16, entropy=tables)
    model = load_model(tmp_model, "cpu")
    if model.entropy.mix is None:
        from dataclasses import replace

        from neurocodec.checkpoint import read_model

        state, info = read_model(tmp_model)
        codes = encode_audio(model.codec, audio, sr).codes
        mix = entropy.fit_mix([c for c in codes], info.config.quantizer.n_q, info.config.quantizer.codebook_size,
                              groups=7)
        save_model(tmp_model, state, info.config, name=info.name, extra=info.extra,
                   entropy=replace(info.entropy, mix=mix))
        model = load_model(tmp_model, "cpu")
    version = f"{container.VERSION_MAJOR}.{container.VERSION_MINOR}"

    stereo = OUT / "stereo-44k.wav"
    left = audio[0, : int(1.3 * sr)]
    import soxr

    left = soxr.resample(left, sr, 44100).astype(np.float32)
    write_audio(stereo, np.stack([left, -0.5 * left]), 44100)
    # Version 1.0's names had no prefix; 1.1's carry the level envelope; 2.0's are the lean layout; 2.1's name
    # the decoder and carry the encoder's field.
    speech = ROOT / "tests" / "data" / "librivox_0930.flac"
    v = f"v{version}"
    cases = {
        f"{v}-speech-16k-4q": (speech, 2.4, None),
        f"{v}-speech-16k-2q": (speech, 1.2, None),
        f"{v}-stereo-44k-1q": (stereo, 1.2, None),  # kbps for the file: 0.6 per channel
        f"{v}-speech-16k-vbr": (speech, 2.4, "vbr"),  # codebooks per segment: 4, 1, 3, 2, 4, 1, … (the layout)
    }
    expected_path = OUT / "expected.json"
    expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    for name, (src, kbps, variable) in cases.items():
        if name in expected:
            continue  # written by this version's writer before: never rewritten
        path = OUT / f"{name}.ncd"
        model.encode_file(str(src), str(path), kbps=kbps, chunk_frames=60)
        if variable:
            with_counts(path, model, [4, 1, 3, 2])
        parsed = container.parse(path.read_bytes())
        assert not parsed.damage, parsed.damage
        blocks = [payload.layout(parsed.header).decode(c, model.entropy) for c in parsed.chunks]
        top = max(b.codes.shape[1] for b in blocks)  # chunks of fewer codebooks: -1 for the rest
        all_codes = np.concatenate([np.pad(b.codes, ((0, 0), (0, top - b.codes.shape[1]), (0, 0)), constant_values=-1)
                                    for b in blocks], axis=-1)
        points = np.concatenate([b.points for b in blocks], axis=-1)
        expected[name] = {"file": path.name, "version": version, "codes_sha256": codes_sha256(all_codes),
                          "shape": list(all_codes.shape), "points_sha256": codes_sha256(points),
                          "points_shape": list(points.shape), "length": parsed.length,
                          "sample_rate": parsed.header.sample_rate,
                          "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    stereo.unlink()
    expected_path.write_text(json.dumps(expected, indent=1) + "\n")
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
