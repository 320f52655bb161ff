"""Training data: random crops from folders (or manifests) of wav/flac/ogg files.

Every batch is a pure function of (seed, step, rank): resuming at step N replays exactly the batches an
uninterrupted run would have seen, without saving any sampler state.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr
import torch

from ..audio import list_audio
from ..config import DataConfig
from ..errors import AudioError


def normalize(audio: np.ndarray, loudness_db: float) -> np.ndarray:
    """Scale to an RMS of `loudness_db` dBFS, then down if that would clip."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < 1e-6:
        return audio
    audio = audio * (10 ** (loudness_db / 20) / rms)
    peak = float(np.abs(audio).max())
    return audio / peak * 0.99 if peak > 0.99 else audio


class CropDataset:
    """Random crops, resampled to `sample_rate`, mono, loudness-normalised."""

    def __init__(self, sources, sample_rate: int, cfg: DataConfig):
        self.files = list_audio(sources)
        if not self.files:
            raise AudioError(f"no audio files found in {', '.join(map(str, sources)) or '(no sources configured)'}")
        self.sample_rate = sample_rate
        self.cfg = cfg
        infos = []  # (length in samples, sample rate) of each file
        for f in self.files:
            try:
                info = sf.info(str(f))
            except (sf.LibsndfileError, RuntimeError):
                raise AudioError(f"{f}: not a readable audio file") from None
            infos.append((info.frames, info.samplerate))
        self.lengths = np.array([i[0] for i in infos], dtype=np.int64)
        self.rates = np.array([i[1] for i in infos], dtype=np.int64)
        seconds = self.lengths / self.rates
        self.weights = seconds / seconds.sum()
        self.total_seconds = float(seconds.sum())
        self.cache: list[np.ndarray] | None = None
        if cfg.preload:
            self.cache = [self._read_file(i, 0, int(self.lengths[i])) for i in range(len(self.files))]

    def _read_file(self, index: int, start: int, samples: int) -> np.ndarray:
        """Mono float32 `[T]` at the model rate, from `samples` samples at the file's rate starting at `start`."""
        rate = int(self.rates[index])
        with sf.SoundFile(str(self.files[index])) as f:
            f.seek(min(start, max(0, f.frames - 1)))
            audio = f.read(samples, dtype="float32", always_2d=True).mean(axis=1)
        if rate != self.sample_rate:
            audio = soxr.resample(audio, rate, self.sample_rate, quality="HQ").astype(np.float32)
        return audio

    def read(self, index: int, start_seconds: float, seconds: float) -> np.ndarray:
        """Mono float32 `[T]` at the model rate, `round(seconds * sample_rate)` samples (zero-padded if short)."""
        n = int(round(seconds * self.sample_rate))
        if self.cache is not None:
            start = int(start_seconds * self.sample_rate)
            audio = self.cache[index][start:start + n]
        else:
            rate = int(self.rates[index])
            audio = self._read_file(index, int(start_seconds * rate), int(np.ceil(seconds * rate)) + 1)
        return np.pad(audio[:n], (0, max(0, n - len(audio))))

    def crop(self, rng: np.random.Generator, seconds: float, tries: int = 8) -> np.ndarray:
        """A random crop; retries a few times to avoid near-silent crops (they teach nothing)."""
        for _ in range(tries):
            i = int(rng.choice(len(self.files), p=self.weights))
            duration = self.lengths[i] / self.rates[i]
            start = float(rng.uniform(0, max(0.0, duration - seconds)))
            audio = self.read(i, start, seconds)
            if np.sqrt(np.mean(audio**2)) > 10 ** (-45 / 20):
                break
        gain_db = float(rng.uniform(-self.cfg.gain_db, self.cfg.gain_db))
        return normalize(audio, self.cfg.loudness_db + gain_db).astype(np.float32)

    def batch(self, seed: int, step: int, rank: int, batch_size: int) -> torch.Tensor:
        """Deterministic batch `[B, 1, T]` for this (seed, step, rank)."""
        rng = np.random.default_rng([seed, step, rank])
        crops = [self.crop(rng, self.cfg.segment_seconds) for _ in range(batch_size)]
        return torch.from_numpy(np.stack(crops))[:, None, :]

    def validation_clips(self, n: int, seconds: float) -> torch.Tensor:
        """A fixed set `[n, 1, T]`: evenly spaced files, a centred crop of each (no randomness)."""
        order = np.linspace(0, len(self.files) - 1, num=min(n, len(self.files))).round().astype(int)
        clips = []
        for i in order:
            duration = self.lengths[i] / self.rates[i]
            audio = self.read(int(i), max(0.0, (duration - seconds) / 2), seconds)
            clips.append(normalize(audio, self.cfg.loudness_db).astype(np.float32))
        return torch.from_numpy(np.stack(clips))[:, None, :]
