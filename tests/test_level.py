"""The level side information: envelope analysis, streaming, restoration, its cost, and damage to it."""

from __future__ import annotations

import numpy as np
import pytest

from neurocodec import container, entropy
from neurocodec.audio import read_audio, resample
from neurocodec.errors import FormatError
from neurocodec.identity import level_coder, level_extension
from neurocodec.level import CONTEXT_POINTS, HEADROOM_DB, RANGE_DB, LevelCoder, LevelNormalizer, LevelRestorer
from .conftest import SPEECH

SR = 24000
CODER = LevelCoder.for_model(SR, 320)  # the default model's geometry: a point per 15 frames (0.2 s)


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.square(x.astype(np.float64)).mean() + 1e-20))


def sine(seconds: float, level_db: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR), dtype=np.float64) / SR
    return (np.sqrt(2) * 10 ** (level_db / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def cat(parts, axis=-1) -> np.ndarray:
    return np.concatenate(parts, axis=axis)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio, sr = read_audio(SPEECH)
    return resample(audio.mean(0, keepdims=True), sr, SR)


def test_spacing_follows_the_frame_rate():
    assert (CODER.spacing_frames, CODER.spacing_samples) == (15, 4800)
    assert LevelCoder.for_model(16000, 160).spacing_frames == 20
    assert LevelCoder.for_model(8000, 4000).spacing_frames == 1


def test_normalise_then_restore_is_exact_and_levels_the_audio(speech):
    x = cat([speech * 10 ** (-20 / 20), speech * 10 ** (14 / 20)], axis=0)  # the clip at two levels
    y, points = CODER.normalize(x)
    assert points.shape == (2, -(-x.shape[-1] // 4800))
    assert np.allclose(CODER.restore(y, points), x, atol=1e-6)
    # Both come out at the same level: the model sees one level, whatever the input's.
    assert abs(db(y[0]) - db(y[1])) < 1.0 and abs(db(y[0]) - CODER.target_db) < 4


@pytest.mark.parametrize("block", [97, 4800, 20000])
def test_streaming_matches_the_whole_signal(speech, block):
    x = cat([speech, 0.1 * speech[:, ::-1]], axis=0)
    whole, points = CODER.normalize(x)
    normalizer = LevelNormalizer(CODER, 2)
    parts = [normalizer.push(x[:, i:i + block]) for i in range(0, x.shape[-1], block)]
    # What it holds is bounded (about 2 s), not the input's length.
    assert normalizer.levels.shape[-1] <= 2 * CONTEXT_POINTS + 4
    assert normalizer.held.shape[-1] <= (CONTEXT_POINTS + 3) * CODER.spacing_samples
    parts.append(normalizer.push(x[:, :0], last=True))
    assert np.array_equal(cat([p[1] for p in parts]), points)
    assert np.allclose(cat([p[0] for p in parts]), whole, atol=1e-7)
    # The decoder's stream, with points arriving chunk by chunk ahead of the audio, undoes it.
    restorer = LevelRestorer(CODER, 2)
    out, given = [], 0
    for i in range(0, x.shape[-1], block):
        due = min(points.shape[-1], (i + block) // 4800 + 2)
        restorer.add_points(points[:, given:due])
        given = due
        out.append(restorer.push(whole[:, i:i + block]))
    restorer.add_points(points[:, given:])
    out.append(restorer.push(whole[:, :0], last=True))
    assert np.allclose(cat(out), x, atol=1e-6)


def test_a_slow_fade_and_a_sudden_onset_have_no_gain_steps():
    fade = sine(8, -50) * np.power(10.0, np.linspace(0, 40, 8 * SR) / 20).astype(np.float32)  # -50 → -10 dBFS over 8 s
    onset = cat([np.zeros(SR, np.float32), sine(2, -6)])  # silence, then a loud tone at once
    for x in (fade, onset):
        points = CODER.analyse(x)
        gain = CODER.gains_db(points, x.shape[-1])
        # Linear in dB between points 0.2 s apart: no sample-to-sample jump, at chunk boundaries or anywhere.
        assert float(np.abs(np.diff(gain)).max()) < 0.01
    y, _ = CODER.normalize(fade)
    seg = y[SR:7 * SR].reshape(-1, 4800)
    levels = 10 * np.log10(np.square(seg).mean(-1))
    assert float(levels.max() - levels.min()) < 3.0  # the fade is levelled (within two 1.5 dB steps)
    y, _ = CODER.normalize(onset)
    # The gain is already down when the onset arrives: no overshoot into clipping.
    assert float(np.abs(y).max()) <= 10 ** ((CODER.target_db + HEADROOM_DB + CODER.step_db) / 20)
    assert float(np.abs(y[SR + 4800:]).max()) < 10 ** ((CODER.target_db + 3 + CODER.step_db) / 20) * np.sqrt(2)


def test_pauses_and_background_noise_are_not_pulled_up_to_speech_level():
    loud = sine(2, -16)
    pause = (np.random.default_rng(0).standard_normal(int(1.0 * SR)) * 10 ** (-66 / 20)).astype(np.float32)  # room noise 50 dB below, between two phrases
    y, _ = CODER.normalize(cat([loud, pause, loud]))
    assert db(y[2 * SR + 2400: 3 * SR - 2400]) < CODER.target_db - RANGE_DB + 2
    # Alone, a quiet passage is raised by at most target - floor (22 dB), never to the target.
    y, _ = CODER.normalize(pause)
    assert db(y) < -66 + (CODER.target_db - CODER.floor_db) + 0.5


def test_side_information_costs_well_under_a_tenth_of_a_kbps(speech):
    level = level_extension(CODER)
    points = CODER.analyse(speech * 10 ** (-6 / 20))
    per_chunk = [points[:, i:i + 5] for i in range(0, points.shape[-1], 5)]  # 1 s chunks of 75 frames
    bits = sum(entropy.level_bits(p, level) for p in per_chunk)
    kbps = bits / (speech.shape[-1] / SR) / 1000
    assert 0.001 < kbps < 0.05, kbps


def test_the_extension_round_trips_and_points_decode():
    level = level_extension(CODER)
    assert container.LevelExtension.unpack(level.pack()) == level
    assert level_coder(level, 320) == CODER
    table = entropy.level_table(level.levels)
    no_change = table[level.levels - 1]
    assert table.sum() == entropy.TOTAL and table.min() >= 1 and no_change > 4 * np.delete(table, level.levels - 1).max()
    codes = np.random.default_rng(0).integers(0, 64, (2, 3, 40))
    points = np.array([[0, 32, 31], [16, 16, 2]])
    model = entropy.uniform_model(4, 64)
    payload = entropy.encode_chunk(model, codes, points, level)
    got_codes, got_points = entropy.decode_chunk(model, payload, 2, 3, 40, level)
    assert np.array_equal(got_codes, codes) and np.array_equal(got_points, points)
    assert np.array_equal(entropy.decode_points(payload, 2, 40, level), points)
    with pytest.raises(FormatError, match="do not fit"):
        entropy.encode_chunk(model, codes, points[:, :2], level)


def test_a_point_outside_the_envelope_is_damage_never_a_gain():
    """A payload whose CRCs verify but whose changes walk a point past the top: the chunk is refused (concealed
    by the reader), the point never becomes a gain."""
    import constriction

    level = level_extension(CODER)
    model = entropy.uniform_model(1, 64)
    probs = entropy.level_table(level.levels).astype(np.float64) / entropy.TOTAL
    family = constriction.stream.model.Categorical(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    changes = np.array([60, 30]) + level.levels - 1  # from the reference point 44: 104, then 134 > 120
    enc.encode(changes.astype(np.int32), family, np.tile(probs, (2, 1)))
    enc.encode(np.zeros(20, np.int32), family, np.tile(entropy.uniform_freqs(64) / entropy.TOTAL, (20, 1)))
    payload = enc.get_compressed().astype("<u4").tobytes()
    with pytest.raises(FormatError, match="outside the envelope's range"):
        entropy.decode_chunk(model, payload, 1, 1, 20, level)


def test_chunks_off_the_envelope_grid_are_refused_and_skipped():
    import io

    level = container.LevelExtension.written(16000, 160)  # a point every 20 frames
    h = container.Header(16000, 1, None, "t", "ab" * 8, "00" * 8, 1, 64, 160, 16000, (), 0, level)
    model = entropy.MixModel.uniform(1, 64)
    buf = io.BytesIO()
    w = container.Writer(buf, h)
    codes = np.zeros((1, 1, 7), np.int64)

    def payload():
        return entropy.encode_chunk_v2(model, codes, np.zeros((1, 1), np.int64), level, np.ones(1), 15)

    w.write_chunk(payload(), 7, 1)
    with pytest.raises(FormatError, match="multiples of 20"):
        w.write_chunk(payload(), 7, 1)
    # The same two chunks written past the writer's check: the reader skips the second as damage.
    w.next_frame = 20
    offset = w.pos
    w.write_chunk(payload(), 7, 1)
    w.close(27 * 160)
    data = buf.getvalue()
    second = container.v2.chunk_at(data, offset, h)  # at frame 20 after 7 frames: skipped as it stands
    crafted = container.chunk_header(7, 7, 1, len(second.payload), container.crc32(second.payload))  # off the grid
    data = data[: second.offset] + crafted + data[second.offset + second.header_size:]
    parsed = container.parse(data)
    assert len(parsed.chunks) == 1 and any("not a multiple of the level envelope" in d for d in parsed.damage)


def test_the_closed_loop_corrects_a_model_that_loses_level(speech):
    """A stand-in model 6 dB soft on the first half and 2 dB loud on the second: the corrected points restore
    the input's level in each half (within what 1.5 dB steps allow, their rounding carried), whatever the
    blocks the streams arrive in; near-silence is left alone."""
    from neurocodec.level import LevelLoop

    x = cat([speech, np.zeros((1, SR), np.float32), speech]) * np.float32(10 ** (-18 / 20))
    xn, points = CODER.normalize(x)
    half = x.shape[-1] // 2
    yn = cat([xn[:, :half] * 10 ** (-6 / 20), xn[:, half:] * 10 ** (2 / 20)])
    results = []
    for block in (x.shape[-1], 4321):
        loop = LevelLoop(CODER, 1)
        out, given = [], 0
        for i in range(0, x.shape[-1], block):
            due = min(points.shape[-1], (i + block) // 4800)
            out.append(loop.push(xn[:, i:i + block], points[:, given:due], yn[:, i:i + block]))
            given = due
        out.append(loop.push(xn[:, :0], points[:, given:], yn[:, :0], last=True))
        results.append(cat(out))
    assert np.array_equal(results[0], results[1]) and results[0].shape == points.shape
    y = CODER.restore(yn, results[0])
    quiet = x.shape[-1] // 2 - SR // 2, x.shape[-1] // 2 + SR // 2  # the second of silence in the middle
    for a, b in ((0, quiet[0] - 4800), (quiet[1] + 4800, x.shape[-1])):
        assert abs(db(y[:, a:b]) - db(x[:, a:b])) < 0.3
    assert float(np.abs(y[:, quiet[0] + 9600: quiet[1] - 9600]).max()) == 0.0
