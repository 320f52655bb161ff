"""The `.ncd` file codec: audio files ↔ `.ncd` files ↔ codes, and what `neurocodec info` shows of a file.

The bytes are `container.py`'s, the symbols `entropy.py`'s, the audio ↔ codes streams `stream.py`'s. The model is
a `loader.LoadedModel` passed in: it supplies the codec, the entropy tables, the header of a new file
(`model.header`) and the check that a file's codes are its own (`model.check_header`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator, NamedTuple

import numpy as np

from . import container, entropy
from .audio import AudioReader, AudioWriter
from .errors import AudioError, FormatError
from .fileio import atomic_path, read_input_bytes
from .stream import stream_decode, stream_encode

if TYPE_CHECKING:  # only for annotations: the loader imports this module
    from .loader import LoadedModel

NCD_CHUNK_FRAMES = 75  # 1 s at 75 Hz: the unit of damage, seeking and bitrate change


class DecodeReport(NamedTuple):
    damage: list[str]  # one line per problem concealed (empty: the file was intact)
    samples: int  # per channel, written


def encode_file(model: LoadedModel, input: str, output: str, kbps: float = 6.0,
                chunk_frames: int = NCD_CHUNK_FRAMES) -> container.Header:
    """Audio file (or "-") → .ncd file (or "-"), written atomically, in chunks of `chunk_frames` codec frames.
    Returns the header written."""
    n_q = model.n_q_for_kbps(kbps)
    with AudioReader(input) as reader:
        if reader.channels > container.MAX_CHANNELS:
            raise AudioError(f"{reader.name}: {reader.channels} channels; .ncd holds at most {container.MAX_CHANNELS}")
        header = model.header(reader.sample_rate, reader.channels, None if input == "-" else reader.samples)
        samples = 0

        def blocks() -> Iterator[np.ndarray]:
            nonlocal samples
            for block in reader.blocks():
                samples += block.shape[-1]
                yield block

        with atomic_path(output) as tmp, open(tmp, "wb") as out:
            writer = container.Writer(out, header)
            pending = np.zeros((reader.channels, n_q, 0), np.int64)
            for codes in stream_encode(model.codec, blocks(), reader.sample_rate, reader.channels, n_q):
                pending = np.concatenate([pending, codes], axis=-1)
                while pending.shape[-1] >= chunk_frames:
                    writer.write_chunk(entropy.encode_chunk(model.entropy, pending[..., :chunk_frames]), chunk_frames, n_q)
                    pending = pending[..., chunk_frames:]
            if pending.shape[-1]:
                writer.write_chunk(entropy.encode_chunk(model.entropy, pending), pending.shape[-1], n_q)
            writer.close(samples)
    return header


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


def read_ncd(input: str) -> tuple[str, container.ParsedFile]:
    """(name for messages, parsed file) of an .ncd file or stdin; a fatal fault names the file."""
    where = "stdin" if input == "-" else input
    try:
        data = read_input_bytes(input)
    except OSError as exc:
        raise FormatError(f"{where}: cannot read ({exc.strerror or exc})") from None
    try:
        return where, container.parse(data)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def decode_file(model: LoadedModel, input: str, output: str, conceal: bool = False) -> DecodeReport:
    """.ncd file (or "-") → audio file (or WAV on "-"), written atomically; damage raises unless `conceal`."""
    where, parsed = read_ncd(input)
    model.check_header(parsed.header, where)
    pieces, damage = read_codes(parsed, model.entropy, conceal)
    h = parsed.header
    length = parsed.length
    if length is None:  # truncated stream without a header length: everything the codes describe
        frames = sum(p if isinstance(p, int) else p.shape[-1] for p in pieces)
        length = round(frames * h.hop_length * h.sample_rate / h.model_sample_rate)
    written = 0
    with AudioWriter(output, h.sample_rate, h.channels) as writer:
        for block in stream_decode(model.codec, pieces, h.sample_rate, length, h.channels):
            writer.write(block)
            written += block.shape[-1]
    return DecodeReport(damage, written)


def describe(input: str) -> dict:
    """What `neurocodec info` shows: header facts, chunk statistics, real bitrate, damage."""
    where, parsed = read_ncd(input)
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
