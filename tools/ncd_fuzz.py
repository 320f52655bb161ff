"""Structure-aware fuzzing of the .ncd reader: files built field by field with valid CRCs and hostile values.

`hostile_file(rng)` builds one file: a header (in or out of spec, usually matching the golden tiny model so that
decoding runs the model), chunks (real payloads, empty or random ones, frame numbers that jump, counts at the
bounds, junk and runs of sync words between them), an index and a trailer (right or lying), then maybe a few
flipped bytes. `run_case(data)` decodes it the way `neurocodec decode --decode-through-errors` does and checks the
budget: output no longer than the file's bytes can justify (`output_budget`, computed without the reader's
code), at most `MEMORY_BUDGET` of Python/numpy memory at once, CPU time in proportion to the output, no output
sample at full scale, and no level envelope other than the one an encoder writes decoded at all.

Used by tests/test_fuzz.py (a few hundred cases by default, 100,000 as a slow test) and tools/fuzz_ncd.py
(counts per outcome, the worst file found).
"""

from __future__ import annotations

import random
import signal
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from neurocodec import container, entropy
from neurocodec.limits import MAX_SAMPLE_RATE
from neurocodec.container import chunk_header, crc32, index_bytes
from neurocodec.container.v2 import CHUNK_SYNC as CHUNK_SYNC_V2, INDEX_SYNC as INDEX_SYNC_V2
from neurocodec.errors import FormatError

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "formats" / "golden" / "tiny.safetensors"
MEMORY_BUDGET = 256 << 20  # bytes of Python/numpy memory a case may hold at once (the model and torch excluded)
TIME_BUDGET = 10.0  # CPU seconds a case may take, plus a second per 10 million samples it writes (all channels)
SAMPLES_PER_SECOND = 10e6
HANG = 300.0  # wall-clock seconds after which a case is stopped and counted as a hang
_LOADED = None


def model():
    global _LOADED
    if _LOADED is None:
        from neurocodec.loader import load_model

        _LOADED = load_model(MODEL, device="cpu")
    return _LOADED


def _pick(rng: random.Random, *options):
    """One of `options`; a callable option is called with rng."""
    choice = rng.choice(options)
    return choice(rng) if callable(choice) else choice


def hostile_header(rng: random.Random, light: bool = False) -> container.Header:
    """`light`: at most 3 channels at ordinary rates, so that a case decodes in milliseconds (the default suite)."""
    m = model()
    own = m.identity.header(16000, 1, None)
    matching = rng.random() < 0.85
    if light:
        channels, sample_rate = rng.choice((1, 1, 2, 3)), rng.choice((8000, 16000, 44100, 48000, 1, 2**31))
    else:
        channels = _pick(rng, 1, 1, 2, 255, lambda r: r.randint(1, 255), lambda r: r.randint(256, 65535))
        sample_rate = _pick(rng, 16000, 44100, 8000, 1, MAX_SAMPLE_RATE,
                            lambda r: r.randint(1, 2**32 - 1))
    length = _pick(rng, None, lambda r: r.randint(0, 100_000), lambda r: r.randint(0, 2**64 - 2), 0)
    name = "x" * _pick(rng, 11, 0, 64, 65, 80) if rng.random() < 0.3 else own.model_name
    fields = dict(sample_rate=sample_rate, channels=channels, length=length, model_name=name)
    if not matching:
        fields.update(model_n_q=_pick(rng, 1, 4, 255, 256, 0), codebook_size=_pick(rng, 64, 2, 65536, 65537, 1),
                      hop_length=_pick(rng, 160, 1, 65536, 65537), model_sample_rate=_pick(rng, 16000, 1, 2**31),
                      model_sha256=_pick(rng, own.model_sha256, "ab" * 32),
                      entropy_sha256=_pick(rng, own.entropy_sha256, entropy.UNIFORM_SHA256))
    extensions = ((0x0042, b"abc"),) if rng.random() < 0.1 else ()
    # The level envelope: usually the model's own, sometimes none (1.0), sometimes out of spec, sometimes within
    # the spec's ranges but not what an encoder writes (a reader must refuse those too: they decide gains).
    level = _pick(rng, own.level, own.level, None, lambda r: container.LevelExtension(
        r.choice((0, 1, 7, 4096, 5000)), r.choice((-23.0, 0.0, -70.0)), r.choice((-45.0, -95.0, 0.0)),
        r.choice((1.5, 0.0, 7.0)), r.choice((33, 1, 2, 256, 300))), lambda r: container.LevelExtension(
        r.choice((own.level.spacing_frames, 1, 4096)), r.choice((-23.0, -60.0, 0.0)), r.choice((-45.0, -90.0)),
        r.choice((0.5, 1.0, 6.0)), r.choice((121, 2, 256))))
    segment = _pick(rng, own.segment_frames, own.segment_frames, 1, 4096, 0, 5000)
    return container.Header(**{**own.__dict__, **fields, "extensions": extensions, "level": level,
                               "segment_frames": segment})


