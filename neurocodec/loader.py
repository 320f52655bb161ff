"""A model loaded for use: `load_model()` → `LoadedModel`, the one object the CLI, evaluation, benchmarks and Python
users code audio with.

    model = neurocodec.load_model()                      # the bundled default; or a name or .safetensors path
    encoded = model.encode(audio, sample_rate, kbps=6)   # audio [C, T] → EncodedAudio (codes [C, n_q, T_frames])
    audio = model.decode(encoded)                        # → [C, T] at the original rate and length
    model.encode_file("in.wav", "out.ncd", kbps=6)       # files (or "-" for stdin/stdout)
    model.decode_file("out.ncd", "out.wav")

Two runtimes run the same model: ONNX Runtime (`onnxnet.py`, no torch: the default on the CPU) and torch (any
device; training, analysis by synthesis, and architectures the light runtime does not run). `runtime="auto"`
picks ONNX Runtime for the CPU when it is installed and can run the model, else torch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import ncdfile
from .audio import check_audio
from .checkpoint import CheckpointInfo, read_model, resolve_model
from .config import DEFAULT_KBPS
from .entropy import EntropyModel
from .codes import CodeBlock, join_blocks
from .errors import AudioError, CheckpointError, ConfigError, FormatError, MissingDependencyError
from .identity import ModelIdentity
from .level import LevelCoder
from .stream import EncodedAudio, decode_audio
from .windows import DEFAULT_WINDOW_FRAMES, Net

if TYPE_CHECKING:
    import torch

    from .model import Codec

RUNTIMES = ("auto", "onnx", "torch")


@dataclass(frozen=True)
class LoadedModel:
    """A model's networks (`net`: ONNX Runtime or torch) with everything that travels with them: config, entropy
    tables and identity (name, weights hash). `path`: the checkpoint, from which the light runtime builds the
    torch model when something needs it (`codec`, `effort` > 0)."""

    net: Net
    info: CheckpointInfo
    identity: ModelIdentity
    path: os.PathLike | None = None

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
        return self.net.sample_rate

    @property
    def runtime(self) -> str:
        """"onnx" or "torch": what runs the networks."""
        return "torch" if hasattr(self.net, "codec") else "onnx"

    @functools.cached_property
    def codec(self) -> "Codec":
        """The torch model (built from the checkpoint's arrays on the CPU when the light runtime runs this one)."""
        if hasattr(self.net, "codec"):
            return self.net.codec
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("this needs torch (pip install torch); the light runtime runs without "
                                         "it") from None
        state, info = read_model(self.path)
        if info.weights_sha256 != self.info.weights_sha256:
            raise CheckpointError(f"{self.path}: changed on disk since it was loaded")
        return _build_codec(state, info, torch.device("cpu"), True)

    def net_for(self, effort: int) -> Net:
        """The net to encode with: analysis by synthesis (`effort` > 0) runs on torch, whatever loaded the model."""
        if not effort or hasattr(self.net, "with_search"):
            return self.net
        codec = self.codec  # MissingDependencyError without torch
        from .model.codec import TorchNet

        return TorchNet(codec)

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
        n_q, blocks = ncdfile.code_blocks(self.net_for(effort), self.identity, lambda: [audio], sample_rate,
                                          channels, kbps, quality, level_loop, effort)
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
        return decode_audio(self.net, encoded)

    def stream_encoder(self, sample_rate: int, channels: int = 1, kbps: float | None = DEFAULT_KBPS,
                       level_loop: bool = True, live: bool = False) -> "EncoderStream":
        """Encoding as a push stream: `push(audio [C, n])` → a `CodeBlock` (codes `[C, n_q, k]`, level points
        `[C, j]`; often empty), `flush()` at the end. The same codes and points as `encode` of the whole signal,
        whatever the block sizes; memory bounded by the compute window (10 s) and the level look-ahead (2 s).
        `live=True`: codes leave 0.2 s at a time, about 0.3 s after their audio (`live.py`: a causal level
        envelope, no closed loop, shorter look-ahead; the same codes whatever the block sizes too)."""
        check_audio(np.zeros((channels, 0), np.float32), sample_rate)
        n_q = self.identity.n_q_for_kbps(kbps, channels)
        if live:
            from .live import LiveEncoder

            return EncoderStream(LiveEncoder(self.net, sample_rate, channels, n_q, self.level), sample_rate,
                                 channels)
        from .stream import StreamEncoder

        return EncoderStream(StreamEncoder(self.net, sample_rate, channels, n_q, level=self.level,
                                           loop=level_loop), sample_rate, channels)

    def stream_decoder(self, sample_rate: int, channels: int = 1, live: bool = False) -> "DecoderStream":
        """Decoding as a push stream: `push(CodeBlock)` (from `stream_encoder`, or codes `[C, n_q, k]` with
        points) → audio `[C, n]` at `sample_rate` (often empty), `flush()` at the end; the same audio as `decode`
        of the whole, whatever the block sizes. `live=True`: a segment's audio leaves as soon as the next
        segment's codes arrive (a shorter look-ahead than the file path's: `live.py`)."""
        check_audio(np.zeros((channels, 0), np.float32), sample_rate)
        from .live import live_window
        from .stream import StreamDecoder

        window, lookahead = live_window(self.level.spacing_frames) if live else (DEFAULT_WINDOW_FRAMES, None)
        return DecoderStream(StreamDecoder(self.net, sample_rate, None, channels, window, self.level,
                                           lookahead=lookahead), self.identity, channels)

    def encode_file(self, input: str, output: str, kbps: float | None = DEFAULT_KBPS, **options
                    ) -> ncdfile.EncodeReport:
        """Audio file (or "-", a FIFO) → `.ncd` file (or "-"), written atomically; `kbps` for the whole file.
        Options: `max_seconds`, `progress`, `level_loop`, `quality` (variable rate), `effort` (analysis by
        synthesis; see `ncdfile.encode_file`)."""
        return ncdfile.encode_file(self.net_for(options.get("effort", 0)), self.identity, input, output, kbps,
                                   **options)

    def encode_live(self, input: str, output: str, kbps: float | None = DEFAULT_KBPS, **options
                    ) -> ncdfile.EncodeReport:
        """WAV stream or file (or "-") → `.ncd` stream (or file), chunk by chunk as the audio arrives
        (`ncdfile.encode_live`; options `max_seconds`, `progress`, `lookahead`)."""
        return ncdfile.encode_live(self.net, self.identity, input, output, kbps, **options)

    def decode_live(self, input: str, output: str, **options) -> ncdfile.DecodeReport:
        """`.ncd` stream or file (or "-") → audio (WAV on a stream) as the chunks arrive (`ncdfile.decode_live`;
        options `max_seconds`, `progress`)."""
        return ncdfile.decode_live(self.net, self.identity, input, output, **options)

    def decode_file(self, input: str, output: str, conceal: bool = False, **options) -> ncdfile.DecodeReport:
        """`.ncd` file (or "-") → audio file (WAV on "-"), written atomically; damage raises unless `conceal`.
        Options: `max_seconds`, `progress` (see `ncdfile.decode_file`)."""
        return ncdfile.decode_file(self.net, self.identity, input, output, conceal, **options)

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, state: dict[str, "torch.Tensor"], info: CheckpointInfo,
              device: "str | torch.device | None" = None, inference: bool = True) -> "LoadedModel":
        """On torch, from a checkpoint's tensors (`checkpoint.read_model`). `device` None picks CUDA when present.
        Inference mode folds weight norm and freezes the weights; `state` itself is left untouched."""
        from .model.codec import TorchNet

        codec = _build_codec(state, info, pick_device(device), inference)
        return cls(TorchNet(codec), info, _identity(info))

    @classmethod
    def build_light(cls, tensors: dict[str, np.ndarray], info: CheckpointInfo, threads: int = 0,
                    path: os.PathLike | None = None) -> "LoadedModel":
        """On ONNX Runtime (`onnxnet.OnnxNet`), from a checkpoint's arrays (`read_model(numpy=True)`) read from
        `path` (where the torch model comes from if something needs it)."""
        from .onnxnet import OnnxNet

        return cls(OnnxNet(info.config, tensors, threads), info, _identity(info), path)


