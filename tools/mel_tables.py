#!/usr/bin/env python3
"""Write `neurocodec/mel_tables.npz`: librosa's Slaney mel filterbanks for the sample rates audio commonly has and
the (window, bands) pairs the encoder's own measures use (`vbr.SCALES`, `search.SCALES`).

    python tools/mel_tables.py

`dsp.mel_filters` takes a filterbank from this table when it holds one and asks librosa otherwise: `encode
--quality` and `--effort` then run without importing librosa (numba, llvmlite and scipy.signal: about 130 MB of
resident memory). `tests/test_losses.py` checks that every table equals librosa's filterbank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
SCALES = ((512, 64), (1024, 80), (2048, 128))
OUT = Path(__file__).resolve().parent.parent / "neurocodec" / "mel_tables.npz"


def key(sample_rate: int, n_fft: int, n_mels: int) -> str:
    return f"{sample_rate}_{n_fft}_{n_mels}"


def main() -> None:
    import librosa

    tables = {key(sr, w, m): librosa.filters.mel(sr=sr, n_fft=w, n_mels=m, fmin=0.0, fmax=None, htk=False,
                                                 norm="slaney").astype(np.float32)
              for sr in RATES for w, m in SCALES}
    np.savez_compressed(OUT, **tables)
    print(f"{OUT}: {len(tables)} filterbanks, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
