"""Losses and spectral features against independent references (numpy, librosa's own definitions)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from neurocodec.spectral import MelSpectrogram, log_mel, stft
from neurocodec.train.losses import ComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss

SR = 24000


def test_the_packaged_filterbanks_are_librosas():
    """`neurocodec/mel_tables.npz` (tools/mel_tables.py) stands in for librosa at common rates: exactly its output."""
    from neurocodec.dsp import _tables, mel_filters

    tables = _tables()
    assert len(tables) == 24
    for name, table in tables.items():
        sr, window, n_mels = map(int, name.split("_"))
        reference = librosa.filters.mel(sr=sr, n_fft=window, n_mels=n_mels, htk=False, norm="slaney")
        assert table.dtype == reference.dtype and np.array_equal(table, reference), name
        assert mel_filters(sr, window, n_mels) is table
    assert mel_filters(16000, 512, 64, fmax=8000.0) is not tables["16000_512_64"]  # other bounds: librosa's own


@pytest.mark.parametrize("window, n_mels", [(32, 5), (256, 40), (2048, 320)])
def test_filters_are_librosa_slaney_triangles(window, n_mels):
    fb = MelSpectrogram(SR, window, n_mels).filters.numpy()
    assert np.allclose(fb, librosa.filters.mel(sr=SR, n_fft=window, n_mels=n_mels, htk=False, norm="slaney"))
    assert fb.min() >= 0
    # Each row: a triangle on the mel scale whose peak sits at its band's centre frequency.
    edges = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=SR / 2, htk=False)
    freqs = np.linspace(0, SR / 2, window // 2 + 1)
    spacing = SR / window
    for m, row in enumerate(fb):
        if row.max() == 0:  # bands narrower than one bin at tiny windows are empty in librosa too
            continue
        peak = freqs[int(np.argmax(row))]
        assert abs(peak - edges[m + 1]) <= spacing
        support = freqs[row > 0]
        assert support.min() >= edges[m] - 1e-6 and support.max() <= edges[m + 2] + 1e-6
        rising = row[(freqs >= edges[m]) & (freqs <= edges[m + 1])]
        falling = row[(freqs >= edges[m + 1]) & (freqs <= edges[m + 2])]
        assert np.all(np.diff(rising) >= -1e-9) and np.all(np.diff(falling) <= 1e-9)


@pytest.mark.parametrize("freq", [220.0, 1000.0, 5000.0])
def test_pure_tone_lands_in_its_mel_band(freq):
    t = np.arange(SR) / SR
    tone = torch.from_numpy(np.sin(2 * np.pi * freq * t).astype(np.float32))[None]
    n_mels = 80
    mel = MelSpectrogram(SR, 1024, n_mels)(tone)[0].mean(dim=-1).numpy()
    edges = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=SR / 2, htk=False)
    band = int(np.argmax(mel))
    assert edges[band] <= freq <= edges[band + 2]


def test_stft_magnitude_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32)
    win, hop = 512, 128
    ours = stft(torch.from_numpy(x)[None], win)[0].abs().numpy()
    padded = np.pad(x, win // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann, as torch.hann_window
    frames = np.stack([padded[i: i + win] * window for i in range(0, len(padded) - win + 1, hop)], axis=1)
    ref = np.abs(np.fft.rfft(frames, axis=0))
    assert ours.shape == ref.shape
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-3)


def test_log_mel_clamps_at_1e5():
    assert torch.equal(log_mel(torch.tensor([0.0, 1e-7, 1.0])), torch.tensor([-5.0, -5.0, 0.0]))


def _speech(speech) -> torch.Tensor:
    audio, sr = speech
    from neurocodec.audio import resample

    return torch.from_numpy(resample(audio, sr, SR)[:, :SR])[None]


def test_losses_are_zero_on_identity_and_grow_with_damage(speech):
    x = _speech(speech)
    mel = MultiScaleMelLoss(SR, (32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320))
    losses = {"mel": lambda a, b: mel(a, b).log_mel, "linear": lambda a, b: mel(a, b).linear,
              "stft": MultiResolutionSTFTLoss(), "complex": ComplexSTFTLoss()}
    for name, fn in losses.items():
        assert float(fn(x, x)) == pytest.approx(0.0, abs=1e-6), name
        small = float(fn(x, x + 0.003 * torch.randn_like(x)))
        large = float(fn(x, x + 0.03 * torch.randn_like(x)))
        assert 0 < small < large, name


def test_level_loss_is_caught_by_linear_term_and_phase_by_complex_term(speech):
    x = _speech(speech)
    mel = MultiScaleMelLoss(SR, (256, 1024), (40, 80))
    quiet = 0.6 * x
    assert float(mel(x, quiet).linear) > 0.1 * float(mel(x, torch.zeros_like(x)).linear)
    # The level term measures a uniform gain: |log10 0.6| per band and scale, except bands silent in both (this
    # clip was resampled from 16 kHz, so nothing lies above 8 kHz), which cost nothing.
    level = float(mel(x, quiet).level)
    assert 0.85 * 2 * abs(np.log10(0.6)) < level <= 2 * abs(np.log10(0.6)) + 1e-6
    assert float(mel(x, x).level) == 0.0
    # A phase-scrambled copy has the same magnitudes: the log-mel barely sees it, the complex loss does.
    spec = torch.stft(x[0], 1024, 256, window=torch.hann_window(1024), return_complex=True)
    scrambled = torch.istft(spec.abs() * torch.exp(1j * 2 * np.pi * torch.rand(spec.shape)), 1024, 256,
                            window=torch.hann_window(1024), length=x.shape[-1])[None]
    complex_loss = ComplexSTFTLoss((1024,))
    silence = torch.zeros_like(x)
    # Against silence as the yardstick: random phase costs the complex loss as much as losing the signal, while
    # the log-mel loss (magnitudes only) sees a small fraction of that.
    assert float(complex_loss(x, scrambled)) > 0.8 * float(complex_loss(x, silence))
    assert float(mel(x, scrambled).log_mel) < 0.25 * float(mel(x, silence).log_mel)


def test_random_filterbank_is_not_a_mel_filterbank():
    """The bug behind the collapse this project exists for: a noise filterbank looks nothing like mel filters."""
    good = MelSpectrogram(SR, 1024, 80).filters
    bad = MelSpectrogram(SR, 1024, 80, filterbank="random").filters
    good_peaks = good.argmax(dim=1)
    assert torch.all(good_peaks[1:] >= good_peaks[:-1])  # band centres ascend
    assert not torch.all(bad.argmax(dim=1)[1:] >= bad.argmax(dim=1)[:-1])