class EncoderStream:
    """`LoadedModel.stream_encoder`: each block checked as `encode` checks arrays, the code blocks joined."""

    def __init__(self, stream, sample_rate: int, channels: int):
        self.stream, self.sample_rate, self.channels, self.samples = stream, sample_rate, channels, 0

    def push(self, audio: np.ndarray) -> CodeBlock:
        audio, _ = check_audio(audio, self.sample_rate, first_sample=self.samples)
        if audio.shape[0] != self.channels:
            raise AudioError(f"audio: {audio.shape[0]} channels pushed into a stream of {self.channels}")
        self.samples += audio.shape[-1]
        return join_blocks(self.stream.push(audio), self.channels, self.stream.n_q)

    def flush(self) -> CodeBlock:
        return join_blocks(self.stream.flush(), self.channels, self.stream.n_q)


class DecoderStream:
    """`LoadedModel.stream_decoder`: each block checked against the model (`ModelIdentity.check_codes`)."""

    def __init__(self, stream, identity: ModelIdentity, channels: int):
        self.stream, self.identity, self.channels = stream, identity, channels

    def push(self, block: CodeBlock) -> np.ndarray:
        codes, points = np.asarray(block.codes), np.asarray(block.points if block.points is not None else
                                                            np.zeros((self.channels, 0), np.int64))
        if codes.ndim != 3 or codes.shape[0] != self.channels:
            raise FormatError(f"codes of shape {codes.shape}: give [{self.channels}, n_q, frames]")
        self.identity.check_codes(codes, points)
        return self.stream.push(CodeBlock(codes, points))

    def flush(self) -> np.ndarray:
        return self.stream.flush()


