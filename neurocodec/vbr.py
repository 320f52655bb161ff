"""Quality-targeted variable rate: the fewest codebooks per segment whose reconstruction stays within a target.

The encoder runs the decoder. For every codebook count n from 1 to the model's, the codes cut to n codebooks are
decoded (level restored, at the input's rate, as a reader would) and each segment's distortion is measured against
the input: DAC's multi-scale log-mel distance (`metrics.mel_distance`, the evaluation's "mel"), per segment of
`segment_frames` frames (0.2 s). The target of `--quality Q` is the distortion that constant Q kbps gives on this
very input, averaged over its segments; each segment then gets the fewest codebooks that reach it. Segments that
are easy (pauses, sustained notes) go below Q kbps, hard ones above it, up to the model's every codebook.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import Codec
from .spectral import MelSpectrogram, log_mel
from .stream import EncodedAudio, decode_audio

WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)  # the scales of metrics.mel_distance
N_MELS = (5, 10, 20, 40, 80, 160, 320)


def segment_distances(ref: np.ndarray, est: np.ndarray, sample_rate: int, segment_samples: float,
                      segments: int) -> np.ndarray:
    """Multi-scale log-mel L1 distance per segment: ref, est `[C, T]` → `[segments]` (mean over channels, scales,
    mel bands and the STFT frames centred in the segment; `segment_samples` at `sample_rate`)."""
    n = min(ref.shape[-1], est.shape[-1])
    r = torch.from_numpy(np.ascontiguousarray(ref[:, :n], dtype=np.float32))
    e = torch.from_numpy(np.ascontiguousarray(est[:, :n], dtype=np.float32))
    total = np.zeros(segments)
    with torch.inference_mode():
        for w, m in zip(WINDOWS, N_MELS):
            mel = MelSpectrogram(sample_rate, w, m)
            diff = (log_mel(mel(r)) - log_mel(mel(e))).abs().mean(dim=(0, 1)).numpy()  # [STFT frames]
            centre = np.arange(len(diff)) * (w // 4)  # stft's hop is a quarter window, frames centred
            seg = np.minimum((centre / segment_samples).astype(np.int64), segments - 1)
            sums = np.bincount(seg, weights=diff, minlength=segments)
            counts = np.bincount(seg, minlength=segments)
            total += np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return total / len(WINDOWS)


def distortion_table(codec: Codec, audio: np.ndarray, encoded: EncodedAudio, segment_frames: int) -> np.ndarray:
    """`[n_q, segments]`: the distortion of each segment with 1 … n_q codebooks (n_q: the codes'). `audio` `[C, T]`
    is the input at `encoded.sample_rate`."""
    n_q, frames = encoded.codes.shape[1:]
    segments = -(-frames // segment_frames)
    hop = codec.hop_length * encoded.sample_rate / codec.sample_rate
    table = np.empty((n_q, segments))
    for n in range(1, n_q + 1):
        est = decode_audio(codec, encoded._replace(codes=encoded.codes[:, :n]))
        table[n - 1] = segment_distances(audio, est, encoded.sample_rate, segment_frames * hop, segments)
    return table


def choose(table: np.ndarray, reference_n_q: int) -> np.ndarray:
    """Codebooks per segment `[segments]`: the fewest whose distortion is within the target, the mean distortion of
    constant `reference_n_q` codebooks (all of them where none reaches it)."""
    target = float(table[reference_n_q - 1].mean())
    within = table <= target + 1e-9
    return np.where(within.any(axis=0), within.argmax(axis=0) + 1, table.shape[0])
