"""A model's entropy tables, as its checkpoint carries them: the 1.x context model's integer tables and the 2.x
mixed context model, each with its own identity (the hash a file's header names)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .rangecoder import PRECISION, TOTAL, UNIFORM_SHA256, uniform_freqs
from .v2 import MixModel


@dataclass(frozen=True)
class EntropyModel:
    """A model's entropy coding: the 1.x tables, `freqs` `[n_q, n_contexts, codebook_size]` int64 and
    `context_map` `[n_q, codebook_size]` int64 (`sha256` is their identity), and the 2.x context model `mix`
    (None: uniform; `coder` is what a 2.x file uses)."""

    freqs: np.ndarray
    context_map: np.ndarray
    mix: MixModel | None = None

    @property
    def coder(self) -> MixModel:
        """The 2.x context model (the uniform one when the checkpoint carries none)."""
        if self.mix is not None:
            return self.mix
        return MixModel.uniform(self.n_q, self.codebook_size)

    @property
    def n_q(self) -> int:
        return self.freqs.shape[0]

    @property
    def n_contexts(self) -> int:
        return self.freqs.shape[1]

    @property
    def codebook_size(self) -> int:
        return self.freqs.shape[2]

    @property
    def sha256(self) -> str:
        """Identity written into .ncd headers; the uniform model is all zeros."""
        if self.is_uniform:
            return UNIFORM_SHA256
        h = hashlib.sha256()
        for a in (self.freqs, self.context_map):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.hexdigest()

    @property
    def min_bits_per_symbol(self) -> float:
        """The fewest bits any code can cost under these tables (its most probable entry, a hair generous for
        constriction's fixed-point rounding): what a payload must hold per code it claims."""
        p_max = min(1.0, float(self.freqs.max()) / TOTAL * (1 + 2.0**-12))
        return -math.log2(p_max)

    @property
    def is_uniform(self) -> bool:
        return self.n_contexts == 1 and _is_uniform(self.freqs)

    def validate(self) -> None:
        if self.freqs.ndim != 3 or self.context_map.shape != (self.n_q, self.codebook_size):
            raise FormatError("entropy model tables have inconsistent shapes")
        if self.freqs.min() < 1 or np.any(self.freqs.sum(axis=-1) != TOTAL):
            raise FormatError(f"entropy model rows must be ≥ 1 and sum to 2**{PRECISION}")
        if self.context_map.min() < 0 or self.context_map.max() >= max(1, self.n_contexts - 1):
            raise FormatError("entropy context map points outside its tables")

    def tensors(self) -> dict[str, np.ndarray]:
        """Stored as the narrowest integers that hold them (a frequency is at most 2**16 - codebook_size + 1)."""
        out = {"entropy.freqs": self.freqs.astype(np.uint16 if self.freqs.max() < 1 << 16 else np.int32),
               "entropy.context_map": self.context_map.astype(np.int16 if self.context_map.max() < 1 << 15
                                                               else np.int32)}
        return out | (self.mix.tensors() if self.mix is not None else {})

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> "EntropyModel":
        mix = MixModel.from_tensors(tensors) if "entropy.mix.prev" in tensors else None
        model = cls(np.asarray(tensors["entropy.freqs"], np.int64), np.asarray(tensors["entropy.context_map"], np.int64),
                    mix)
        model.validate()
        if mix is not None and (mix.n_q, mix.codebook_size) != (model.n_q, model.codebook_size):
            raise FormatError("the mixed context model does not fit the codebooks")
        return model


def _is_uniform(freqs: np.ndarray) -> bool:
    return bool(np.array_equal(freqs, uniform_freqs(freqs.shape[-1])[None, None].repeat(freqs.shape[0], 0)))


def uniform_model(n_q: int, codebook_size: int) -> EntropyModel:
    """No statistics: costs ≈ log2(codebook_size) bits per code, the fixed-width size."""
    if codebook_size > TOTAL:
        raise FormatError(f"codebook_size {codebook_size} exceeds 2**{PRECISION}")
    freqs = uniform_freqs(codebook_size)[None, None].repeat(n_q, 0)
    return EntropyModel(freqs, np.zeros((n_q, codebook_size), np.int64))


