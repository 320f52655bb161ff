"""Training data: random crops from folders (or manifests) of wav/flac/ogg files.

Every batch is a pure function of (seed, step, rank): resuming at step N replays exactly the batches an
uninterrupted run would have seen, without saving any sampler state.
"""

from __future__ import annotations

import concurrent.futures
import os

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
            # Decoding (FLAC, Ogg Opus) and resampling release the GIL: every core decodes its share.
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                self.cache = list(pool.map(lambda i: self._read_file(i, 0, int(self.lengths[i])),
                                           range(len(self.files))))

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


class ResidentCrops:
    """The preloaded training audio as one tensor on the training device; crops, loudness normalisation, random
    gain and mixing are computed there (no host work, no copy per step: what a GPU step needs).

    Batches are a pure function of (seed, step, rank), as on the host path, but not the same batches (the random
    numbers come from torch on the device). Files are drawn in proportion to their length; a crop that is nearly
    silent is replaced by the next of `tries` candidates; a file shorter than the crop is zero-padded.
    """

    def __init__(self, dataset: CropDataset, device: torch.device, tries: int = 4):
        if dataset.cache is None:
            raise AudioError("data.resident needs data.preload = true")
        self.cfg = dataset.cfg
        self.device = torch.device(device)
        self.sample_rate = dataset.sample_rate
        self.tries = tries
        lengths = [len(a) for a in dataset.cache]
        self.audio = torch.from_numpy(np.concatenate(dataset.cache)).to(self.device)
        self.offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)[:-1]]), device=self.device)
        self.lengths = torch.tensor(lengths, device=self.device)
        self.weights = torch.tensor(dataset.weights, dtype=torch.float32, device=self.device)
        self.total_seconds = dataset.total_seconds

    def _generator(self, seed: int, step: int, rank: int) -> torch.Generator:
        key = (seed * 1_000_003 + step) * 4099 + rank
        return torch.Generator(device=self.device).manual_seed(key % (2**63 - 1))

    def _crops(self, n: int, samples: int, g: torch.Generator) -> torch.Tensor:
        """`[n, samples]` raw crops (zero-padded past a file's end)."""
        files = torch.multinomial(self.weights, n, replacement=True, generator=g)
        room = (self.lengths[files] - samples).clamp_min(0)
        start = (torch.rand(n, generator=g, device=self.device) * (room + 1)).long().clamp_max(room)
        pos = start[:, None] + torch.arange(samples, device=self.device)
        inside = pos < self.lengths[files][:, None]
        index = (self.offsets[files][:, None] + pos).clamp_max(len(self.audio) - 1)
        return torch.where(inside, self.audio[index], torch.zeros((), device=self.device))

    def _level(self, crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Each row to `loudness_db` ± `gain_db` dBFS RMS, then down if it would clip (as `normalize`)."""
        gain_db = (torch.rand(len(crops), generator=g, device=self.device) * 2 - 1) * self.cfg.gain_db
        target = 10 ** ((self.cfg.loudness_db + gain_db) / 20)
        rms = crops.pow(2).mean(-1).sqrt()
        crops = torch.where(rms[:, None] > 1e-6, crops * (target / rms.clamp_min(1e-6))[:, None], crops)
        peak = crops.abs().amax(-1)
        return torch.where(peak[:, None] > 0.99, crops / peak.clamp_min(1e-9)[:, None] * 0.99, crops)

    def batch(self, seed: int, step: int, rank: int, batch_size: int) -> torch.Tensor:
        """Deterministic batch `[B, 1, T]` on the device for this (seed, step, rank)."""
        g = self._generator(seed, step, rank)
        samples = int(round(self.cfg.segment_seconds * self.sample_rate))
        candidates = self._crops(batch_size * self.tries, samples, g).reshape(batch_size, self.tries, samples)
        loud = candidates.pow(2).mean(-1).sqrt() > 10 ** (-45 / 20)  # [B, tries]
        first = torch.where(loud.any(1), loud.float().argmax(1), torch.zeros_like(loud[:, 0], dtype=torch.long))
        crops = candidates[torch.arange(batch_size, device=self.device), first]
        if self.cfg.mix_probability > 0:  # a second crop 0 to 12 dB below the first, then both to a level
            crops = self._level(crops, g)
            other = self._level(self._crops(batch_size, samples, g), g)
            mix = torch.rand(batch_size, generator=g, device=self.device) < self.cfg.mix_probability
            crops = crops + mix[:, None] * other * 10 ** (-torch.rand(batch_size, 1, generator=g, device=self.device)
                                                          * 12 / 20)
        return self._level(crops, g)[:, None, :]
