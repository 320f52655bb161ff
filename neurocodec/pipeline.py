"""Audio at any sample rate and channel count ↔ codes, as streams.

Channels are coded independently (each is one batch item of the mono model). Input is resampled with soxr to the
model's rate on the way in; decoding resamples back and restores the original length and channel count.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch

from . import container, entropy
from .audio import Resampler
from .errors import AudioError, FormatError
from .model import Codec
from .model.streaming import DEFAULT_CHUNK_FRAMES, ChunkedDecoder, ChunkedEncoder


class EncodedAudio(NamedTuple):
    codes: np.ndarray  # [C, n_q, T_frames] int64
    sample_rate: int  # of the original audio
    length: int  # original length in samples per channel


def stream_encode(
    codec: Codec,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    n_q: int | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """Blocks `[C, n]` at `sample_rate` → code blocks `[C, n_q, k]` (k ≥ 1), in order."""
    resampler = Resampler(sample_rate, codec.sample_rate, channels)
    stream = ChunkedEncoder(codec, n_q or codec.n_q, chunk_frames)
    with torch.inference_mode():
        for block in blocks:
            codes = stream.push(torch.from_numpy(resampler(block)))
            if codes.shape[-1]:
                yield codes.cpu().numpy()
        tail = resampler(np.zeros((channels, 0), np.float32), last=True)
        if tail.shape[-1]:
            codes = stream.push(torch.from_numpy(tail))
            if codes.shape[-1]:
                yield codes.cpu().numpy()
        codes = stream.flush()
        if codes.shape[-1]:
            yield codes.cpu().numpy()


def stream_decode(
    codec: Codec,
    code_blocks: Iterable[np.ndarray | int],
    sample_rate: int,
    length: int | None,
    channels: int,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """Code blocks `[C, n_q, k]` (n_q may vary per block) → audio blocks `[C, n]` at `sample_rate`.

    An `int` in place of a block is a gap of that many frames (codes lost to damage): it becomes silence of the
    right length, and decoding restarts after it as at the start of a file. With `length` given, exactly that many
    samples per channel come out (trimmed, or zero-padded if the codes run short).
    """
    resampler = Resampler(codec.sample_rate, sample_rate, channels)
    emitted = 0

    def emit(audio: np.ndarray) -> Iterator[np.ndarray]:
        nonlocal emitted
        if length is not None:
            audio = audio[:, : max(0, length - emitted)]
        emitted += audio.shape[-1]
        if audio.shape[-1]:
            yield audio

    def model_rate() -> Iterator[np.ndarray]:
        stream = ChunkedDecoder(codec, chunk_frames)
        for block in code_blocks:
            if isinstance(block, (int, np.integer)):
                tail = stream.flush()
                if tail.shape[-1]:
                    yield tail.cpu().numpy()
                stream = ChunkedDecoder(codec, chunk_frames)
                yield np.zeros((channels, int(block) * codec.hop_length), np.float32)
                continue
            audio = stream.push(torch.from_numpy(np.ascontiguousarray(block)).long())
            if audio.shape[-1]:
                yield audio.cpu().numpy()
        tail = stream.flush()
        if tail.shape[-1]:
            yield tail.cpu().numpy()

    with torch.inference_mode():
        for audio in model_rate():
            yield from emit(resampler(np.clip(audio, -1.0, 1.0)))
        yield from emit(resampler(np.zeros((channels, 0), np.float32), last=True))
    if length is not None and emitted < length:
        yield np.zeros((channels, length - emitted), np.float32)


def encode_audio(
    codec: Codec, audio: np.ndarray, sample_rate: int, n_q: int | None = None, chunk_frames: int = DEFAULT_CHUNK_FRAMES
) -> EncodedAudio:
    """audio `[C, T]` at any rate → codes `[C, n_q, T_frames]`."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    parts = list(stream_encode(codec, [audio], sample_rate, audio.shape[0], n_q, chunk_frames))
    n_q = n_q or codec.n_q
    codes = np.concatenate(parts, axis=-1) if parts else np.zeros((audio.shape[0], n_q, 0), np.int64)
    return EncodedAudio(codes, sample_rate, audio.shape[-1])


