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

from . import ncdfile
from .audio import check_audio
from .checkpoint import CheckpointInfo, read_model, resolve_model
from .config import DEFAULT_KBPS
from .entropy import EntropyModel
from .errors import CheckpointError, ConfigError
from .identity import ModelIdentity
from .level import LevelCoder
from .model import Codec
from .stream import EncodedAudio, decode_audio


@dataclass(frozen=True)
class LoadedModel:
    """A codec with everything that travels with it: config, entropy tables and identity (name, weights hash)."""

    codec: Codec
    info: CheckpointInfo
    identity: ModelIdentity

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

    @property
    def level(self) -> LevelCoder:
        """The level envelope this model's files carry (the audio is normalised by it before the model)."""
        return self.identity.level

    def n_q_for_kbps(self, kbps: float | None, channels: int = 1) -> int:
        """Codebooks per channel at `kbps` for the whole signal (see `ModelIdentity.n_q_for_kbps`)."""
        return self.identity.n_q_for_kbps(kbps, channels)

    # ------------------------------------------------------------------------------------------- coding
    def encode(self, audio: np.ndarray, sample_rate: int, kbps: float | None = DEFAULT_KBPS,
               level_loop: bool = True, quality: float | None = None, effort: int = 0) -> EncodedAudio:
        """audio `[C, T]` (or `[T]`; float in [-1, 1] or integer PCM, checked by `audio.check_audio`) at any rate
        (1 kHz … 768 kHz) → codes `[C, n_q, T_frames]` with the original rate and length,
        and the level envelope. `kbps` is the total: the channels share it. `level_loop`, `quality`, `effort`: see
        `ncdfile.code_blocks` (variable rate: the codes are -1 where a segment keeps fewer codebooks)."""
        audio, sample_rate = check_audio(audio, sample_rate)
        channels = audio.shape[0]
        n_q, blocks = ncdfile.code_blocks(self.codec, self.identity, lambda: [audio], sample_rate, channels, kbps,
                                          quality, level_loop, effort)
        blocks = list(blocks)
        codes = (np.concatenate([b.codes for b in blocks], axis=-1) if blocks
                 else np.zeros((channels, n_q, 0), np.int64))
        points = np.concatenate([np.zeros((channels, 0), np.int64)] + [b.points for b in blocks], axis=-1)
        return EncodedAudio(codes, sample_rate, audio.shape[-1], points, self.level)

    def decode(self, encoded: EncodedAudio) -> np.ndarray:
        """codes → audio `[C, length]` float32 at the original sample rate (checked first:
        `ModelIdentity.check_encoded`; `FormatError` for codes this model could not have made)."""
        self.identity.check_encoded(encoded.codes, encoded.sample_rate, encoded.length, encoded.points,
                                    encoded.level)
        return decode_audio(self.codec, encoded)

    def encode_file(self, input: str, output: str, kbps: float | None = DEFAULT_KBPS, **options
                    ) -> ncdfile.EncodeReport:
        """Audio file (or "-", a FIFO) → `.ncd` file (or "-"), written atomically; `kbps` for the whole file.
        Options: `max_seconds`, `progress`, `level_loop`, `quality` (variable rate), `effort` (analysis by
        synthesis; see `ncdfile.encode_file`)."""
        return ncdfile.encode_file(self.codec, self.identity, input, output, kbps, **options)

    def decode_file(self, input: str, output: str, conceal: bool = False, **options) -> ncdfile.DecodeReport:
        """`.ncd` file (or "-") → audio file (WAV on "-"), written atomically; damage raises unless `conceal`.
        Options: `max_seconds`, `progress` (see `ncdfile.decode_file`)."""
        return ncdfile.decode_file(self.codec, self.identity, input, output, conceal, **options)

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
        return cls(codec, info, ModelIdentity(info.name, info.weights_sha256, info.config, info.entropy,
                                              info.decoder_sha256, info.encoder_sha256, info.decodes))


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