def pack_header(h: container.Header) -> bytes:
    """Header bytes (2.x layout) with a valid CRC, also for values `Header.check` refuses (out of spec is the
    point)."""
    return h.pack(check=False)


def _payload(rng: random.Random, h: container.Header, frames: int, n_q: int) -> bytes:
    kind = rng.random()
    if kind < 0.45 and h.channels * n_q * frames <= 20_000 and n_q <= model().entropy.n_q:
        codes = np.array([[[rng.randrange(h.codebook_size) for _ in range(frames)] for _ in range(n_q)]
                          for _ in range(h.channels)]) % model().entropy.codebook_size
        segment = max(1, h.segment_frames)
        n_qs = [rng.randint(1, n_q) if rng.random() < 0.3 else n_q for _ in range(-(-frames // segment))]
        try:
            points = None
            if h.level is not None:
                container.LevelExtension.unpack(h.level.pack())  # refuses an out-of-spec envelope
                points = np.array([[rng.randrange(h.level.levels) for _ in range(h.level.points(frames))]
                                   for _ in range(h.channels)], np.int64).reshape(h.channels, -1)
                if rng.random() < 0.3:  # the loudest points the envelope allows, or swings between its ends
                    top = h.level.levels - 1
                    points = np.where(rng.random() < 0.5, top, (np.arange(points.shape[-1]) % 2) * top)
                    points = np.broadcast_to(points, (h.channels, points.shape[-1])).astype(np.int64)
            return entropy.encode_chunk_v2(model().entropy.coder, codes, points, h.level, np.array(n_qs), segment)
        except (FormatError, ZeroDivisionError):
            return b""  # an out-of-spec envelope: the reader refuses the header anyway
    if kind < 0.65:
        return b""
    if kind < 0.8:
        return bytes(rng.getrandbits(8) for _ in range(4 * rng.randint(1, 64)))
    return b"\x00" * (4 * rng.randint(1, 256))


def hostile_file(rng: random.Random, light: bool = False) -> bytes:
    h = hostile_header(rng, light)
    out = bytearray(pack_header(h))
    entries = []
    frame = 0
    for i in range(rng.choice((0, 1, 2, 3, 5))):
        frames = _pick(rng, 1, 75, container.MAX_CHUNK_FRAMES, lambda r: r.randint(1, 200), 0, 4097)
        n_q = _pick(rng, 1, 2, 4, lambda r: r.randint(0, 255))
        first = _pick(rng, frame, frame, frame, lambda r: r.randint(0, 2**64 - 1), frame + 10**9, 0)
        payload = _payload(rng, h, max(frames, 1), max(n_q, 1))
        size = _pick(rng, len(payload), len(payload), len(payload), 2**31, len(payload) + 4)
        head = chunk_header(first % 2**64, frames, n_q % 256, size, crc32(payload))
        if rng.random() < 0.15:
            out += _pick(rng, CHUNK_SYNC_V2 * rng.randint(1, 4000), INDEX_SYNC_V2 * rng.randint(1, 400),
                         bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 100))))
        entries.append((len(out), first % 2**64))
        out += head + payload
        frame = (first + frames) % 2**64
    if rng.random() < 0.9:
        count = _pick(rng, len(entries), len(entries), lambda r: r.getrandbits(32))
        total = _pick(rng, frame, frame, lambda r: r.getrandbits(64))
        length = _pick(rng, h.length or 0, lambda r: r.getrandbits(64), frame * 160)
        listed = entries[:count] if count <= len(entries) else entries
        index = index_bytes(listed, total % 2**64, length % 2**64, count)
        out += index if rng.random() < 0.9 else index[: -container.v2.TRAILER.size]
    for _ in range(_pick(rng, 0, 0, 0, 1, 3)):
        if out:
            out[rng.randrange(len(out))] = rng.getrandbits(8)
    if rng.random() < 0.05:
        del out[rng.randrange(len(out) + 1):]
    return bytes(out)


