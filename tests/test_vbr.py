"""Variable-rate allocation (`neurocodec/vbr.py`) on hand-made distortion tables and signals."""

import numpy as np

from neurocodec import vbr


def test_choose_meets_the_target_with_fewer_codebooks_where_they_buy_little():
    # [n_q = 4, segments = 3]: a pause (flat), a moderate segment, a hard one (every codebook helps)
    table = np.array([[0.10, 1.0, 4.0],
                      [0.09, 0.5, 2.0],
                      [0.09, 0.3, 1.0],
                      [0.09, 0.2, 0.5]])
    counts = vbr.choose(table, reference_n_q=3)
    assert table[counts - 1, np.arange(3)].mean() <= table[2].mean() + 1e-12
    assert counts[0] == 1 and counts[2] == 4  # the pause gives up what the hard segment takes
    assert counts.sum() < 3 * 3


def test_choose_with_costs_buys_the_cheap_codebooks():
    table = np.array([[0.9, 1.0],
                      [0.6, 0.6],
                      [0.5, 0.5]])
    assert (vbr.choose(table, reference_n_q=2) == 2).all()  # codebook 3 buys too little to be worth a codebook
    # ... but in segment 1 it costs almost nothing (bits with 1, 2, 3 codebooks): there it is taken
    cost = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 20.5]])
    assert vbr.choose(table, reference_n_q=2, cost=cost).tolist() == [2, 3]


def test_segment_distances_count_added_loudness_by_the_asymmetry():
    sr, seg = 16000, 3200
    t = np.arange(4 * seg) / sr
    ref = (0.1 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    louder, quieter = ref * 1.5, ref * 0.5
    sym = [vbr.segment_distances(ref, x, sr, seg, 4, dead_zone=0) for x in (louder, quieter)]
    asym = [vbr.segment_distances(ref, x, sr, seg, 4, asymmetry=3.0, dead_zone=0) for x in (louder, quieter)]
    np.testing.assert_allclose(asym[1], sym[1], rtol=1e-6)  # what is missing counts as before
    np.testing.assert_allclose(asym[0], 3 * sym[0], rtol=1e-5)  # what is added counts three times
    assert (vbr.segment_distances(ref, ref, sr, seg, 4) == 0).all()


def test_segment_distances_up_to_fmax_ignore_the_band_above():
    sr, seg = 24000, 4800
    t = np.arange(4 * seg) / sr
    ref = (0.1 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    hiss = ref + (0.05 * np.sin(2 * np.pi * 10000 * t))[None].astype(np.float32)  # 10 kHz, above what PESQ-WB hears
    full = vbr.segment_distances(ref, hiss, sr, seg, 4)
    heard = vbr.segment_distances(ref, hiss, sr, seg, 4, fmax=8000)
    assert (full > 1e-2).all() and (heard < 0.05 * full).all()  # (the ends: window leakage of the edges)
    low = ref + (0.05 * np.sin(2 * np.pi * 3000 * t))[None].astype(np.float32)  # 3 kHz counts either way
    assert (vbr.segment_distances(ref, low, sr, seg, 4, fmax=8000) > 1e-2).all()


def test_segment_distances_ignore_what_the_dead_zone_masks():
    sr, seg = 16000, 3200
    t = np.arange(4 * seg) / sr
    ref = (0.1 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    slightly, clearly = ref * 10 ** (0.1 / 20), ref * 10 ** (6 / 20)  # +0.1 dB: loudness 0.7 % up; +6 dB: 51 %
    unmasked = vbr.segment_distances(ref, slightly, sr, seg, 4, dead_zone=0)
    assert (unmasked > 1e-3).all()
    assert (vbr.segment_distances(ref, slightly, sr, seg, 4) < 1e-4 * unmasked).all()  # the default 0.25 masks it
    # (not exactly 0: float32 rounding in bands that hold almost nothing)
    beyond = vbr.segment_distances(ref, clearly, sr, seg, 4)
    assert (beyond > 0).all() and (beyond < vbr.segment_distances(ref, clearly, sr, seg, 4, dead_zone=0)).all()


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """`[T]` at 16 kHz: a 150 Hz pulse train through a resonance, on and off every 0.3 s, with faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    gate = (np.floor(t / 0.3) % 2 == 0).astype(float)
    return (0.3 * voiced * gate + 1e-3 * rng.standard_normal(len(t))).astype(np.float64)


def test_measuring_in_windows_gives_the_whole_input_table(monkeypatch):
    """The distortion table of a long input is measured window by window (bounded memory); the windows' sums join
    into the table one window over the whole input gives, up to the codes' edge effects."""
    import soundfile as sf

    from neurocodec.loader import load_model
    from .conftest import SPEECH, TINY_MODEL

    model = load_model(TINY_MODEL, device="cpu")
    audio, sr = sf.read(SPEECH, dtype="float32", always_2d=True)
    audio = np.tile(audio.T, 3)  # about 10 s
    blocks = [audio[:, i: i + 7000] for i in range(0, audio.shape[-1], 7000)]
    whole = vbr.measure(model.net, blocks, sr, 1, 20)
    monkeypatch.setattr(vbr, "WINDOW_SECONDS", 1.0)
    monkeypatch.setattr(vbr, "CONTEXT_SECONDS", 0.5)
    windowed = vbr.measure(model.net, blocks, sr, 1, 20)
    assert windowed.shape == whole.shape == (model.codec.n_q, -(-audio.shape[-1] // (20 * 160)))
    assert np.allclose(windowed, whole, rtol=0.05, atol=1e-3)
    assert (vbr.choose(windowed, 2) == vbr.choose(whole, 2)).mean() > 0.9