def _identity(info: CheckpointInfo) -> ModelIdentity:
    return ModelIdentity(info.name, info.weights_sha256, info.config, info.entropy, info.decoder_sha256,
                         info.encoder_sha256, info.decodes)


def _build_codec(state, info: CheckpointInfo, device, inference: bool) -> "Codec":
    from .model import Codec

    codec = Codec(info.config)
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights do not fit the config of model {info.name!r}: {str(exc).splitlines()[0]}") from None
    codec = codec.float().to(device)
    if inference:
        codec.prepare_for_inference()
    return codec


def pick_device(device: "str | torch.device | None") -> "torch.device":
    """`device` checked: cpu, cuda[:N] that exists, or mps that exists; None picks CUDA when present."""
    import torch

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


def load_model(name_or_path: str | os.PathLike | None = None, device: "str | torch.device | None" = None,
               inference: bool = True, runtime: str = "auto", threads: int = 0) -> LoadedModel:
    """Load a bundled model by name (None: the default) or a checkpoint by path, verified by its hash.

    `runtime`: "onnx" (ONNX Runtime on the CPU, no torch), "torch" (any `device`; None picks CUDA when present),
    or "auto": ONNX Runtime when no device other than the CPU is asked for, `inference` is on and the light
    runtime can run the model, else torch. `threads`: ONNX Runtime's threads (0: its default); torch's are
    `torch.set_num_threads`'."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}: give {', '.join(RUNTIMES)}")
    path = resolve_model(name_or_path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if runtime == "auto":
        light = inference and str(device or "cpu") == "cpu"
        if light:
            from .checkpoint import read_config

            from .onnxnet import unavailable

            light = unavailable(read_config(path)) is None
        runtime = "onnx" if light else "torch"
    if runtime == "onnx":
        if device is not None and str(device) != "cpu":
            raise ConfigError(f"the onnx runtime runs on the cpu, not {device}: use --runtime torch")
        tensors, info = read_model(path, numpy=True)
        try:
            return LoadedModel.build_light(tensors, info, threads, path)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"--runtime onnx: {exc}") from None
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("the torch runtime needs torch (pip install torch)") from None
    if threads > 0:
        torch.set_num_threads(threads)
    state, info = read_model(path)
    return LoadedModel.build(state, info, device, inference)