def output_budget(data: bytes, header: container.Header) -> int:
    """The most samples per channel a file of len(data) bytes may decode to, counted independently of the reader:
    every byte a payload byte and every 12 bytes a chunk (with its coder's slack of 64 bits), each frame costing a
    code per channel at the entropy model's cheapest, and no chunk above the largest frame count."""
    chunks = 2 * (len(data) // container.v2.CHUNK_MIN + 1)  # regions between chunks round up once each
    bits = len(data) * 8 + chunks * entropy.SLACK_BITS
    frames = min(chunks * container.MAX_CHUNK_FRAMES,
                 int(bits / (header.channels * model().entropy.coder.min_bits_per_symbol)))
    return header.max_samples(frames)


FULL_SCALE = 32767  # of the 16-bit WAV the decoder writes: no sample may reach it (limiter.py)


def _peak(path: Path) -> int:
    """The largest |sample| of a 16-bit WAV, block by block."""
    import soundfile as sf

    peak = 0
    with sf.SoundFile(str(path)) as f:
        for block in f.blocks(1 << 16, dtype="int16", always_2d=True):
            if block.size:
                peak = max(peak, int(np.abs(block.astype(np.int32)).max()))
    return peak


def with_points(data: bytes, tables: entropy.EntropyModel, points, level: container.LevelExtension | None = None
                ) -> bytes:
    """A 2.x file (our writer's) with every chunk's level points replaced by `points(chunk_points [C, P])` and
    everything else kept, checksums valid: what a crafted file can say. With `level` (same spacing), the header
    states that envelope instead and the points are coded under it."""
    import dataclasses
    import io

    from neurocodec import payload

    parsed = container.parse(data)
    h = parsed.header
    coded = h if level is None else dataclasses.replace(h, level=level)
    buf = io.BytesIO()
    writer = container.Writer(buf, h)
    for chunk in parsed.chunks:
        block = payload.layout(h).decode(chunk, tables)
        chunk_payload, top = payload.encode_chunk(tables, coded, block.codes, np.asarray(points(block.points)))
        writer.write_chunk(chunk_payload, chunk.frame_count, top)
    writer.close(parsed.length)
    out = buf.getvalue()
    size = container.parse_header(out)[1]
    return coded.pack(check=False) + out[size:]  # the same size: the index's offsets hold


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_case(data: bytes) -> tuple[str, dict]:
    """Decode `data` as `neurocodec decode --decode-through-errors` does. Returns (outcome, facts): outcome is
    "refused" (a clean one-line error), "concealed", "decoded", "escape" (any other exception), "over budget"
    (output, memory or time beyond the budget) or "hang"."""
    from neurocodec.errors import NeurocodecError

    facts: dict = {"bytes": len(data)}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "x.ncd")
        src.write_bytes(data)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, HANG)
        tracemalloc.start()
        t0, cpu0 = time.perf_counter(), time.process_time()
        try:
            report = model().decode_file(str(src), str(Path(tmp, "out.wav")), conceal=True)
            outcome = "concealed" if report.damage else "decoded"
            facts["samples"] = report.samples
        except NeurocodecError as exc:
            outcome = "refused"
            facts["error"] = str(exc)
            if "\n" in str(exc):
                outcome = "escape"
        except Hang:
            outcome = "hang"
        except Exception as exc:  # noqa: BLE001 - that is what is being counted
            outcome = "escape"
            facts["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            facts["wall_seconds"] = time.perf_counter() - t0
            facts["seconds"] = time.process_time() - cpu0  # CPU time: the budget holds on a busy machine too
            facts["peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if outcome in ("concealed", "decoded"):  # measured outside the time and memory budget
            facts["peak"] = _peak(Path(tmp, "out.wav"))
    time_budget = TIME_BUDGET
    if outcome in ("concealed", "decoded"):
        header = container.parse_header(data)[0]
        facts["budget"] = output_budget(data, header)
        time_budget += facts["samples"] * header.channels / SAMPLES_PER_SECOND
        if facts["samples"] > facts["budget"]:
            outcome = "over budget"
        if header.level is not None and header.level != container.LevelExtension.written(
                header.model_sample_rate, header.hop_length):
            outcome, facts["why"] = "over budget", "decoded a level envelope no encoder writes"
        if facts.get("peak", 0) >= FULL_SCALE:
            outcome, facts["why"] = "over budget", f"a sample at full scale ({facts['peak']})"
    if outcome != "hang" and (facts["seconds"] > time_budget or facts["peak_bytes"] > MEMORY_BUDGET):
        outcome = "over budget"
    return outcome, facts


def parse_only(data: bytes) -> str:
    """What `neurocodec info` does: parse and report (no model)."""
    from neurocodec.errors import FormatError

    try:
        container.parse(data)
    except FormatError:
        return "refused"
    return "parsed"


def file_bytes(seed: int, light: bool = False) -> bytes:
    return hostile_file(random.Random(seed), light)
