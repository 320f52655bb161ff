"""Variable-rate allocation (`neurocodec/vbr.py`) on hand-made distortion tables and signals."""

import sys
from pathlib import Path

import numpy as np

from neurocodec import vbr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import pesq_like  # noqa: E402  (scripts/pesq_like.py)
import vbr_allocations  # noqa: E402  (scripts/vbr_allocations.py)


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


def test_one_lambda_across_files_moves_codebooks_to_where_they_buy_most():
    # two files of one segment each, [n_q = 3, 1]: in the first, codebook 2 buys 0.3; in the second, codebook 3 buys 0.8
    easy, hard = np.array([[0.5], [0.2], [0.1]]), np.array([[3.0], [1.0], [0.2]])
    assert [vbr.choose(t, reference_n_q=2).tolist() for t in (easy, hard)] == [[2], [2]]  # each file on its own
    counts = vbr_allocations.choose_all([easy, hard], reference=2)
    assert [c.tolist() for c in counts] == [[1], [3]]  # the same codebooks, spent where they buy more
    assert (easy[counts[0] - 1, 0] + hard[counts[1] - 1, 0]) / 2 <= (easy[1, 0] + hard[1, 0]) / 2


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


def test_pesq_like_sees_no_disturbance_in_a_copy_and_charges_a_segment_for_its_noise():
    ref = _speechlike(3.0)
    sym, asym = pesq_like.frame_disturbances(ref, ref)
    assert np.all(sym == 0) and np.all(asym == 0) and pesq_like.raw_mos(sym, asym) == 4.5
    # a global gain is equalised away (P.862 levels both signals), noise is not
    quiet = pesq_like.raw_mos(*pesq_like.frame_disturbances(ref, 0.5 * ref))
    noisy_everywhere = ref + 0.05 * np.random.default_rng(1).standard_normal(len(ref))
    assert quiet > 4.4 and pesq_like.raw_mos(*pesq_like.frame_disturbances(ref, noisy_everywhere)) < quiet - 0.3
    # decodings [reference, noisier]: one segment taken from the noisier costs only where it is
    segment = 0.2 * 16000
    drops = pesq_like.segment_drops(ref, [ref, noisy_everywhere], reference=1, segment_samples=segment, segments=15)
    assert drops.shape == (2, 15) and np.all(drops[0] == 0)
    assert np.all(drops[1] > 0) and drops[1].max() < 0.5 * (4.5 - pesq_like.raw_mos(
        *pesq_like.frame_disturbances(ref, noisy_everywhere)))
