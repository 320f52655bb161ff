"""The `.ncd` file codec: audio files ↔ `.ncd` files ↔ codes, and what `neurocodec info` shows of a file.

The bytes are `container.py`'s, the symbols `entropy.py`'s, the audio ↔ codes streams `stream.py`'s. The model is
a `loader.LoadedModel` passed in: it supplies the codec, the entropy tables, the header of a new file
(`model.header`) and the check that a file's codes are its own (`model.check_header`).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

import numpy as np

from . import container, entropy, vbr
from .audio import MAX_SECONDS, AudioReader, AudioWriter
from .checkpoint import bundled_name
from .errors import AudioError, FormatError
from .fileio import atomic_path, check_distinct, is_stream, open_input, read_bounded
from .level import LevelCoder
from .stream import CodeBlock, stream_decode, stream_encode

if TYPE_CHECKING:  # only for annotations: the loader imports this module
    from .loader import LoadedModel

CHUNK_BYTES = 4000  # the payload a chunk aims at: its framing (≈ 21 bytes with the index) stays near 0.5 %
MAX_CHUNK_SECONDS = 16.0  # the unit of damage and seeking: never longer than this


def chunk_frames_for(kbps: float, frame_rate: float, spacing: int) -> int:
    """Frames per chunk at `kbps` (all channels): about `CHUNK_BYTES` of payload, at least 1 s and at most
    `MAX_CHUNK_SECONDS`, a multiple of the level envelope's `spacing` (75 Hz: 5.4 s at 6 kbps, 16 s at 1.5)."""
    seconds = min(MAX_CHUNK_SECONDS, max(1.0, CHUNK_BYTES * 8 / (kbps * 1000)))
    frames = max(spacing, round(seconds * frame_rate / spacing) * spacing)
    return min(frames, container.MAX_CHUNK_FRAMES // spacing * spacing)


Progress = Callable[[int, "int | None"], None]  # (samples per channel done, total if known)


class EncodeReport(NamedTuple):
    header: container.Header
    n_q: float  # codebooks per channel (variable rate: the mean over segments)
    samples: int  # per channel, read
    bytes: int  # of the .ncd file written


class DecodeReport(NamedTuple):
    damage: list[str]  # one line per problem concealed (empty: the file was intact)
    samples: int  # per channel, written
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


def encode_file(model: LoadedModel, input: str, output: str, kbps: float | None = 6.0,
                chunk_frames: int | None = None, max_seconds: float = MAX_SECONDS,
                progress: Progress | None = None, level_loop: bool = True, quality: float | None = None
                ) -> EncodeReport:
    """Audio file (or a stream) → .ncd file (or "-"), written atomically, in chunks of `chunk_frames` codec frames
    (None: `chunk_frames_for` the bitrate).
    `kbps` is the whole file's nominal bitrate: the channels share it (None: see `LoadedModel.n_q_for_kbps`).
    `level_loop`: the encoder decodes its own codes to make the output's level the input's (`level.LevelLoop`);
    False encodes about twice as fast and leaves the model's own level error.
    `quality`: variable rate instead (`vbr.py`): each 0.2 s segment gets the fewest codebooks (up to all the
    model's) that keep it within the distortion constant `quality` kbps gives this input on average. The encoder
    then holds the whole input and decodes it once per codebook count (about 3x real time); the level loop
    decodes what the reader will (each segment's codebooks)."""
    check_distinct(input, output)
    with AudioReader(input, max_seconds) as reader:
        if reader.channels > container.MAX_CHANNELS:
            raise AudioError(f"{reader.name}: {reader.channels} channels; .ncd holds at most {container.MAX_CHANNELS}")
        n_q = (model.n_q_for_kbps(kbps, reader.channels) if quality is None
               else model.n_q_for_quality(quality, reader.channels))
        known = not is_stream(input)
        header = model.header(reader.sample_rate, reader.channels, reader.samples if known else None)
        samples = 0

        def blocks() -> Iterator[np.ndarray]:
            nonlocal samples
            for block in reader.blocks():
                samples += block.shape[-1]
                if progress is not None:
                    progress(samples, reader.samples if known else None)
                yield block

        level = model.level
        frame_rate = model.config.sample_rate / model.config.hop_length
        if chunk_frames is None:
            chunk_frames = chunk_frames_for(model.config.kbps(n_q) * reader.channels, frame_rate, level.spacing_frames)
        # Chunks start at multiples of the envelope's spacing (its points sit at a chunk's frames 0, E, 2E, …).
        chunk_frames = -(-chunk_frames // level.spacing_frames) * level.spacing_frames
        with atomic_path(output) as tmp, open(tmp, "wb") as out:
            writer = container.Writer(out, header)
            codes = np.zeros((reader.channels, n_q, 0), np.int64)
            points = np.zeros((reader.channels, 0), np.int64)
            counts = None  # codebooks per segment of the whole file (variable rate)
            done = 0  # frames written

            def write(frames: int) -> None:
                nonlocal codes, points, done
                count = level.points(frames)
                chunk_points = points[:, :count]
                if chunk_points.shape[-1] < count:  # the model padded past the last point: hold the level
                    chunk_points = np.concatenate(
                        [chunk_points, np.repeat(chunk_points[:, -1:], count - chunk_points.shape[-1], axis=-1)], -1)
                segment = header.segment_frames
                if counts is None:
                    chunk_counts = np.full(-(-frames // segment), n_q)
                else:
                    chunk_counts = counts[done // segment: -(-(done + frames) // segment)]
                top = int(chunk_counts.max())
                payload = entropy.encode_chunk_v2(model.entropy.coder, codes[:, :top, :frames], chunk_points,
                                                  header.level, chunk_counts, segment)
                writer.write_chunk(payload, frames, top)
                codes, points = codes[..., frames:], points[:, count:]
                done += frames

            if quality is None:
                source = stream_encode(model.codec, blocks(), reader.sample_rate, reader.channels, n_q, level=level,
                                       loop=level_loop)
            else:
                audio = np.concatenate([np.zeros((reader.channels, 0), np.float32)] + list(blocks()), axis=-1)
                encoded, counts = vbr.encode(model.codec, audio, reader.sample_rate, n_q, header.segment_frames,
                                             level_loop)
                source = [CodeBlock(encoded.codes, encoded.points)]
                codes = np.zeros((reader.channels, encoded.codes.shape[1], 0), np.int64)
                del audio

            for block in source:
                codes = np.concatenate([codes, block.codes], axis=-1)
                points = np.concatenate([points, block.points], axis=-1)
                while codes.shape[-1] >= chunk_frames and points.shape[-1] >= level.points(chunk_frames):
                    write(chunk_frames)
            while codes.shape[-1]:
                write(min(chunk_frames, codes.shape[-1]))
            writer.close(samples)
            size = writer.pos
    return EncodeReport(header, n_q if counts is None else float(np.mean(counts)), samples, size)


def _refuse(damage: list[str]) -> FormatError:
    more = f" (+{len(damage) - 1} more)" if len(damage) > 1 else ""
    return FormatError(f"{damage[0]}{more}; nothing written (--decode-through-errors conceals damage with silence)")


def iter_codes(parsed: container.ParsedFile, model_entropy: entropy.EntropyModel, damage: list[str] | None
               ) -> Iterator[np.ndarray | int]:
    """Entropy-decode chunk by chunk (one chunk in memory at a time) → code blocks (`[C, n_q, k]`, or `CodeBlock`s
    with the level envelope's points for a file that has one) and gaps (ints, frames lost). With a `damage` list,
    a chunk that fails to decode becomes a gap and its reason is appended; with None, it raises `FormatError`."""
    h = parsed.header
    frame = 0
    for chunk in parsed.chunks:
        if chunk.first_frame > frame:
            yield chunk.first_frame - frame
        try:
            block = decode_chunk(h, chunk, model_entropy)
        except FormatError as exc:
            problem = f"{chunk.label} at byte {chunk.offset}: {exc}"
            if damage is None:
                raise _refuse([problem]) from None
            # Its verified header says how many frames; silence for them only as far as its bytes could code them.
            block = min(chunk.frame_count, container.justified_frames(h, chunk.size, min_bits(h, model_entropy)))
            damage.append(problem if block == chunk.frame_count else
                          f"{problem}; {block} of its {chunk.frame_count} frames concealed (all its bytes can hold)")
        yield block
        frame = chunk.first_frame + chunk.frame_count
    tail = max((b for a, b in parsed.lost if b > frame), default=frame)
    if tail > frame:
        yield tail - frame


def min_bits(header: container.Header, model_entropy: entropy.EntropyModel) -> float:
    """The fewest bits a code costs in a file with this header (its layout's context model)."""
    if header.version_major == 1:
        return model_entropy.min_bits_per_symbol
    return model_entropy.coder.min_bits_per_symbol


def decode_chunk(header: container.Header, chunk: container.Chunk, model_entropy: entropy.EntropyModel
                 ) -> np.ndarray | CodeBlock:
    """One chunk's payload → codes `[C, n_q, F]` (-1 where a variable-rate segment coded fewer codebooks), or a
    `CodeBlock` with the level envelope's points for a file that has one. Raises FormatError."""
    h = header
    if h.version_major == 1:
        block = entropy.decode_chunk(model_entropy, chunk.payload, h.channels, chunk.n_q, chunk.frame_count, h.level)
        return CodeBlock(*block) if h.level is not None else block
    codes, points, n_qs = entropy.decode_chunk_v2(model_entropy.coder, chunk.payload, h.channels, chunk.n_q,
                                                  chunk.frame_count, h.level, h.segment_frames)
    codes = entropy.keep_codebooks(codes, entropy.frame_counts(n_qs, h.segment_frames, chunk.frame_count))
    return CodeBlock(codes, points) if h.level is not None else codes


def read_codes(parsed: container.ParsedFile, model_entropy: entropy.EntropyModel, conceal: bool
               ) -> tuple[list[np.ndarray | int], list[str]]:
    """The whole file's code blocks and gaps as a list, and every problem found; damage raises unless `conceal`."""
    damage = list(parsed.damage)
    pieces = list(iter_codes(parsed, model_entropy, damage))
    if damage and not conceal:
        raise _refuse(damage)
    return pieces, damage


def max_bytes(header: container.Header, seconds: float) -> int:
    """The most bytes a valid file of `seconds` can take, in either layout: every frame in its own chunk (with its
    index entry, at most 2 varints in 2.x), every code, level point and segment count at the coder's worst 32
    bits. A longer input is refused before it is read whole."""
    chunk = max(container.CHUNK_HEADER_SIZE, container.CHUNK_MAX_V2)
    entry = max(container.INDEX_ENTRY.size, 2 * container.MAX_VARINT)
    per_frame = chunk + entry + header.channels * (header.model_n_q + 1) * 4 + 4
    frames = math.ceil(seconds * header.model_sample_rate / header.hop_length) + 1
    return container.MAX_HEADER + frames * per_frame + container.TRAILER.size + container.INDEX_HEAD.size + 4


def read_ncd(input: str, max_seconds: float = MAX_SECONDS, model_entropy: entropy.EntropyModel | None = None
             ) -> tuple[str, container.ParsedFile]:
    """(name for messages, parsed file) of an .ncd file or stream; a fatal fault names the file. The header is
    read first, so that the rest is read only as far as `max_seconds` of audio can justify. With the entropy
    model, lost frames are also believed only as far as the damaged bytes could have coded them."""
    where = "stdin" if input == "-" else input
    try:
        with open_input(input) as src:
            head = src.read(container.MAX_HEADER)
            header, _ = container.parse_header(head)
            limit = max_bytes(header, max_seconds)
            if not is_stream(input) and os.fstat(src.fileno()).st_size > limit:
                data = None
            else:
                data = read_bounded(src, limit, head)
    except OSError as exc:
        raise FormatError(f"{where}: cannot read ({exc.strerror or exc})") from None
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    if data is None:
        raise FormatError(f"{where}: longer than {max_seconds / 3600:g} h of audio can be (--max-hours raises the "
                          "limit)")
    try:
        return where, container.parse(data, min_bits(header, model_entropy) if model_entropy else None)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def decode_file(model: LoadedModel, input: str, output: str, conceal: bool = False,
                max_seconds: float = MAX_SECONDS, progress: Progress | None = None) -> DecodeReport:
    """.ncd file (or a stream) → audio file (or WAV on "-"), written atomically; damage raises unless `conceal`."""
    check_distinct(input, output)
    where, parsed = read_ncd(input, max_seconds, model.entropy)
    model.check_header(parsed.header, where)
    if parsed.damage and not conceal:
        raise _refuse(parsed.damage)
    damage = list(parsed.damage)
    pieces = iter_codes(parsed, model.entropy, damage if conceal else None)
    h = parsed.header
    length = parsed.length
    if length is None:  # truncated stream without a header length: everything the codes describe
        frames = max([c.first_frame + c.frame_count for c in parsed.chunks] + [b for _, b in parsed.lost], default=0)
        length = round(frames * h.hop_length * h.sample_rate / h.model_sample_rate)
    written = 0
    with AudioWriter(output, h.sample_rate, h.channels) as writer:
        level = LevelCoder.from_extension(h.level, h.hop_length) if h.level is not None else None
        for block in stream_decode(model.codec, pieces, h.sample_rate, length, h.channels, level=level):
            writer.write(block)
            written += block.shape[-1]
            if progress is not None:
                progress(written, length)
    return DecodeReport(damage, written, h.sample_rate)


def model_label(header: container.Header) -> str:
    """The name of the model that made a file: its header's (1.x), else the bundled model with its id (2.x),
    else "unknown"."""
    return header.model_name or bundled_name(header.model_sha256) or "unknown"


def describe(input: str, max_seconds: float = MAX_SECONDS) -> dict:
    """What `neurocodec info` shows: header facts, chunk statistics, real bitrate, damage."""
    where, parsed = read_ncd(input, max_seconds)
    h = parsed.header
    frames = parsed.total_frames if parsed.total_frames is not None else sum(c.frame_count for c in parsed.chunks)
    duration = (parsed.length / h.sample_rate) if parsed.length is not None else frames * h.hop_length / h.model_sample_rate
    bits = math.log2(h.codebook_size)
    frame_rate = h.model_sample_rate / h.hop_length
    payload = sum(len(c.payload) for c in parsed.chunks) * 8
    level, level_kbps, level_bits = "none (version 1.0: the level is the model's)", None, 0.0
    lv = h.level
    if lv is not None:
        level = (f"a point per {lv.spacing_frames / frame_rate:g} s in {lv.step_db:g} dB steps from "
                 f"{lv.floor_db:g} dBFS; the model sees {lv.target_db:g} dBFS")
    per_chunk, coded = [], 0  # codebooks per chunk (mean over its frames), codes coded per channel
    for c in parsed.chunks:
        try:
            if h.version_major == 1:
                points, present = (entropy.decode_points(c.payload, h.channels, c.frame_count, lv) if lv else None,
                                   np.full(c.frame_count, c.n_q))
            else:
                points, counts = entropy.decode_side(c.payload, h.channels, c.n_q, c.frame_count, lv, h.segment_frames)
                present = entropy.frame_counts(counts, h.segment_frames, c.frame_count)
        except FormatError as exc:
            parsed.damage.append(f"{c.label} at byte {c.offset}: {exc}")
            continue
        if points is not None:
            level_bits += entropy.level_bits(points, lv)
        per_chunk.append(float(present.mean()))
        coded += int(present.sum())
    if lv is not None:
        level_kbps = round(level_bits / duration / 1000, 4) if duration > 0 else None
    fixed = coded * bits * h.channels
    distinct = sorted(set(round(x, 2) for x in per_chunk))
    return {
        "file": where,
        "version": f"{h.version_major}.{h.version_minor}",
        "model": f"{model_label(h)} (weights {h.model_sha256[:16]}…)",
        "entropy_model": "uniform" if not h.entropy_sha256.strip("0") else h.entropy_sha256[:16] + "…",
        "sample_rate": h.sample_rate,
        "channels": h.channels,
        "length": parsed.length,
        "duration_s": round(duration, 3),
        "frames": frames,
        "chunks": len(parsed.chunks),
        "codebooks": (f"{distinct[0]:g}" if len(distinct) == 1 else
                      f"variable: {min(per_chunk):.2f} to {max(per_chunk):.2f} per chunk") if per_chunk else "-",
        "codebooks_by_chunk": [round(x, 2) for x in per_chunk],
        "codebooks_mean": round(coded / frames, 3) if frames else None,
        "nominal_kbps": round(coded / frames * bits * frame_rate * h.channels / 1000, 3) if frames else None,
        "bitrate_kbps": round(parsed.size * 8 / duration / 1000, 3) if duration > 0 else None,
        "payload_vs_fixed": round(payload / fixed, 3) if fixed else None,
        "framing_pct": round(100 * (parsed.size - payload / 8) / parsed.size, 2) if parsed.size else None,
        "level": level,
        "level_kbps": level_kbps,
        "size_bytes": parsed.size,
        "damage": parsed.damage,
    }
