"""Frozen dataclass configs loaded from TOML.

Every table maps onto a dataclass; an unknown key is an error that names the key and lists the valid ones, so a
typo never silently falls back to a default. Encoder and decoder tables pick their dataclass by their `kind` key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from .errors import ConfigError

DEFAULT_KBPS = 6.0  # what `encode` spends on the whole file when no bitrate is given


# --------------------------------------------------------------------------------------------------- model parts
@dataclass(frozen=True)
class ConvEncoderConfig:
    """DAC-style strided encoder: Snake, weight-normalised convs, residual units with dilations 1, 3, 9."""

    kind: Literal["conv"] = "conv"
    channels: int = 16  # width of the first block; doubles after every stride
    strides: tuple[int, ...] = (2, 4, 5, 8)


@dataclass(frozen=True)
class STFTEncoderConfig:
    """STFT front end (log magnitude + phase as cos/sin) followed by ConvNeXt blocks at the frame rate."""

    kind: Literal["stft"] = "stft"
    n_fft: int = 1280
    dim: int = 256
    n_blocks: int = 6
    # Causal: frame f is computed from the audio before (f + 1) · hop_length only (its STFT window ends there,
    # every conv pads on the left), so a live encoder needs no look-ahead (`examples/causal.toml`).
    causal: bool = False


@dataclass(frozen=True)
class ConvDecoderConfig:
    """DAC-style decoder: transposed convs, residual units, Snake, tanh output."""

    kind: Literal["conv"] = "conv"
    channels: int = 256  # width at the frame rate; halves after every stride
    strides: tuple[int, ...] = (8, 5, 4, 2)


@dataclass(frozen=True)
class ISTFTDecoderConfig:
    """Vocos-style decoder: ConvNeXt blocks at the frame rate predicting magnitude and phase for an inverse STFT."""

    kind: Literal["istft"] = "istft"
    n_fft: int = 1280
    dim: int = 384
    n_blocks: int = 8
    intermediate_dim: int = 1152
    # Add each bin's own phase advance (2π·k·hop/n_fft per frame) to the predicted phase. Without it a
    # translation-equivariant decoder fed a steady sound repeats the same frame, and overlap-add turns that
    # into a buzz at the frame rate (a comb at multiples of sample_rate / hop_length); with it a repeated frame
    # is a steady tone. No parameters: weights trained either way load into the other.
    phase_reference: bool = False
    # Causal: the convs pad on the left and frame f's synthesis window ends at (f + 1) · hop_length, where the
    # causal encoder's analysis window ends; a sample is final n_fft - hop_length samples after its frame.
    causal: bool = False


@dataclass(frozen=True)
class QuantizerConfig:
    """Residual VQ with factorised, L2-normalised codes (DAC)."""

    n_q: int = 16
    codebook_size: int = 1024
    codebook_dim: int = 8
    dropout: float = 0.5  # probability that a training item uses a random number of codebooks


@dataclass(frozen=True)
class ModelConfig:
    name: str = "neurocodec"
    sample_rate: int = 24000
    hop_length: int = 320
    latent_dim: int = 64
    encoder: Union[ConvEncoderConfig, STFTEncoderConfig] = field(default_factory=ConvEncoderConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    decoder: Union[ConvDecoderConfig, ISTFTDecoderConfig] = field(default_factory=ConvDecoderConfig)

    def __post_init__(self) -> None:
        for part in (self.encoder, self.decoder):
            strides = getattr(part, "strides", None)
            if strides is not None and math.prod(strides) != self.hop_length:
                raise ConfigError(
                    f"{part.kind} {type(part).__name__} strides {list(strides)} multiply to "
                    f"{math.prod(strides)}, but hop_length is {self.hop_length}"
                )
            n_fft = getattr(part, "n_fft", None)
            if n_fft is not None and (n_fft < self.hop_length or (n_fft - self.hop_length) % 2):
                raise ConfigError(f"n_fft {n_fft} must be >= hop_length {self.hop_length} and differ from it by an even number")
        if self.quantizer.codebook_size < 2 or self.quantizer.codebook_size > 65536:
            raise ConfigError(f"codebook_size must be in [2, 65536], got {self.quantizer.codebook_size}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def kbps(self, n_q: int) -> float:
        """Fixed-width bitrate in kbps when `n_q` codebooks are used."""
        return n_q * math.log2(self.quantizer.codebook_size) * self.frame_rate / 1000

    def n_q_for_total_kbps(self, kbps: float | None, channels: int = 1) -> int:
        """Codebooks per channel at `kbps` for the whole signal: `channels` share it (the largest count whose
        fixed-width rate fits). None: `DEFAULT_KBPS`, or all codebooks of a model that tops out below it. Raises
        `ConfigError` for a bitrate the model cannot meet."""
        if kbps is None:
            kbps = min(DEFAULT_KBPS, self.kbps(self.quantizer.n_q) * channels)
        try:
            return self.n_q_for_kbps(kbps / channels)
        except ConfigError as exc:
            if channels == 1:
                raise
            raise ConfigError(f"{kbps:g} kbps for {channels} channels: {exc} per channel") from None

    def n_q_for_quality(self, quality: float, channels: int = 1) -> int:
        """The codebooks of constant `quality` kbps, the reference of variable rate (`vbr.py`); `ConfigError` as
        `n_q_for_total_kbps`, naming the quality."""
        try:
            return self.n_q_for_total_kbps(quality, channels)
        except ConfigError as exc:
            raise ConfigError(f"quality {quality:g}: {exc}") from None

    def n_q_for_kbps(self, kbps: float) -> int:
        """The largest number of codebooks whose fixed-width bitrate does not exceed `kbps` (one channel).

        Refuses what cannot be met: not a positive number, below one codebook, above all of them."""
        if not (isinstance(kbps, (int, float)) and math.isfinite(kbps) and kbps > 0):
            raise ConfigError(f"bitrate {kbps!r} kbps: give a positive number")
        per_codebook = self.kbps(1)
        n_q = int(math.floor(kbps / per_codebook + 1e-9))
        if n_q < 1:
            raise ConfigError(f"{kbps:g} kbps is below one codebook ({per_codebook:g} kbps)")
        if kbps > self.kbps(self.quantizer.n_q) * (1 + 1e-9):
            raise ConfigError(f"{kbps:g} kbps is above the {self.kbps(self.quantizer.n_q):g} kbps of all "
                              f"{self.quantizer.n_q} codebooks")
        return n_q


# --------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...] = ()  # folders or manifest files of audio
    valid: tuple[str, ...] = ()
    segment_seconds: float = 0.5
    valid_segment_seconds: float = 3.0
    valid_clips: int = 8
    loudness_db: float = -16.0  # items are normalised to this RMS level (dBFS) before cropping
    gain_db: float = 4.0  # then a random gain in ±gain_db: real input is not at one level
    # Decode every training file once, at the model rate, into memory: a GPU step is faster than reading and
    # resampling a batch of crops from disk. Costs 4 bytes per sample (about 350 MB per hour at 24 kHz).
    preload: bool = False
    # With preload: hold all of it on the training device and cut crops, normalise, apply gains and mix there
    # (`train.data.ResidentCrops`): no host work and no copy per step. Different batches from the host path.
    resident: bool = False
    mix_probability: float = 0.0  # resident only: chance that a crop has a second crop added at a random level

    def __post_init__(self) -> None:
        _at_least("data", self, segment_seconds=(0.0, False), valid_segment_seconds=(0.0, False), valid_clips=(1, True),
                  gain_db=(0.0, True), mix_probability=(0.0, True))
        if self.mix_probability > 1:
            raise ConfigError(f"data.mix_probability must be in [0, 1], got {self.mix_probability}")


def _at_least(section: str, cfg: Any, **bounds: tuple[float, bool]) -> None:
    """ConfigError for a field below its bound (`name=(bound, inclusive)`): a batch of 0 or a negative learning
    rate is refused when the config is read, not met as a traceback mid-run."""
    for name, (bound, inclusive) in bounds.items():
        value = getattr(cfg, name)
        if not (value >= bound if inclusive else value > bound):
            relation = "at least" if inclusive else "above"
            raise ConfigError(f"{section}.{name} must be {relation} {bound:g}, got {value!r}")


# The generator's loss terms, in one table: each is a `LossConfig` field holding its weight, and the name under which
# the step computes it, the log records it ("loss_<name>", unweighted), the display shows it and the plots draw it.
LOSS_TERMS = ("mel", "magnitude", "level", "waveform_l1", "stft", "complex_stft", "commitment", "codebook",
              "rate", "adversarial", "feature_matching")


@dataclass(frozen=True)
class LossConfig:
    mel: float = 15.0
    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    # A linear-magnitude term holds the output level (log-mel alone lets amplitude sag early in training).
    magnitude: float = 0.0
    # Per-band level over the whole segment: L1 between log10 of the time-averaged mel *power* of reference and
    # estimate. Frame-wise L1 terms are minimised by a median, which under uncertainty sits below the signal's
    # energy; an average of power is not, so this term holds the level (gain handling).
    level: float = 0.0
    waveform_l1: float = 0.0
    stft: float = 0.0  # multi-resolution STFT loss (spectral convergence + log magnitude)
    stft_windows: tuple[int, ...] = (512, 1024, 2048)
    complex_stft: float = 0.0  # phase-aware: L1 between complex STFTs
    adversarial: float = 1.0
    feature_matching: float = 2.0
    commitment: float = 0.25
    codebook: float = 1.0
    # Entropy-aware training: bits per code under each codebook's running code frequencies, the nearest code
    # relaxed to a softmax over cosine similarity / rate_temperature (ResidualVectorQuantizer.rate_temperature).
    rate: float = 0.0
    rate_temperature: float = 0.02
    # Broken on purpose, for tests that prove the collapse alarm fires: "librosa" or "random".
    mel_filterbank: Literal["librosa", "random"] = "librosa"

    def __post_init__(self) -> None:
        _at_least("loss", self, rate=(0.0, True), rate_temperature=(0.0, False))

    def weights(self) -> dict[str, float]:
        """Weight of every term in `LOSS_TERMS`, by name."""
        return {name: getattr(self, name) for name in LOSS_TERMS}


@dataclass(frozen=True)
class DiscriminatorConfig:
    enabled: bool = True
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    stft_windows: tuple[int, ...] = (2048, 1024, 512)
    stft_channels: int = 32
    bands: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 400_000
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    lr_decay: float = 0.999996  # ExponentialLR gamma per step
    # Learning rate ramped linearly from 0 over the first `warmup_steps` steps of a run: a fresh Adam moves every
    # weight by about lr per step until its moment estimates settle, which undoes a trained model it starts
    # from (--init; measured by tools/validate_model.py --steps, see docs/history.md). 0: none.
    warmup_steps: int = 0
    grad_clip: float = 1000.0
    discriminator_grad_clip: float = 10.0
    gan_start_step: int = 0  # reconstruction-only warm-up before the discriminator joins
    threads: int = 0  # torch threads per process; 0 keeps torch's default
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0  # also checkpoint when this much wall time passed since the last one
    dead_code_threshold: float = 2.0  # codes used fewer times than this between evaluations are dead (alarm)
    # Dead codes are re-seeded from recent encoder outputs at every evaluation. False: counted and alarmed on, never
    # replaced: with the rate term (loss.rate) on, re-seeding works against it (each one raised the logged rate by
    # about 1 bit per code, the new codes starting at a low running frequency).
    reseed_dead_codes: bool = True
    alarm_rms_low: float = 0.5
    alarm_rms_high: float = 2.0
    alarm_snr_falls: int = 3  # SNR falling at this many evaluations in a row raises an alarm
    # Validation also codes its clips scaled to each of these RMS levels (dBFS) and alarms when the output/input
    # RMS ratio at any of them leaves [alarm_level_low, alarm_level_high]: a model that compresses dynamics (loud
    # in soft, soft in loud) passes the plain RMS check at the one level the clips are normalised to. () disables.
    level_sweep_db: tuple[float, ...] = (-40.0, -32.0, -24.0, -16.0, -10.0, -6.0)
    alarm_level_low: float = 0.9
    alarm_level_high: float = 1.1
    alarm_dead_fraction: float = 0.5
    # The fast path (a GPU's): bf16 autocast for the networks (the STFT/iSTFT, quantizer, mel, level and every
    # loss stay fp32), torch.compile of generator and discriminators (eager if compiling fails, recorded in the
    # log), and host synchronisation (loss values, the NaN check) only every `sync_every` steps.
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    sync_every: int = 1

    def __post_init__(self) -> None:
        _at_least("train", self, steps=(0, True), batch_size=(1, True), lr=(0.0, False), warmup_steps=(0, True),
                  threads=(0, True), log_every=(1, True), eval_every=(1, True), checkpoint_every=(1, True),
                  checkpoint_minutes=(0.0, False), gan_start_step=(0, True), sync_every=(1, True))
        if self.log_every % self.sync_every:
            raise ConfigError(f"train.log_every ({self.log_every}) must be a multiple of train.sync_every "
                              f"({self.sync_every}): losses reach the host only at synchronised steps")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.resident and not self.data.preload:
            raise ConfigError("data.resident needs data.preload = true (the audio is decoded once, then moved)")


# --------------------------------------------------------------------------------------------------- loading
def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (Union, types.UnionType):
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        if classes:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
            kinds = {c.__dataclass_fields__["kind"].default: c for c in classes}
            kind = value.get("kind", classes[0].__dataclass_fields__["kind"].default)
            if kind not in kinds:
                raise ConfigError(f"{where}.kind: unknown kind {kind!r}; valid: {', '.join(sorted(kinds))}")
            return from_dict(kinds[kind], value, where)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        return _convert(value, others[0], where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp!r}")  # pragma: no cover - a programming error


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from a nested dict, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - every field has a default
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain dict (lists for tuples) that `from_dict` turns back into an equal object."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def load_config(path: str | Path) -> Config:
    """Read a TOML config file into a `Config`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return from_dict(Config, data, where=path.name)


def model_config_from_json(text: str) -> ModelConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model config is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("model config must be a JSON object")
    return from_dict(ModelConfig, data, where="model")
