"""Residual vector quantisation with factorised, L2-normalised codes (DAC / "improved VQGAN").

Each stage projects the latent to `codebook_dim` dimensions, looks up the nearest code by cosine similarity,
and projects back. Gradients reach the encoder through the straight-through estimator.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import QuantizerConfig
from .layers import WNConv1d


class QuantizerOutput(NamedTuple):
    latent: torch.Tensor  # [B, latent_dim, T_frames], quantised (straight-through)
    codes: torch.Tensor  # [B, n_q, T_frames], int64
    commitment_loss: torch.Tensor  # scalar
    codebook_loss: torch.Tensor  # scalar
    n_q_per_item: torch.Tensor  # [B]: how many stages each item used (quantizer dropout)
    rate: torch.Tensor  # scalar: bits per code (`ResidualVectorQuantizer.rate_temperature` set), else 0


RATE_DECAY = 0.998  # per training step: about 500 steps' codes price the rate term


class VectorQuantizer(nn.Module):
    """One factorised VQ stage, with usage counts for dead-code detection."""

    def __init__(self, latent_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.in_proj = WNConv1d(latent_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, latent_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        # Training statistics, not weights: kept out of checkpoints' model tensors.
        self.register_buffer("usage", torch.zeros(codebook_size), persistent=False)
        # Running code frequencies for the rate term (counts decaying by RATE_DECAY per step, Laplace start).
        self.register_buffer("frequencies", torch.ones(codebook_size), persistent=False)
        self.recent: torch.Tensor | None = None  # recent projected encoder outputs [N, codebook_dim]

    def similarity(self, z_e: torch.Tensor) -> torch.Tensor:
        """z_e `[B, codebook_dim, T]` → cosine similarity to every code `[B, T, codebook_size]`."""
        enc = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]), dim=1)
        cb = F.normalize(self.codebook.weight, dim=1)
        return (enc @ cb.t()).reshape(z_e.shape[0], z_e.shape[2], -1)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """z_e `[B, codebook_dim, T]` → indices `[B, T]` of the code with the highest cosine similarity."""
        return self.similarity(z_e).argmax(dim=2)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, T]` → code vectors `[B, codebook_dim, T]` (before the output projection)."""
        return self.codebook(codes).transpose(1, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, T]` → latent contribution `[B, latent_dim, T]`."""
        return self.out_proj(self.lookup(codes))

    def forward(self, z: torch.Tensor, rate_temperature: float | None = None):
        """z `[B, latent_dim, T]` → (quantised latent, codes `[B, T]`, per-item commitment and codebook losses `[B]`,
        per-item rate `[B]` in bits per code, or None without `rate_temperature`).

        The rate relaxes the nearest code to a softmax over cosine similarity / `rate_temperature` and prices it
        at the running code frequencies: the cross-entropy −Σ_k p_k log2 f_k, what a per-codebook entropy coder
        would pay. Its gradient moves encoder outputs and codes towards frequent codes (entropy-constrained VQ
        learnt); the frequencies themselves are counted, not learnt."""
        z_e = self.in_proj(z)
        similarity = self.similarity(z_e)  # [B, T, codebook_size]
        codes = similarity.detach().argmax(dim=2)
        z_q = self.lookup(codes)
        commitment = F.mse_loss(z_e, z_q.detach(), reduction="none").mean(dim=(1, 2))
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").mean(dim=(1, 2))
        rate = None
        if rate_temperature is not None:
            log_f = torch.log2(self.frequencies / self.frequencies.sum())
            soft = torch.softmax(similarity / rate_temperature, dim=2)
            rate = -(soft * log_f).sum(dim=2).mean(dim=1)
        z_q = z_e + (z_q - z_e).detach()  # straight-through
        if self.training:
            self.recent = z_e.detach().transpose(1, 2).reshape(-1, z_e.shape[1])[-4 * self.codebook_size :]
        return self.out_proj(z_q), codes, commitment, codebook, rate

    @torch.no_grad()
    def count(self, codes: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Add `codes` (any shape) to the usage counts, each counted `weight` times (same shape; default 1). Fixed
        shapes only (no boolean indexing), so that a compiled training step has no graph break here."""
        weight = torch.ones_like(codes, dtype=self.usage.dtype) if weight is None else weight.to(self.usage.dtype)
        self.usage.index_add_(0, codes.reshape(-1), weight.reshape(-1))
        self.frequencies.mul_(RATE_DECAY).index_add_(0, codes.reshape(-1), weight.reshape(-1))

    def dead_codes(self, threshold: float, min_per_code: float = 16.0) -> torch.Tensor | None:
        """Indices of codes used fewer than `threshold` times since the last re-seeding, or None while the counts
        hold fewer than `min_per_code` per code on average: too little evidence to call any code dead (a
        time-limited run that stops a few steps after an evaluation would otherwise call most of a trained
        codebook dead)."""
        if float(self.usage.sum()) < min_per_code * self.codebook_size:
            return None
        return (self.usage < threshold).nonzero().flatten()

    @torch.no_grad()
    def reseed_dead_codes(self, threshold: float, generator: torch.Generator | None = None,
                          min_per_code: float = 16.0, replace: bool = True) -> int:
        """Replace the `dead_codes` by recent encoder outputs; returns how many were replaced.

        Usage counts restart afterwards; while the evidence is too thin, nothing is replaced and counting goes on.
        `replace` False: the counting restarts the same way but no code is replaced (dead codes are still counted
        and alarmed on by the caller; a rate-term run, where re-seeding works against the term).
        """
        dead = self.dead_codes(threshold, min_per_code)
        if dead is None:
            return 0
        n = 0
        if replace and len(dead) and self.recent is not None and len(self.recent):
            pick = torch.randint(len(self.recent), (len(dead),), generator=generator, device=self.recent.device)
            self.codebook.weight[dead.to(self.codebook.weight.device)] = self.recent[pick].to(self.codebook.weight)
            n = len(dead)
        self.usage.zero_()
        return n


class ResidualVectorQuantizer(nn.Module):
    """`n_q` VQ stages, each quantising what the previous ones left.

    Quantizer dropout: in training, a `dropout` fraction of the batch uses a random number of stages in
    [1, n_q], so the first stages learn to stand alone and one model serves every bitrate.
    """

    def __init__(self, cfg: QuantizerConfig, latent_dim: int):
        super().__init__()
        self.rate_temperature: float | None = None  # set (`loss.rate_temperature`) to compute the rate term
        self.n_q = cfg.n_q
        self.codebook_size = cfg.codebook_size
        self.dropout = cfg.dropout
        self.quantizers = nn.ModuleList(
            VectorQuantizer(latent_dim, cfg.codebook_size, cfg.codebook_dim) for _ in range(cfg.n_q)
        )

    def _check_n_q(self, n_q: int) -> None:
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be in [1, {self.n_q}], got {n_q}")

    def forward(self, z: torch.Tensor, n_q: int | None = None) -> QuantizerOutput:
        """z `[B, latent_dim, T]`. With `n_q` given, every item uses that many stages (no dropout)."""
        batch = z.shape[0]
        if n_q is not None:
            self._check_n_q(n_q)
            per_item = torch.full((batch,), n_q, device=z.device)
            stages = n_q
        else:
            per_item = torch.full((batch,), self.n_q, device=z.device)
            if self.training and self.dropout > 0:
                n_drop = int(round(batch * self.dropout))
                per_item[:n_drop] = torch.randint(1, self.n_q + 1, (n_drop,), device=z.device)
            stages = self.n_q
        residual = z
        z_q = torch.zeros_like(z)
        commitment = z.new_zeros(())
        codebook = z.new_zeros(())
        bits = z.new_zeros(())
        codes = []
        for i, vq in enumerate(self.quantizers[:stages]):
            out, idx, commit_i, cb_i, rate_i = vq(residual, self.rate_temperature)
            mask = (per_item > i).to(z.dtype)
            z_q = z_q + out * mask[:, None, None]
            residual = residual - out
            commitment = commitment + (commit_i * mask).mean()
            codebook = codebook + (cb_i * mask).mean()
            if rate_i is not None:
                bits = bits + (rate_i * mask).sum()
            if self.training:
                vq.count(idx, mask[:, None].expand_as(idx))
            codes.append(idx)
        rate = bits / per_item.sum().to(z.dtype)  # bits per code used
        return QuantizerOutput(z_q, torch.stack(codes, dim=1), commitment, codebook, per_item, rate)

    def encode(self, z: torch.Tensor, n_q: int) -> torch.Tensor:
        """z `[B, latent_dim, T]` → codes `[B, n_q, T]`."""
        self._check_n_q(n_q)
        residual = z
        codes = []
        for vq in self.quantizers[:n_q]:
            idx = vq.nearest(vq.in_proj(residual))
            residual = residual - vq.decode(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, n_q, T]` → latent `[B, latent_dim, T]`; any n_q up to the model's. A negative code marks a
        codebook absent at that frame (a variable-rate file coded fewer there): it contributes nothing."""
        self._check_n_q(codes.shape[1])
        out = 0
        for i, vq in enumerate(self.quantizers[: codes.shape[1]]):
            c = codes[:, i]
            absent = c < 0
            out = out + (vq.decode(c.clamp_min(0)) * ~absent[:, None] if absent.any() else vq.decode(c))
        return out

    @staticmethod
    def perplexity(usage: torch.Tensor) -> float:
        """exp(entropy) of a usage histogram: the effective number of codes in use."""
        p = usage / usage.sum().clamp_min(1)
        return float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))
