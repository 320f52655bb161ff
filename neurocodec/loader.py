"""A model loaded for use: `load_model()` → `LoadedModel`, the one object the CLI, evaluation, benchmarks and Python
users code audio with.

    model = neurocodec.load_model()                      # the bundled default; or a name or .safetensors path
    encoded = model.encode(audio, sample_rate, kbps=6)   # audio [C, T] → EncodedAudio (codes [C, n_q, T_frames])
    audio = model.decode(encoded)                        # → [C, T] at the original rate and length
    model.encode_file("in.wav", "out.ncd", kbps=6)       # files (or "-" for stdin/stdout)
    model.decode_file("out.ncd", "out.wav")
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from . import container, entropy, ncdfile, vbr
from .checkpoint import CheckpointInfo, read_model, resolve_model
from .entropy import EntropyModel
from .errors import CheckpointError, ConfigError, FormatError
from .model import Codec
from .level import LevelCoder
from .stream import EncodedAudio, decode_audio, encode_audio


DEFAULT_KBPS = 6.0  # for the whole file


@dataclass(frozen=True)
class LoadedModel:
    """A codec with everything that travels with it: config, entropy tables and identity (name, weights hash)."""

    codec: Codec
    info: CheckpointInfo

    # ------------------------------------------------------------------------------------------- identity
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def config(self):
        return self.info.config

    @property
    def entropy(self) -> EntropyModel:
        return self.info.entropy

    @property
    def weights_sha256(self) -> str:
        return self.info.weights_sha256

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def n_q_for_kbps(self, kbps: float | None, channels: int = 1) -> int:
        """Codebooks per channel at `kbps` for the whole signal: `channels` share it (the largest count whose
        fixed-width rate fits). None: `DEFAULT_KBPS`, or all codebooks of a model that tops out below it. Raises
        `ConfigError` for a bitrate the model cannot meet."""
        if kbps is None:
            kbps = min(DEFAULT_KBPS, self.config.kbps(self.config.quantizer.n_q) * channels)
        try:
            return self.config.n_q_for_kbps(kbps / channels)
        except ConfigError as exc:
            if channels == 1:
                raise
            raise ConfigError(f"{kbps:g} kbps for {channels} channels: {exc} per channel") from None

    def n_q_for_quality(self, quality: float, channels: int = 1) -> int:
        """The codebooks of constant `quality` kbps, the reference of variable rate (`vbr.py`); `ConfigError` as
        `n_q_for_kbps`, naming the quality."""
        try:
            return self.n_q_for_kbps(quality, channels)
        except ConfigError as exc:
            raise ConfigError(f"quality {quality:g}: {exc}") from None

    # ------------------------------------------------------------------------------------------- .ncd headers
    def header(self, sample_rate: int, channels: int, length: int | None) -> container.Header:
        """The `.ncd` header of a file this model codes: the audio's facts and the model's identity and geometry."""
        cfg = self.config
        ids = container.ID_BYTES * 2
        # A 2.x header carries the model's id, not its name (14 bytes, 0.7 % of a 12 s file at 1.5 kbps): readers
        # find a bundled model's name from its id (`checkpoint.bundled_name`).
        return container.Header(
            sample_rate=sample_rate, channels=channels, length=length, model_name="",
            model_sha256=self.weights_sha256[:ids], entropy_sha256=self.entropy.coder.sha256[:ids],
            model_n_q=cfg.quantizer.n_q, codebook_size=cfg.quantizer.codebook_size, hop_length=cfg.hop_length,
            model_sample_rate=cfg.sample_rate, level=self.level.extension(), segment_frames=self.level.spacing_frames)

    @property
    def level(self) -> LevelCoder:
        """The level envelope this model's files carry (the audio is normalised by it before the model)."""
        return LevelCoder.for_model(self.config.sample_rate, self.config.hop_length)

    def check_header(self, header: container.Header, where: str) -> None:
        """Refuse, before decoding anything, codes made by another model or coded with other tables (a 2.x header
        carries the first 8 bytes of each identity, a 1.x header all 32)."""
        tables = self.entropy.sha256 if header.version_major == 1 else self.entropy.coder.sha256
        if not self.weights_sha256.startswith(header.model_sha256):
            raise FormatError(
                f"{where} was made by model {ncdfile.model_label(header)!r} (weights {header.model_sha256[:12]}…), but the "
                f"loaded model is {self.name!r} ({self.weights_sha256[:12]}…): pass that model with --model")
        if not tables.startswith(header.entropy_sha256):
            raise FormatError(f"{where} was coded with entropy tables {header.entropy_sha256[:12]}…, but model "
                              f"{self.name!r} carries {tables[:12]}…: pass the matching checkpoint with --model")
        own = self.header(header.sample_rate, header.channels, header.length)
        geometry = ("codebook_size", "hop_length", "model_sample_rate", "model_n_q")
        if any(getattr(header, g) != getattr(own, g) for g in geometry):
            raise FormatError(f"{where}: header codebook geometry does not match model {self.name!r}")

    # ------------------------------------------------------------------------------------------- coding
    def encode(self, audio: np.ndarray, sample_rate: int, kbps: float | None = DEFAULT_KBPS,
               level_loop: bool = True, quality: float | None = None) -> EncodedAudio:
        """audio `[C, T]` (or `[T]`) at any rate → codes `[C, n_q, T_frames]` with the original rate and length,
        and the level envelope. `kbps` is the total: the channels share it. `level_loop`: see `encode_file`.
        `quality`: variable rate (see `encode_file`); the codes are -1 where a segment keeps fewer codebooks."""
        channels = 1 if np.ndim(audio) == 1 else int(np.shape(audio)[0])
        if quality is None:
            return encode_audio(self.codec, audio, sample_rate, self.n_q_for_kbps(kbps, channels), loop=level_loop)
        audio = np.asarray(audio, np.float32).reshape(channels, -1)
        spacing = self.level.spacing_frames
        encoded, counts = vbr.encode(self.codec, audio, sample_rate, self.n_q_for_quality(quality, channels), spacing,
                                     level_loop)
        present = entropy.frame_counts(counts, spacing, encoded.codes.shape[-1])
        return encoded._replace(codes=entropy.keep_codebooks(encoded.codes, present))

    def decode(self, encoded: EncodedAudio) -> np.ndarray:
        """codes → audio `[C, length]` float32 at the original sample rate."""
        return decode_audio(self.codec, encoded)

    def encode_file(self, input: str, output: str, kbps: float | None = DEFAULT_KBPS, **options
                    ) -> ncdfile.EncodeReport:
        """Audio file (or "-", a FIFO) → `.ncd` file (or "-"), written atomically; `kbps` for the whole file.
        Options: `max_seconds`, `progress`, `level_loop`, `quality` (variable rate; see `ncdfile.encode_file`)."""
        return ncdfile.encode_file(self, input, output, kbps, **options)

    def decode_file(self, input: str, output: str, conceal: bool = False, **options) -> ncdfile.DecodeReport:
        """`.ncd` file (or "-") → audio file (WAV on "-"), written atomically; damage raises unless `conceal`.
        Options: `max_seconds`, `progress` (see `ncdfile.decode_file`)."""
        return ncdfile.decode_file(self, input, output, conceal, **options)

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, state: dict[str, torch.Tensor], info: CheckpointInfo, device: str | torch.device | None = None,
              inference: bool = True) -> "LoadedModel":
        """From a checkpoint's tensors (`checkpoint.read_model`). `device` None picks CUDA when present. Inference
        mode folds weight norm and freezes the weights; `state` itself is left untouched."""
        codec = Codec(info.config)
        try:
            codec.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"weights do not fit the config of model {info.name!r}: {str(exc).splitlines()[0]}") from None
        codec = codec.float().to(pick_device(device))
        if inference:
            codec.prepare_for_inference()
        return cls(codec, info)


def pick_device(device: str | torch.device | None) -> torch.device:
    """`device` checked: cpu, cuda[:N] that exists, or mps that exists; None picks CUDA when present."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {str(device)!r}: {str(exc).splitlines()[0]}") from None
    usable = {"cpu": True, "cuda": torch.cuda.is_available(),
              "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if dev.type not in usable:
        raise ConfigError(f"device {str(device)!r}: neurocodec runs on cpu, cuda or mps")
    if not usable[dev.type]:
        raise ConfigError(f"device {str(device)!r} is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return dev


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None,
               inference: bool = True) -> LoadedModel:
    """Load a bundled model by name (None: the default) or a checkpoint by path, verified by its hash."""
    state, info = read_model(resolve_model(name_or_path))
    return LoadedModel.build(state, info, device, inference)
