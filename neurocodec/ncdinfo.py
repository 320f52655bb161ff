"""Reading `.ncd` files without a model: the bounded read, the name of the model that made a file, and what
`neurocodec info` shows. No torch here: `info` starts in a fraction of a second.
"""

from __future__ import annotations

import math
import os

from . import container, payload
from .checkpoint import bundled_name
from .container import v1, v2
from .entropy import EntropyModel, level_bits
from .errors import FormatError, InputError
from .fileio import is_stream, open_input, read_bounded
from .limits import MAX_SECONDS

INFO_SCHEMA = "neurocodec-info/2"  # `info --json`: a new name when a field changes meaning or goes away


def model_label(header: container.Header) -> str:
    """The name of the model that made a file: its header's (1.x), else the bundled model with its id (2.x),
    else "unknown"."""
    return header.model_name or bundled_name(header.model_sha256) or "unknown"


def max_bytes(header: container.Header, seconds: float) -> int:
    """The most bytes a valid file of `seconds` can take, in either layout: every frame in its own chunk (with its
    index entry, at most 2 varints in 2.x), every code, level point and segment count at the coder's worst 32
    bits. A longer input is refused before it is read whole."""
    chunk = max(v1.CHUNK_HEADER_SIZE, v2.CHUNK_MAX)
    entry = max(v1.INDEX_ENTRY.size, 2 * container.MAX_VARINT)
    per_frame = chunk + entry + header.channels * (header.model_n_q + 1) * 4 + 4
    frames = math.ceil(seconds * header.model_sample_rate / header.hop_length) + 1
    return container.MAX_HEADER + frames * per_frame + v1.TRAILER.size + v1.INDEX_HEAD.size + 4


def read_ncd(input: str, max_seconds: float = MAX_SECONDS, tables: EntropyModel | None = None
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
        raise InputError(f"{where}: cannot read ({exc.strerror or exc})") from None
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    if data is None:
        raise FormatError(f"{where}: longer than {max_seconds / 3600:g} h of audio can be (--max-hours raises the "
                          "limit)")
    try:
        return where, container.parse(data, payload.layout(header).min_bits(tables) if tables else None)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def describe(input: str, max_seconds: float = MAX_SECONDS) -> dict:
    """What `neurocodec info` shows (`docs/info.md` lists the fields of `--json`): header facts, chunk statistics,
    real bitrate, damage. Needs no model and no torch."""
    where, parsed = read_ncd(input, max_seconds)
    h = parsed.header
    frames = parsed.total_frames if parsed.total_frames is not None else sum(c.frame_count for c in parsed.chunks)
    duration = (parsed.length / h.sample_rate) if parsed.length is not None else frames * h.hop_length / h.model_sample_rate
    bits = math.log2(h.codebook_size)
    frame_rate = h.model_sample_rate / h.hop_length
    payload_bits = sum(len(c.payload) for c in parsed.chunks) * 8
    level, level_kbps, envelope_bits = "none (version 1.0: the level is the model's)", None, 0.0
    lv = h.level
    if lv is not None:
        level = lv.describe(frame_rate)
    per_chunk, coded = [], 0  # codebooks per chunk (mean over its frames), codes coded per channel
    layout = payload.layout(h)
    for c in parsed.chunks:
        try:
            points, present = layout.side(c)
        except FormatError as exc:
            parsed.damage.append(f"{c.label} at byte {c.offset}: {exc}")
            continue
        if points is not None:
            envelope_bits += level_bits(points, lv)
        per_chunk.append(float(present.mean()))
        coded += int(present.sum())
    if lv is not None:
        level_kbps = round(envelope_bits / duration / 1000, 4) if duration > 0 else None
    fixed = coded * bits * h.channels
    distinct = sorted(set(round(x, 2) for x in per_chunk))
    return {
        "schema": INFO_SCHEMA,
        "file": where,
        "version": h.version,
        "model": model_label(h),
        "model_id": h.model_sha256,
        "model_id_names": h.model_id_names,
        "encoder_id": h.encoder[0] if h.encoder else None,
        "effort": h.encoder[1] if h.encoder else None,
        "entropy_model": "uniform" if not h.entropy_sha256.strip("0") else h.entropy_sha256,
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
        "payload_vs_fixed": round(payload_bits / fixed, 3) if fixed else None,
        "framing_pct": round(100 * (parsed.size - payload_bits / 8) / parsed.size, 2) if parsed.size else None,
        "level": level,
        "level_kbps": level_kbps,
        "size_bytes": parsed.size,
        "damage": parsed.damage,
    }
