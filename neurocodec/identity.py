"""Header ↔ model, in one place: the `.ncd` header a model writes, the check that a file's codes are a model's own,
the level envelope's parameters as the header states them, and the codebooks a bitrate buys.

A `ModelIdentity` is built once per loaded model (`loader.py`) from plain values; the file codec (`ncdfile.py`)
takes it and never calls back into the loader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import container, payload
from .config import ModelConfig
from .entropy import LOG_UNIT, EntropyModel
from .errors import FormatError
from .level import LevelCoder
from .ncdinfo import model_label


def level_extension(coder: LevelCoder) -> container.LevelExtension:
    """What an `.ncd` header says of a level envelope (the decoder needs nothing else)."""
    return container.LevelExtension(coder.spacing_frames, coder.target_db, coder.floor_db, coder.step_db,
                                    coder.levels)


def level_coder(ext: container.LevelExtension, hop_length: int) -> LevelCoder:
    """The decoder's level coder for a header's envelope."""
    return LevelCoder(hop_length, ext.spacing_frames, ext.target_db, ext.floor_db, ext.step_db, ext.levels)


@dataclass(frozen=True)
class ModelIdentity:
    """What files say of a model: its name, codebook geometry (`config`), entropy tables and identities.

    A file names the decoder it needs (`decoder_sha256`: the quantizer's and decoder's weights, since `.ncd` 2.1)
    and, in an optional field, the encoder that made it; files of 2.0 and 1.x name every weight
    (`weights_sha256`). A model decodes files that name its decoder, its own weights, or the weights of an earlier
    release with the same decoder (`decodes`), so a better encoder orphans no file."""

    name: str
    weights_sha256: str
    config: ModelConfig
    tables: EntropyModel
    decoder_sha256: str = ""
    encoder_sha256: str = ""
    decodes: tuple[str, ...] = ()

    @property
    def accepted_ids(self) -> tuple[str, ...]:
        """Every identity a file's model id may be a prefix of."""
        return tuple(i for i in (self.decoder_sha256, self.weights_sha256, *self.decodes) if i)

    def code_prices(self) -> np.ndarray:
        """Bits per code `[n_q, codebook_size]` under the 2.x context model's marginal tables (no context): what the
        encoder's search charges a code (all zero for uniform tables)."""
        return -self.tables.coder.marginal.astype(np.float64) / LOG_UNIT

    @property
    def level(self) -> LevelCoder:
        """The level envelope this model's files carry (the audio is normalised by it before the model)."""
        return LevelCoder.for_model(self.config.sample_rate, self.config.hop_length)

    def n_q_for_kbps(self, kbps: float | None, channels: int = 1) -> int:
        """See `ModelConfig.n_q_for_total_kbps`."""
        return self.config.n_q_for_total_kbps(kbps, channels)

    def n_q_for_quality(self, quality: float, channels: int = 1) -> int:
        """See `ModelConfig.n_q_for_quality`."""
        return self.config.n_q_for_quality(quality, channels)

    def header(self, sample_rate: int, channels: int, length: int | None, effort: int = 0) -> container.Header:
        """The `.ncd` header of a file this model codes: the audio's facts, the decoder it needs, the model's
        geometry, and which encoder made it at which `effort`."""
        cfg = self.config
        ids = container.ID_BYTES * 2
        # A 2.x header carries the model's id, not its name (14 bytes, 0.7 % of a 12 s file at 1.5 kbps): readers
        # find a bundled model's name from its id (`checkpoint.bundled_name`).
        encoder = (container.encoder_extension(self.encoder_sha256, effort),) if self.encoder_sha256 else ()
        return container.Header(
            sample_rate=sample_rate, channels=channels, length=length, model_name="",
            model_sha256=(self.decoder_sha256 or self.weights_sha256)[:ids],
            entropy_sha256=self.tables.coder.sha256[:ids], model_n_q=cfg.quantizer.n_q,
            codebook_size=cfg.quantizer.codebook_size, hop_length=cfg.hop_length, model_sample_rate=cfg.sample_rate,
            extensions=encoder, level=level_extension(self.level), segment_frames=self.level.spacing_frames)

    def check(self, header: container.Header, where: str) -> None:
        """Refuse, before decoding anything, codes made by another model or coded with other tables (a 2.x header
        carries the first 8 bytes of each identity, a 1.x header all 32)."""
        tables = payload.layout(header).tables_sha256(self.tables)
        if not any(i.startswith(header.model_sha256) for i in self.accepted_ids):
            raise FormatError(
                f"{where} was made by model {model_label(header)!r} (id {header.model_sha256[:12]}…), but the "
                f"loaded model is {self.name!r} (decoder {self.accepted_ids[0][:12]}…): pass that model with --model")
        if not tables.startswith(header.entropy_sha256):
            raise FormatError(f"{where} was coded with entropy tables {header.entropy_sha256[:12]}…, but model "
                              f"{self.name!r} carries {tables[:12]}…: pass the matching checkpoint with --model")
        own = self.header(header.sample_rate, header.channels, header.length)
        geometry = ("codebook_size", "hop_length", "model_sample_rate", "model_n_q")
        if any(getattr(header, g) != getattr(own, g) for g in geometry):
            raise FormatError(f"{where}: header codebook geometry does not match model {self.name!r}")

    def check_codes(self, codes: np.ndarray, points: np.ndarray | None = None) -> None:
        """Codes `[C, n_q, k]` of integers in -1 … codebook_size - 1 (-1: a codebook the frame does not keep), 1 …
        255 channels, at most the model's codebooks; `points` (a stream's next level points), if given, integers
        `[C, j]` in the envelope's range. `FormatError` otherwise."""
        from .limits import MAX_CHANNELS

        cfg = self.config
        if codes.dtype.kind not in "iu" or codes.ndim != 3:
            raise FormatError(f"codes of type {codes.dtype} and shape {codes.shape}: give integers [C, n_q, T_frames]")
        if not 1 <= codes.shape[0] <= MAX_CHANNELS or not 1 <= codes.shape[1] <= cfg.quantizer.n_q:
            raise FormatError(f"codes of shape {codes.shape}: 1 to {MAX_CHANNELS} channels of 1 to "
                              f"{cfg.quantizer.n_q} codebooks")
        if codes.size and (codes.min() < -1 or codes.max() >= cfg.quantizer.codebook_size):
            raise FormatError(f"codes from {codes.min()} to {codes.max()}: model {self.name!r} has codes 0 to "
                              f"{cfg.quantizer.codebook_size - 1} (and -1 for a codebook a frame does not keep)")
        if points is not None and (points.dtype.kind not in "iu" or points.ndim != 2 or
                                   points.shape[0] != codes.shape[0] or
                                   (points.size and (points.min() < 0 or points.max() >= self.level.levels))):
            raise FormatError(f"level points of type {points.dtype} and shape {points.shape}: give integers 0 to "
                              f"{self.level.levels - 1} of shape [{codes.shape[0]}, j]")

    def check_encoded(self, codes, sample_rate, length: int, points, level: LevelCoder | None) -> None:
        """Refuse, at the Python API, codes this model's encoder could not have made (the file reader's checks, for
        an `EncodedAudio` built by hand): codes `[C, n_q, T_frames]` of integers in -1 … codebook_size - 1 (-1: a
        codebook the frame does not keep), 1 … 255 channels, at most the model's codebooks, a length the frames
        can describe, and a level envelope that is None or this model's, with points `[C, ceil(T_frames /
        spacing)]` in range."""
        from .limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

        cfg = self.config
        codes = np.asarray(codes)
        self.check_codes(codes)
        channels, n_q, frames = codes.shape
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or \
                not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise FormatError(f"sample rate {sample_rate!r}: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
        most = -(-frames * cfg.hop_length * int(sample_rate) // cfg.sample_rate) + 1
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 <= length <= most:
            raise FormatError(f"length {length!r}: {frames} frames describe at most {most} samples")
        if level is None:
            return
        if level != self.level:
            raise FormatError(f"level envelope {level} is not model {self.name!r}'s ({self.level})")
        points = np.asarray(points) if points is not None else None
        want = (channels, level.points(frames))
        if points is None or points.dtype.kind not in "iu" or points.shape != want or \
                (points.size and (points.min() < 0 or points.max() >= level.levels)):
            raise FormatError(f"level points of shape {None if points is None else points.shape}: give integers "
                              f"0 to {level.levels - 1} of shape {want}")