def decode_audio(codec: Codec, encoded: EncodedAudio, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """codes → audio `[C, length]` at the original sample rate."""
    channels = encoded.codes.shape[0]
    parts = list(stream_decode(codec, [encoded.codes], encoded.sample_rate, encoded.length, channels, chunk_frames))
    if not parts:
        return np.zeros((encoded.codes.shape[0], 0), np.float32)
    return np.clip(np.concatenate(parts, axis=-1), -1.0, 1.0)


# ------------------------------------------------------------------------------------------- .ncd files
NCD_CHUNK_FRAMES = 75  # 1 s at 75 Hz: the unit of damage, seeking and bitrate change


class DecodeReport(NamedTuple):
    damage: list[str]  # one line per problem concealed (empty: the file was intact)
    samples: int  # per channel, written


def _load(model, device: str | None):
    """`model`: a bundled name, a path, None (the default), or an already loaded `(Codec, CheckpointInfo)`."""
    if isinstance(model, tuple):
        return model
    from .models import load_model

    return load_model(model, device)


def encode_file(input: str, output: str, bitrate: float = 6.0, model=None, device: str | None = None,
                chunk_frames: int = NCD_CHUNK_FRAMES) -> container.Header:
    """Audio file (or "-") → .ncd file (or "-"), written atomically. Returns the header written."""
    from .audio import AudioReader
    from .fileio import atomic_path

    codec, info = _load(model, device)
    n_q = info.config.n_q_for_bitrate(bitrate)
    with AudioReader(input) as reader:
        if reader.channels > container.MAX_CHANNELS:
            raise AudioError(f"{reader.name}: {reader.channels} channels; .ncd holds at most {container.MAX_CHANNELS}")
        header = container.Header(
            sample_rate=reader.sample_rate, channels=reader.channels,
            length=None if input == "-" else reader.frames, model_name=info.name, model_sha256=info.weights_sha256,
            entropy_sha256=info.entropy.sha256, model_n_q=codec.n_q, codebook_size=info.config.quantizer.codebook_size,
            hop_length=codec.hop_length, model_sample_rate=codec.sample_rate)
        samples = 0

        def blocks() -> Iterator[np.ndarray]:
            nonlocal samples
            for block in reader.blocks():
                samples += block.shape[-1]
                yield block

        with atomic_path(output) as tmp, open(tmp, "wb") as out:
            writer = container.Writer(out, header)
            pending = np.zeros((reader.channels, n_q, 0), np.int64)
            for codes in stream_encode(codec, blocks(), reader.sample_rate, reader.channels, n_q):
                pending = np.concatenate([pending, codes], axis=-1)
                while pending.shape[-1] >= chunk_frames:
                    writer.write_chunk(entropy.encode_chunk(info.entropy, pending[..., :chunk_frames]), chunk_frames, n_q)
                    pending = pending[..., chunk_frames:]
            if pending.shape[-1]:
                writer.write_chunk(entropy.encode_chunk(info.entropy, pending), pending.shape[-1], n_q)
            writer.close(samples)
    return header


def _check_model(header: container.Header, info, where: str) -> None:
    """Refuse, before decoding anything, codes made by another model or coded with other tables."""
    if header.model_sha256 != info.weights_sha256:
        raise FormatError(
            f"{where} was made by model {header.model_name!r} (weights {header.model_sha256[:12]}…), but the loaded "
            f"model is {info.name!r} ({info.weights_sha256[:12]}…): pass that model with --model")
    if header.entropy_sha256 != info.entropy.sha256:
        raise FormatError(f"{where} was coded with entropy tables {header.entropy_sha256[:12]}…, but model "
                          f"{info.name!r} carries {info.entropy.sha256[:12]}…: pass the matching checkpoint with --model")
    cfg = info.config
    if (header.codebook_size, header.hop_length, header.model_sample_rate, header.model_n_q) != (
            cfg.quantizer.codebook_size, cfg.hop_length, cfg.sample_rate, cfg.quantizer.n_q):
        raise FormatError(f"{where}: header codebook geometry does not match model {info.name!r}")


def read_codes(parsed: container.ParsedFile, model_entropy: entropy.EntropyModel, conceal: bool
               ) -> tuple[list[np.ndarray | int], list[str]]:
    """Entropy-decode every chunk → a list of code blocks `[C, n_q, k]` and gaps (ints, frames), plus damage."""
    damage = list(parsed.damage)
    h = parsed.header
    pieces: list[np.ndarray | int] = []
    frame = 0
    lost = dict(parsed.lost)
    for chunk in parsed.chunks:
        if chunk.first_frame > frame:
            pieces.append(chunk.first_frame - frame)
        try:
            pieces.append(entropy.decode_chunk(model_entropy, chunk.payload, h.channels, chunk.n_q, chunk.frame_count))
        except FormatError as exc:
            damage.append(f"chunk {chunk.index} at byte {chunk.offset}: {exc}")
            pieces.append(chunk.frame_count)
        frame = chunk.first_frame + chunk.frame_count
    tail = max((b for a, b in lost.items() if b > frame), default=frame)
    if tail > frame:
        pieces.append(tail - frame)
    if damage and not conceal:
        more = f" (+{len(damage) - 1} more)" if len(damage) > 1 else ""
        raise FormatError(f"{damage[0]}{more}; nothing written (--decode-through-errors conceals damage with silence)")
    return pieces, damage


def _read_ncd(input: str) -> tuple[str, container.ParsedFile]:
    """(name for messages, parsed file) of an .ncd file or stdin; a fatal fault names the file."""
    from .fileio import read_input_bytes

    where = "stdin" if input == "-" else input
    try:
        data = read_input_bytes(input)
    except OSError as exc:
        raise FormatError(f"{where}: cannot read ({exc.strerror or exc})") from None
    try:
        return where, container.parse(data)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def decode_file(input: str, output: str, model=None, device: str | None = None,
                conceal: bool = False) -> DecodeReport:
    """.ncd file (or "-") → audio file (or WAV on "-"), written atomically; damage raises unless `conceal`."""
    from .audio import AudioWriter

    where, parsed = _read_ncd(input)
    codec, info = _load(model, device)
    _check_model(parsed.header, info, where)
    pieces, damage = read_codes(parsed, info.entropy, conceal)
    h = parsed.header
    length = parsed.length
    if length is None:  # truncated stream without a header length: everything the codes describe
        frames = sum(p if isinstance(p, int) else p.shape[-1] for p in pieces)
        length = round(frames * h.hop_length * h.sample_rate / h.model_sample_rate)
    written = 0
    with AudioWriter(output, h.sample_rate, h.channels) as writer:
        for block in stream_decode(codec, pieces, h.sample_rate, length, h.channels):
            writer.write(block)
            written += block.shape[-1]
    return DecodeReport(damage, written)


def describe(input: str) -> dict:
    """What `neurocodec info` shows: header facts, chunk statistics, real bitrate, damage."""
    where, parsed = _read_ncd(input)
    h = parsed.header
    frames = parsed.total_frames if parsed.total_frames is not None else sum(c.frame_count for c in parsed.chunks)
    duration = (parsed.length / h.sample_rate) if parsed.length is not None else frames * h.hop_length / h.model_sample_rate
    n_qs = sorted({c.n_q for c in parsed.chunks})
    bits = math.log2(h.codebook_size)
    frame_rate = h.model_sample_rate / h.hop_length
    fixed = sum(c.n_q * c.frame_count for c in parsed.chunks) * bits * h.channels
    payload = sum(len(c.payload) for c in parsed.chunks) * 8
    return {
        "file": where,
        "version": f"{container.VERSION_MAJOR}.{h.version_minor}",
        "model": f"{h.model_name} (weights {h.model_sha256[:16]}…)",
        "entropy_model": "uniform" if h.entropy_sha256 == entropy.UNIFORM_SHA256 else h.entropy_sha256[:16] + "…",
        "sample_rate": h.sample_rate,
        "channels": h.channels,
        "length": parsed.length,
        "duration_s": round(duration, 3),
        "frames": frames,
        "chunks": len(parsed.chunks),
        "codebooks": ",".join(map(str, n_qs)) or "-",
        "nominal_kbps": round(max(n_qs, default=0) * bits * frame_rate * h.channels / 1000, 3),
        "bitrate_kbps": round(parsed.size * 8 / duration / 1000, 3) if duration > 0 else None,
        "payload_vs_fixed": round(payload / fixed, 3) if fixed else None,
        "size_bytes": parsed.size,
        "damage": parsed.damage,
    }


def fit_entropy_model(model, sources: list[str], output: str, n_contexts: int = 16, max_seconds: float = 3600.0,
                      device: str | None = None) -> dict:
    """Fit integer probability tables on the codes of real audio and write `output`: the same weights (same hash)
    with the tables. `sources`: folders, manifests or files of *training* audio (never the evaluation set).
    Returns figures measured on the fitting data: bits per code, fitted vs uniform."""
    from .checkpoint import read_model, save_model
    from .models import resolve_model
    from .train.data import list_audio

    path = resolve_model(model)
    state, info = read_model(path)
    codec, _ = _load(str(path), device)
    files = list_audio(sources)
    if not files:
        raise AudioError("no audio files to fit entropy tables on")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    seqs, seconds = [], 0.0
    from .audio import read_audio

    for i in order:
        audio, sr = read_audio(files[i])
        seqs.append(encode_audio(codec, audio.mean(axis=0, keepdims=True), sr).codes[0])
        seconds += audio.shape[-1] / sr
        if seconds >= max_seconds:
            break
    n_q, k = info.config.quantizer.n_q, info.config.quantizer.codebook_size
    tables = entropy.fit(seqs, n_q, k, n_contexts=n_contexts)
    save_model(output, state, info.config, name=info.name, extra=info.extra, entropy=tables)
    stacked = np.concatenate(seqs, axis=-1)[None]
    return {"files": len(seqs), "seconds": round(seconds, 1),
            "bits_per_code": round(entropy.code_bits(tables, stacked) / stacked.size, 3),
            "uniform_bits_per_code": round(math.log2(k), 3)}
