"""Fitting a model's entropy coding on the codes of real audio (`neurocodec fit-entropy`).

The tables themselves (integer probabilities, contexts, coding) are `entropy/`'s; this module runs the model
over training audio to collect codes, and writes the checkpoint back with a fitted 2.x context model. The 1.x
tables it carries are kept as they are (files coded with them still decode); a model that has none (a training
run's generator, `tools/release_model.py`) gets them fitted on the same codes.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from . import entropy
from .audio import list_audio, read_audio
from .checkpoint import read_model, resolve_model, save_model
from .errors import AudioError
from .loader import LoadedModel
from .stream import encode_audio


def fit_entropy_model(model: str | os.PathLike | None, sources: list[str], output: str, n_contexts: int = 16,
                      max_seconds: float = 3600.0, device: str | None = None) -> dict:
    """Fit the 2.x context model (`entropy.fit_mix`, `n_contexts - 1` clusters per expert) on the codes of real
    audio and write `output`: the same weights (same hash) and 1.x tables (fitted here when uniform), with the
    fitted model. `sources`: folders, manifests or files of *training* audio (never the evaluation set). Returns
    figures measured on the fitting data: bits per code, fitted vs uniform."""
    state, info = read_model(resolve_model(model))  # read and verified once: the codec is built from these tensors
    loaded = LoadedModel.build(state, info, device)
    files = list_audio(sources)
    if not files:
        raise AudioError("no audio files to fit entropy tables on")
    order = np.random.default_rng(0).permutation(len(files))
    n_q, k = info.config.quantizer.n_q, info.config.quantizer.codebook_size
    seqs, seconds = [], 0.0
    for i in order:
        audio, sr = read_audio(files[i])
        # The codes files get: level-normalised audio (the closed loop changes only the envelope, not the codes).
        seqs.append(encode_audio(loaded.net, audio.mean(axis=0, keepdims=True), sr, n_q, loop=False).codes[0])
        seconds += audio.shape[-1] / sr
        if seconds >= max_seconds:
            break
    mix = entropy.fit_mix(seqs, n_q, k, groups=n_contexts - 1)
    # A new model (a training run's generator: uniform 1.x tables) gets its 1.x tables fitted on the same codes.
    base = entropy.fit(seqs, n_q, k, n_contexts) if info.entropy.is_uniform else info.entropy
    tables = dataclasses.replace(base, mix=mix)
    save_model(output, state, info.config, name=info.name, extra=info.extra, entropy=tables)
    bits = sum(entropy.mix_bits(mix, s[None]) for s in seqs)
    return {"files": len(seqs), "seconds": round(seconds, 1), "mix_sha256": mix.sha256,
            "bits_per_code": round(bits / sum(s.size for s in seqs), 3), "uniform_bits_per_code": round(math.log2(k), 3)}
