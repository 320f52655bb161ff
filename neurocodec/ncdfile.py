"""The `.ncd` file codec: audio files ↔ `.ncd` files ↔ codes, and what `neurocodec info` shows of a file.

The bytes are `container/`'s, the payloads `payload.py`'s (one layout per format generation), the audio ↔ codes
streams `stream.py`'s (constant rate) and `vbr.py`'s (variable rate), both sources of code blocks that the writer
loop takes alike. The model comes as plain values: its networks (a `windows.Net`: torch or ONNX Runtime) and its
`identity.ModelIdentity` (header, tables, the check that a file's codes are its own).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from . import container, live, payload, vbr
from .audio import AudioReader, AudioWriter
from .codes import CodeBlock, present_counts
from .entropy import EntropyModel
from .errors import AudioError, ConfigError, FormatError, InputError
from .fileio import STDIO, atomic_path, check_distinct, is_stream, live_output, open_input
from .identity import ModelIdentity, level_coder
from .limiter import Limiter
from .limits import MAX_CHANNELS, MAX_EFFORT, MAX_SECONDS, level_spacing_frames
from .ncdinfo import read_ncd
from .stream import StreamDecoder, stream_decode, stream_encode
from .wavio import WavStreamReader, live_audio_output
from .windows import Net

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
    limited: int = 0  # samples per channel whose gain the limiter lowered (never clipped: `limiter.py`)

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


def code_blocks(net: Net, identity: ModelIdentity, blocks: Callable[[], Iterable[np.ndarray]], sample_rate: int,
                channels: int, kbps: float | None = 6.0, quality: float | None = None, level_loop: bool = True,
                effort: int = 0) -> tuple[int, Iterator[CodeBlock]]:
    """Audio blocks `[C, n]` (`blocks()` gives them; variable rate calls it twice, for two passes) → (codebooks
    per channel, code blocks with the level envelope's points): constant
    `kbps` for the whole signal (the channels share it), or with `quality` variable rate (`vbr.py`: each 0.2 s
    segment gets the fewest codebooks that keep the file within the distortion constant `quality` kbps gives it;
    the codes are -1 beyond a segment's codebooks; memory bounded by its measuring window). `level_loop`: the encoder decodes its
    own codes to make the output's level the input's (`level.LevelLoop`); False is about twice as fast and leaves
    the model's own level error. `effort` (0 … `search.MAX_EFFORT`): analysis by synthesis, each step about three
    decoder passes (`search.py`); 0 is the encoder's own codes."""
    level = identity.level
    if not 0 <= effort <= MAX_EFFORT:
        raise ConfigError(f"--effort: effort {effort}: give 0 to {MAX_EFFORT}")
    if quality is None:
        n_q = searched = identity.n_q_for_kbps(kbps, channels)
    else:  # variable rate codes every codebook, then keeps each segment's
        n_q, searched = identity.n_q_for_quality(quality, channels), net.n_q
    if effort:
        net = searching(net, identity, searched, effort)
    if quality is None:
        return n_q, stream_encode(net, blocks(), sample_rate, channels, n_q, level=level, loop=level_loop)
    return n_q, vbr.encode_blocks(net, blocks, sample_rate, channels, n_q, level.spacing_frames, level_loop)


def searching(net: Net, identity: ModelIdentity, n_q: int, effort: int) -> Net:
    """`net` with analysis by synthesis at `effort` (`search.Search`: gradients through the decoder, so torch)."""
    if not hasattr(net, "with_search"):
        raise ConfigError(f"--effort {effort} searches with gradients through the decoder and needs torch "
                          "(pip install torch); --effort 0 runs on ONNX Runtime")
    import torch

    from .search import Search, effort_steps

    return net.with_search(Search(net.codec, n_q, effort_steps(effort), torch.from_numpy(identity.code_prices())))


def encode_file(net: Net, identity: ModelIdentity, input: str, output: str, kbps: float | None = 6.0,
                chunk_frames: int | None = None, max_seconds: float = MAX_SECONDS,
                progress: Progress | None = None, level_loop: bool = True, quality: float | None = None,
                effort: int = 0) -> EncodeReport:
    """Audio file (or a stream) → .ncd file (or "-"), written atomically, in chunks of `chunk_frames` codec frames
    (None: `chunk_frames_for` the bitrate). `kbps`, `quality`, `level_loop`, `effort`: see `code_blocks`."""
    check_distinct(input, output)
    with AudioReader(input, max_seconds) as reader:
        if reader.channels > MAX_CHANNELS:
            raise AudioError(f"{reader.name}: {reader.channels} channels; .ncd holds at most {MAX_CHANNELS}")
        known = not is_stream(input)
        header = identity.header(reader.sample_rate, reader.channels, reader.samples if known else None, effort)
        samples = 0
        passes = 1 if quality is None else 2  # variable rate reads the input twice
        done = 0  # samples read in earlier passes

        def blocks() -> Iterator[np.ndarray]:
            nonlocal samples, done
            done += samples
            samples = 0
            reader.rewind()
            for block in reader.blocks():
                samples += block.shape[-1]
                if progress is not None:
                    progress((done + samples) // passes, reader.samples if known else None)
                yield block

        n_q, source = code_blocks(net, identity, blocks, reader.sample_rate, reader.channels, kbps, quality,
                                  level_loop, effort)
        level = identity.level
        cfg = identity.config
        if chunk_frames is None:
            chunk_frames = chunk_frames_for(cfg.kbps(n_q) * reader.channels, cfg.sample_rate / cfg.hop_length,
                                            level.spacing_frames)
        # Chunks start at multiples of the envelope's spacing (its points sit at a chunk's frames 0, E, 2E, …).
        chunk_frames = -(-chunk_frames // level.spacing_frames) * level.spacing_frames
        with atomic_path(output) as tmp, open(tmp, "wb") as out:
            writer = container.Writer(out, header)
            coded = _write_chunks(writer, source, identity, header, n_q, chunk_frames)
            writer.close(samples)
            size = writer.pos
    frames = writer.next_frame
    return EncodeReport(header, float(n_q) if quality is None or not frames else coded / frames, samples, size)


def _write_chunks(writer: container.Writer, source: Iterable[CodeBlock], identity: ModelIdentity,
                  header: container.Header, n_q: int, chunk_frames: int) -> int:
    """Code blocks → chunks of `chunk_frames` frames (the last shorter), each with its level points. Returns the
    codebooks coded, summed over frames (per channel)."""
    level = identity.level
    codes = np.zeros((header.channels, n_q, 0), np.int64)  # a source's blocks may carry more codebooks (VBR)
    points = np.zeros((header.channels, 0), np.int64)
    coded = 0

    def write(frames: int) -> None:
        nonlocal codes, points, coded
        count = level.points(frames)
        chunk_points = points[:, :count]
        if chunk_points.shape[-1] < count:  # the model padded past the last point: hold the level
            chunk_points = np.concatenate(
                [chunk_points, np.repeat(chunk_points[:, -1:], count - chunk_points.shape[-1], axis=-1)], -1)
        chunk = codes[..., :frames]
        data, top = payload.encode_chunk(identity.tables, header, chunk, chunk_points)
        writer.write_chunk(data, frames, top)
        coded += int(present_counts(chunk).sum())
        codes, points = codes[..., frames:], points[:, count:]

    for block in source:
        codes = np.concatenate([codes, block.codes], axis=-1) if codes.shape[-1] else block.codes
        points = np.concatenate([points, block.points], axis=-1)
        while codes.shape[-1] >= chunk_frames and points.shape[-1] >= level.points(chunk_frames):
            write(chunk_frames)
    while codes.shape[-1]:
        write(min(chunk_frames, codes.shape[-1]))
    return coded


def encode_live(net: Net, identity: ModelIdentity, input: str, output: str, kbps: float | None = 6.0,
                max_seconds: float = MAX_SECONDS, progress: Progress | None = None,
                lookahead: int = live.LOOKAHEAD_FRAMES) -> EncodeReport:
    """Audio → `.ncd` stream, live (`live.py`): each 0.2 s chunk is written and flushed as soon as its segment and
    `lookahead` frames after it have been read; a stream output is written directly (a regular file still
    atomically). A stream input is read as WAV as it arrives (`wavio`); a file, in any format `encode` reads. The
    output is an ordinary `.ncd` file whose chunks are one envelope segment long."""
    check_distinct(input, output)
    name = "stdin" if input == STDIO else input
    samples = 0
    try:
        with contextlib.ExitStack() as stack:
            if is_stream(input):
                reader = WavStreamReader(stack.enter_context(open_input(input)), name, max_seconds)
                blocks = reader.blocks()
            else:
                reader = stack.enter_context(AudioReader(input, max_seconds))
                blocks = reader.blocks(reader.sample_rate // 50)
            header = identity.header(reader.sample_rate, reader.channels, None, 0)
            n_q = identity.n_q_for_kbps(kbps, reader.channels)
            encoder = live.LiveEncoder(net, reader.sample_rate, reader.channels, n_q, identity.level, lookahead)
            encoder.warm()

            def source() -> Iterator[CodeBlock]:
                nonlocal samples
                for block in blocks:
                    samples += block.shape[-1]
                    if progress is not None:
                        progress(samples, None)
                    yield from encoder.push(block)
                yield from encoder.flush()

            with live_output(output) as out:
                writer = container.Writer(out, header)
                out.flush()  # the header goes out at once: a receiver can start
                _write_chunks(writer, source(), identity, header, n_q, identity.level.spacing_frames)
                writer.close(samples)
    except OSError as exc:
        raise AudioError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return EncodeReport(header, float(n_q), samples, writer.pos)


def decode_live(net: Net, identity: ModelIdentity, input: str, output: str, max_seconds: float = MAX_SECONDS,
                progress: Progress | None = None) -> DecodeReport:
    """`.ncd` stream (or file) → audio, live (`live.py`): each chunk is decoded as its bytes arrive and the audio
    written (a stream gets 16-bit WAV, flushed block by block) as soon as the next chunk's level point restores it.
    Damage is concealed with silence and reported (audio already played cannot be taken back)."""
    check_distinct(input, output)
    where = "stdin" if input == STDIO else input
    try:
        with open_input(input) as src:
            read = getattr(src, "read1", None) or src.read
            head = b""
            while True:
                try:
                    header, size = container.parse_header(head)
                    break
                except FormatError as exc:
                    more = read(1 << 12) if len(head) < container.MAX_HEADER else b""
                    if not more or "truncated" not in str(exc):
                        raise FormatError(f"{where}: {exc}") from None
                    head += more
            identity.check(header, where)
            tables = identity.tables
            layout = payload.layout(header)
            parser = container.StreamParser(header, size, layout.min_bits(tables))
            level = level_coder(header.level, header.hop_length) if header.level is not None else None
            spacing = level.spacing_frames if level else level_spacing_frames(header.model_sample_rate,
                                                                              header.hop_length)
            window, lookahead = live.live_window(spacing)
            limiter = Limiter(header.sample_rate, header.channels)
            decoder = StreamDecoder(net, header.sample_rate, None, header.channels, window, level, limiter, lookahead)
            live.warm_decoder(net, min(header.channels, 4), window)
            longest = math.floor(max_seconds * header.sample_rate)
            with live_audio_output(output, header.sample_rate, header.channels) as writer:

                def emit(pieces: list) -> None:
                    for piece in pieces:
                        if isinstance(piece, container.Chunk):
                            piece = _decoded(layout, piece, tables, header, parser.damage)
                        for block in decoder.blocks(piece):
                            writer.write(block)
                            if decoder.emitted > longest:
                                raise _too_long(where, decoder.emitted / header.sample_rate, max_seconds)
                            if progress is not None:
                                progress(decoder.emitted, None)

                emit(parser.feed(head[size:]))
                while data := read(1 << 16):
                    emit(parser.feed(data))
                emit(parser.finish())
                if parser.length is not None and parser.length >= decoder.emitted:
                    decoder.length = parser.length  # the index's length trims the last frame's padding
                for block in decoder.flush_blocks():
                    writer.write(block)
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({exc.strerror or exc})") from None
    return DecodeReport(parser.damage, decoder.emitted, header.sample_rate, limiter.touched)


def _refuse(damage: list[str]) -> FormatError:
    more = f" (+{len(damage) - 1} more)" if len(damage) > 1 else ""
    return FormatError(f"{damage[0]}{more}; nothing written (--decode-through-errors conceals damage with silence)")


def _decoded(layout, chunk: container.Chunk, tables: EntropyModel, header: container.Header,
             damage: list[str] | None) -> np.ndarray | CodeBlock | int:
    """A chunk's codes, or, when it fails to decode, a gap (int frames) with its reason appended to `damage`
    (None: `FormatError`)."""
    try:
        return layout.decode(chunk, tables)
    except FormatError as exc:
        problem = f"{chunk.label} at byte {chunk.offset}: {exc}"
        if damage is None:
            raise _refuse([problem]) from None
        # Its verified header says how many frames; silence for them only as far as its bytes could code them.
        frames = min(chunk.frame_count, container.justified_frames(header, chunk.size, layout.min_bits(tables)))
        damage.append(problem if frames == chunk.frame_count else
                      f"{problem}; {frames} of its {chunk.frame_count} frames concealed (all its bytes can hold)")
        return frames


def iter_codes(parsed: container.ParsedFile, tables: EntropyModel, damage: list[str] | None
               ) -> Iterator[np.ndarray | CodeBlock | int]:
    """Entropy-decode chunk by chunk (one chunk in memory at a time) → code blocks (`[C, n_q, k]`, or `CodeBlock`s
    with the level envelope's points for a file that has one) and gaps (ints, frames lost). With a `damage` list,
    a chunk that fails to decode becomes a gap and its reason is appended; with None, it raises `FormatError`."""
    h = parsed.header
    layout = payload.layout(h)
    frame = 0
    for chunk in parsed.chunks:
        if chunk.first_frame > frame:
            yield chunk.first_frame - frame
        yield _decoded(layout, chunk, tables, h, damage)
        frame = chunk.first_frame + chunk.frame_count
    tail = max((b for a, b in parsed.lost if b > frame), default=frame)
    if tail > frame:
        yield tail - frame


def read_codes(parsed: container.ParsedFile, tables: EntropyModel, conceal: bool
               ) -> tuple[list[np.ndarray | CodeBlock | int], list[str]]:
    """The whole file's code blocks and gaps as a list, and every problem found; damage raises unless `conceal`."""
    damage = list(parsed.damage)
    pieces = list(iter_codes(parsed, tables, damage))
    if damage and not conceal:
        raise _refuse(damage)
    return pieces, damage


def _too_long(where: str, seconds: float, max_seconds: float) -> FormatError:
    return FormatError(f"{where}: {seconds / 3600:.3g} h of audio, longer than the {max_seconds / 3600:g} h limit "
                       "(--max-hours raises it); nothing written")


def decode_file(net: Net, identity: ModelIdentity, input: str, output: str, conceal: bool = False,
                max_seconds: float = MAX_SECONDS, progress: Progress | None = None) -> DecodeReport:
    """.ncd file (or a stream) → audio file (or WAV on "-"), written atomically; damage raises unless `conceal`."""
    check_distinct(input, output)
    where, parsed = read_ncd(input, max_seconds, identity.tables)
    identity.check(parsed.header, where)
    if parsed.damage and not conceal:
        raise _refuse(parsed.damage)
    damage = list(parsed.damage)
    pieces = iter_codes(parsed, identity.tables, damage if conceal else None)
    h = parsed.header
    length = parsed.length
    if length is None:  # truncated stream without a header length: everything the codes describe
        frames = max([c.first_frame + c.frame_count for c in parsed.chunks] + [b for _, b in parsed.lost], default=0)
        length = round(frames * h.hop_length * h.sample_rate / h.model_sample_rate)
    longest = math.floor(max_seconds * h.sample_rate)
    if length > longest:  # what the file says it holds; the decoded samples are counted too, below
        raise _too_long(where, length / h.sample_rate, max_seconds)
    written = 0
    limiter = Limiter(h.sample_rate, h.channels)
    with AudioWriter(output, h.sample_rate, h.channels) as writer:
        level = level_coder(h.level, h.hop_length) if h.level is not None else None
        for block in stream_decode(net, pieces, h.sample_rate, length, h.channels, level=level, limiter=limiter):
            written += block.shape[-1]
            if written > longest:
                raise _too_long(where, written / h.sample_rate, max_seconds)
            writer.write(block)
            if progress is not None:
                progress(written, length)
    return DecodeReport(damage, written, h.sample_rate, limiter.touched)
