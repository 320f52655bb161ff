"""Analysis by synthesis: codes that the decoder renders closer to the input than the encoder's own.

The encoder maps audio to a latent in one pass and residual VQ quantises it greedily; nothing asks what the
decoder will make of the codes. The search does: starting from the encoder's latent, it runs Adam on the latent
through the straight-through quantizer and the frozen decoder, against the input on a multi-scale log-mel loss
(plus a tenth of a linear-magnitude one), and, with `prices` (each code's cost in bits under the entropy coder's
marginal tables), a rate term: the softmax over each stage's code similarities priced in bits, so that among
codes the decoder renders alike the cheaper ones win (rate-distortion optimised quantisation). The codes of the
optimised latent are the greedy codes of that latent, so every decoder of the same weights decodes them.

It runs on one compute window at a time (`model.codec.TorchNet` calls it for `windows.WindowedEncoder`), so memory stays bounded
whatever the input's length; each step costs about three decoder passes over the window. Effort N picks the steps
(`EFFORT_STEPS`). The same input, effort and thread count give the same codes.

Audio `[B, T]` is at the model's sample rate (normalised by the level envelope, as the model sees it); latents are
`[B, latent_dim, F]`.
"""

from __future__ import annotations

import torch

from .limits import MAX_EFFORT
from .spectral import MelSpectrogram, log_mel, stft

SCALES = ((512, 64), (1024, 80), (2048, 128))  # (window, mel bands) of the log-mel loss
LINEAR_WEIGHT = 0.1  # linear magnitude (window 1024) beside the log-mel scales
LEARNING_RATE = 0.1  # development speech (tools/devset.py): 0.025 gained half as much in 8 steps, 0.2 spent more bits
RATE_WEIGHT = 0.01  # loss units per bit per code: on the development files 0.01 kept the bits of effort 0
# (0.003 spent 2 % more, 0.03 saved 5 % for 0.1 less PESQ)
RATE_TEMPERATURE = 0.05  # softmax temperature over cosine similarity for the rate term
EFFORT_STEPS = (0, 2, 4, 8, 16)  # Adam steps per window at effort 0, 1, … (0: the encoder's own codes; 32 steps
# gained nothing over 16 on the development files)
assert len(EFFORT_STEPS) == MAX_EFFORT + 1


def effort_steps(effort: int) -> int:
    """Adam steps of `effort` (0 … MAX_EFFORT); ValueError outside."""
    if not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort {effort}: give 0 to {MAX_EFFORT}")
    return EFFORT_STEPS[effort]


class SpectralLoss(torch.nn.Module):
    """ref, est `[B, T]` → scalar: mean L1 of log10 mel magnitudes over `SCALES`, plus `LINEAR_WEIGHT` × mean L1 of
    linear STFT magnitudes (window 1024)."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.mels = torch.nn.ModuleList(MelSpectrogram(sample_rate, w, m) for w, m in SCALES)

    def forward(self, ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
        loss = est.new_zeros(())
        for mel in self.mels:
            loss = loss + (log_mel(mel(est)) - log_mel(mel(ref))).abs().mean()
        linear = (stft(est, 1024).abs() - stft(ref, 1024).abs()).abs().mean()
        return loss / len(self.mels) + LINEAR_WEIGHT * linear


class Search:
    """Optimise a window's latent for what the decoder renders; `__call__` returns its codes.

    `steps`: Adam steps (0 returns the greedy codes of `latent` unchanged). `prices` `[n_model_q, codebook_size]`:
    bits per code (None: no rate term); `rate_weight`: the rate term's weight, in loss units per bit per code
    (None: `RATE_WEIGHT`); `learning_rate` (None: `LEARNING_RATE`)."""

    def __init__(self, codec, n_q: int, steps: int, prices: torch.Tensor | None = None,
                 rate_weight: float | None = None, learning_rate: float | None = None):
        self.codec, self.n_q, self.steps = codec, n_q, steps
        self.prices = None if prices is None else torch.as_tensor(prices, dtype=torch.float32)[:n_q]
        self.rate_weight = (RATE_WEIGHT if rate_weight is None else rate_weight) if prices is not None else 0.0
        self.learning_rate = LEARNING_RATE if learning_rate is None else learning_rate
        self.loss = SpectralLoss(codec.sample_rate).to(codec.device) if steps else None

    def _quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent → (straight-through quantised latent, expected bits per code under the rate term's softmax)."""
        residual, out, bits = latent, torch.zeros_like(latent), latent.new_zeros(())
        for q, vq in enumerate(self.codec.quantizer.quantizers[: self.n_q]):
            z_e = vq.in_proj(residual)
            similarity = vq.similarity(z_e)  # [B, F, K]
            z_q = vq.lookup(similarity.detach().argmax(dim=2))
            part = vq.out_proj(z_e + (z_q - z_e).detach())
            out, residual = out + part, residual - part
            if self.rate_weight:
                soft = torch.softmax(similarity / RATE_TEMPERATURE, dim=2)
                bits = bits + (soft * self.prices[q].to(soft.device)).sum(dim=2).mean()
        return out, bits / self.n_q

    def optimise(self, audio: torch.Tensor, latent: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        """audio `[B, F * hop]` and the encoder's latent `[B, latent_dim, F]` of the same window → the latent after
        `steps` Adam steps (what an encoder could learn to output: `tools/distill_encoder.py`)."""
        if not self.steps:
            return latent
        with torch.inference_mode(False), torch.enable_grad():
            ref = audio.detach().clone().float()
            z = latent.detach().clone().float().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.learning_rate)
            for _ in range(self.steps):
                opt.zero_grad(set_to_none=True)
                quantised, bits = self._quantize(z)
                est = self.codec.decoder(quantised, first_frame)[:, 0, : ref.shape[-1]]
                loss = self.loss(ref, est) + self.rate_weight * bits
                loss.backward()
                opt.step()
            return z.detach()

    def __call__(self, audio: torch.Tensor, latent: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        """audio `[B, F * hop]` and the encoder's latent `[B, latent_dim, F]` of the same window → codes
        `[B, n_q, F]`."""
        latent = self.optimise(audio, latent, first_frame)
        with torch.inference_mode():
            return self.codec.quantizer.encode(latent.clone(), self.n_q)
