"""The `.ncd` reader: a whole file in memory → header, verified chunks, index, and everything found damaged.

Every length read from a file is checked against a fixed bound and against what is left of the file before it is
used, and a chunk's payload length is trusted only after the chunk header's check matched. A check proves that a
field is as written, not that it is sane: frame numbers, frame counts and lengths are also checked against what the
bytes present can hold (`ParsedFile.length` and the lost frames never exceed what the file's chunks and index
justify), and resynchronisation after damage costs time linear in the file's size. The layout's framing (1.x or
2.x) is chosen once from the header (`framing`).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

from . import v1, v2
from .chunk import Chunk, ParsedFile
from .header import MAX_CHUNK_FRAMES, Header, parse_header

_FRAMINGS = {1: v1, 2: v2}


def framing(header: Header) -> ModuleType:
    """The framing module of the header's layout (`v1` or `v2`): sync words, chunk and index readers, trailer."""
    return _FRAMINGS[header.version_major]


def justified_frames(header: Header, nbytes: int, min_bits_per_symbol: float | None = None) -> int:
    """The most frames `nbytes` bytes of chunks could hold: a chunk per `framing(header).MIN_CHUNK_BYTES` bytes of at most
    `MAX_CHUNK_FRAMES` frames, and with the entropy model's cheapest code, a code per channel and frame at that
    cost (plus the range coder's slack of 64 bits per chunk)."""
    chunks = -(-nbytes // framing(header).MIN_CHUNK_BYTES)
    frames = chunks * MAX_CHUNK_FRAMES
    if min_bits_per_symbol:
        frames = min(frames, int((nbytes * 8 + chunks * 64) / (header.channels * min_bits_per_symbol)))
    return frames


class _Scanner:
    """Finds the next place after damage where a chunk or the index verifies, in time linear in the file's size.

    Sync-word searches only move forward (each byte is searched once per sync word), a candidate's fixed-size
    header is checked once, and the checksum work spent in vain on payloads and indexes that fail is capped at a
    few times the file's size: a file built of fake sync words and chunk headers with valid CRCs cannot make the
    reader quadratic."""

    def __init__(self, data: bytes, header: Header):
        self.data, self.header = data, header
        self.framing = framing(header)
        syncs = (self.framing.CHUNK_SYNC, self.framing.INDEX_SYNC)
        self.found = {sync: -1 for sync in syncs}  # the last search result per sync word (len(data): none)
        self.searched_from = {sync: -1 for sync in syncs}
        self.budget = 4 * len(data) + 65536  # bytes of payload/index CRC work on failed candidates
        self.exhausted = False
        self.searched = 0  # bytes the sync-word searches went over (for tests: at most twice the file)

    def _next(self, sync: bytes, start: int) -> int:
        if self.found[sync] < start or self.searched_from[sync] > start:
            hit = self.data.find(sync, start)
            self.found[sync] = len(self.data) if hit < 0 else hit
            self.searched_from[sync] = start
            self.searched += self.found[sync] - start
        return self.found[sync]

    def resync(self, start: int) -> int:
        """The first offset ≥ `start` where a chunk or the index verifies; len(data) if none (or out of budget)."""
        data = self.data
        pos = start
        while pos < len(data) and not self.exhausted:
            pos = min(self._next(self.framing.CHUNK_SYNC, pos), self._next(self.framing.INDEX_SYNC, pos))
            if pos >= len(data):
                break
            found = self.framing.chunk_at(data, pos, self.header)
            if isinstance(found, Chunk) or self.framing.index_at(data, pos) is not None:
                return pos
            # A failed candidate costs a fixed-size header check, and beyond it what was checksummed in vain: a
            # payload whose verified header gave its size, or an index's entries. That part is budgeted.
            self.budget -= found.spent + self.framing.index_cost(data, pos)
            self.exhausted = self.budget < 0
            pos += 1
        return len(data)


def _misplaced(chunk: Chunk, at: int, expected: int, damaged: int, room: int) -> str | None:
    """Why a verified chunk at byte `at` cannot be taken, when the next frame expected is `expected` and the
    `damaged` bytes before it could hold `room` lost frames; None when it can."""
    gap = chunk.first_frame - expected
    if gap < 0:
        return f"{chunk.label} at byte {at} overlaps earlier frames; skipped"
    if gap > room:
        return (f"{chunk.label} at byte {at} starts at frame {chunk.first_frame}, but the {damaged} damaged bytes "
                f"before it hold at most {room} lost frames; skipped")
    return None


def parse(data: bytes, min_bits_per_symbol: float | None = None) -> ParsedFile:
    """Read a whole .ncd file held in memory.

    The header must be intact (else `FormatError`). After it, damage is recorded, not raised: a bad chunk is
    skipped by scanning for the next sync word whose header CRC verifies; frame numbers show what was lost.
    Lost frames are believed only as far as the damaged bytes where they were could have held them: a chunk per
    the layout's smallest chunk of at most `MAX_CHUNK_FRAMES` frames, and, given the entropy model's
    `min_bits_per_symbol`, a code of every channel per frame at that cost. The index is believed as far as its
    entries allow, and the length as far as the frames justify: a file's fields never claim more audio than its
    bytes can carry.
    """
    header, pos = parse_header(data)
    layout = framing(header)

    def room(damaged: int) -> int:
        return justified_frames(header, damaged, min_bits_per_symbol)

    scanner = _Scanner(data, header)
    chunks: list[Chunk] = []
    damage: list[str] = []
    lost: list[tuple[int, int]] = []
    expected_frame = 0
    last_end = pos  # end of the header or of the last chunk read
    index_info = None
    while pos < len(data):
        found = layout.chunk_at(data, pos, header)
        if isinstance(found, Chunk):
            size = found.size
            problem = _misplaced(found, pos, expected_frame, pos - last_end, room(pos - last_end))
            if problem:
                damage.append(problem)
            else:
                if found.first_frame > expected_frame:
                    lost.append((expected_frame, found.first_frame))
                chunks.append(found)
                expected_frame = found.first_frame + found.frame_count
                last_end = pos + size
            pos += size
            continue
        index_info = layout.index_at(data, pos)
        if index_info is not None:
            break
        damage.append(f"byte {pos} (after {chunks[-1].label if chunks else 'no chunk'}): {found}")
        pos = scanner.resync(pos + 1)
        if scanner.exhausted:
            damage.append(f"resynchronisation gave up at byte {pos}: too many false sync words")
            pos = len(data)
    total_frames = None
    claimed = header.length
    if index_info is None:
        damage.append(f"truncated: no index or trailer after byte {min(pos, len(data))} (file is {len(data)} bytes)")
        frames = expected_frame
    else:
        count, total_frames, index_length, end = index_info
        # Chunks lost at the end lay between the last chunk read and the index; the index lists them too.
        most = expected_frame + min(max(0, count - len(chunks)) * MAX_CHUNK_FRAMES, room(pos - last_end))
        if not expected_frame <= total_frames <= most:
            damage.append(f"index claims {total_frames} frames: {expected_frame} were read and at most {most} can "
                          "be justified; the index is not trusted")
            total_frames = max(expected_frame, min(total_frames, most))
        claimed = index_length
        if header.length is not None and header.length != index_length:
            damage.append(f"index length {index_length} disagrees with header length {header.length}")
        if end + layout.TRAILER_SIZE > len(data):
            damage.append(f"truncated: trailer missing at byte {end}")
        else:
            intact = layout.trailer_intact(data, end, pos)
            if not intact:
                damage.append(f"damaged trailer at byte {end}")
            elif end + layout.TRAILER_SIZE != len(data):
                damage.append(f"{len(data) - end - layout.TRAILER_SIZE} unexpected bytes after the trailer")
        if expected_frame < total_frames:
            lost.append((expected_frame, total_frames))
        frames = total_frames
    length = claimed
    if claimed is not None and claimed > header.max_samples(frames):
        length = header.max_samples(frames)
        damage.append(f"length {claimed} samples is more than the {frames} frames present can hold; "
                      f"decoding stops at {length}")
    for a, b in lost:
        damage.append(f"frames {a}-{b - 1} lost")
    return ParsedFile(header, chunks, length, total_frames, len(data), damage, lost)


class StreamParser:
    """A .ncd stream read as its bytes arrive (live decoding), with `parse`'s checks: `feed(data)` returns the
    chunks that became complete, and ints for frames lost before them; `finish()`, at the end of the stream,
    what is left. `damage` lists what was found wrong; `length` is the index's (None until it has come).

    Memory: the bytes of the chunk being completed (its verified header bounds them) or of the index at the end;
    bytes that cannot start a chunk are dropped as they are scanned. Time: linear in the stream's bytes (checksum
    work on false candidates is budgeted as in `parse`)."""

    def __init__(self, header: Header, header_size: int, min_bits_per_symbol: float | None = None):
        self.header, self.framing, self.min_bits = header, framing(header), min_bits_per_symbol
        self.buf = b""
        self.base = header_size  # file offset of buf[0]
        self.expected = 0  # the next frame
        self.last_end = header_size  # end of the header or of the last chunk taken
        self.damage: list[str] = []
        self.budget = 65536
        self.index: tuple[int, int, int, int] | None = None
        self.ended = False  # the index came, or resynchronisation gave up: the rest is not read
        self.length: int | None = None
        self.chunks = 0  # chunks taken

    def feed(self, data: bytes) -> list[Chunk | int]:
        if self.ended:
            return []
        self.buf += data
        self.budget += 4 * len(data)
        return self._scan(eof=False)

    def finish(self) -> list[Chunk | int]:
        out = [] if self.ended else self._scan(eof=True)
        if self.index is None:
            if not any(d.startswith("resynchronisation") for d in self.damage):
                self.damage.append(f"the stream ended at byte {self.base + len(self.buf)} without its index (the "
                                   "sender stopped early?)")
            return out
        count, total, length, _ = self.index
        most = self.expected + justified_frames(self.header, max(0, self.base - self.last_end), self.min_bits)
        if total > self.expected:
            lost = min(total, most) - self.expected
            if lost > 0:
                self.damage.append(f"frames {self.expected}-{self.expected + lost - 1} lost")
                out.append(lost)
                self.expected += lost
        self.length = min(length, self.header.max_samples(self.expected))
        return out

    def _incomplete(self, data: bytes, pos: int, reason: str) -> bool:
        """Whether more bytes could still make a chunk or the index verify at `pos` (waiting is bounded: by a
        verified chunk header's payload size, or by the index the chunks seen so far can have)."""
        left = len(data) - pos
        sync = self.framing.INDEX_SYNC
        if left < len(sync) or (data[pos: pos + len(sync)] == sync and left < 64 + 20 * (self.chunks + 16)):
            return True
        return "truncated" in reason and (left < getattr(self.framing, "CHUNK_MAX", 64) or "payload needs" in reason)

    def _scan(self, eof: bool) -> list[Chunk | int]:
        data, pos, out = self.buf, 0, []
        while pos < len(data) and not self.ended:
            found = self.framing.chunk_at(data, pos, self.header)
            if isinstance(found, Chunk):
                at = self.base + pos
                gap = found.first_frame - self.expected
                room = justified_frames(self.header, at - self.last_end, self.min_bits)
                problem = _misplaced(found, at, self.expected, at - self.last_end, room)
                if problem:
                    self.damage.append(problem)
                else:
                    if gap:
                        self.damage.append(f"frames {self.expected}-{found.first_frame - 1} lost")
                        out.append(gap)
                    out.append(dataclasses.replace(found, offset=at))  # its place in the stream, for messages
                    self.chunks += 1
                    self.expected = found.first_frame + found.frame_count
                    self.last_end = at + found.size
                pos += found.size
                continue
            index = self.framing.index_at(data, pos)
            if index is not None:
                self.index, self.ended = index, True
                break
            if not eof and self._incomplete(data, pos, found):
                break
            self.damage.append(f"byte {self.base + pos}: {found}")
            self.budget -= found.spent + self.framing.index_cost(data, pos)
            if self.budget < 0:
                self.damage.append(f"resynchronisation gave up at byte {self.base + pos}: too many false sync words")
                self.ended = True
                break
            hits = [h for h in (data.find(sync, pos + 1) for sync in (self.framing.CHUNK_SYNC, self.framing.INDEX_SYNC))
                    if h >= 0]
            # Unless the stream has ended, its last bytes may begin a sync word.
            pos = min(hits) if hits else len(data) if eof else max(pos + 1, len(data) - 3)
        self.buf, self.base = data[pos:], self.base + pos
        return out
