"""The codec: encoder → residual VQ → decoder, at the model's sample rate, mono per item; and the same codec as a
`windows.Net` (`TorchNet`: NumPy in and out, what the streams and files run), optionally with analysis by
synthesis (`search.Search`) in place of greedy quantisation."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from .decoder import build_decoder
from .encoder import build_encoder
from .layers import fold_weight_norm
from .quantize import ResidualVectorQuantizer
from ..windows import DEFAULT_WINDOW_FRAMES, WindowedDecoder, WindowedEncoder


class CodecOutput(NamedTuple):
    audio: torch.Tensor  # [B, 1, T]
    codes: torch.Tensor  # [B, n_q, T_frames]
    latent: torch.Tensor  # [B, latent_dim, T_frames], before quantisation
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    rate: torch.Tensor  # bits per code (the quantizer's rate term; 0 when off)


class Codec(nn.Module):
    """Neural audio codec. Audio is `[B, 1, T]` at `cfg.sample_rate`; codes are `[B, n_q, T_frames]`,
    `T_frames = ceil(T / hop_length)`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.hop_length = cfg.hop_length
        self.sample_rate = cfg.sample_rate
        self.encoder = build_encoder(cfg.encoder, cfg.hop_length, cfg.latent_dim)
        self.quantizer = ResidualVectorQuantizer(cfg.quantizer, cfg.latent_dim)
        self.decoder = build_decoder(cfg.decoder, cfg.hop_length, cfg.latent_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def n_q(self) -> int:
        return self.quantizer.n_q

    def _pad(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 2:
            audio = audio[:, None, :]
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be [B, 1, T] or [B, T], got {tuple(audio.shape)}")
        return nn.functional.pad(audio, (0, (-audio.shape[-1]) % self.hop_length))

    def forward(self, audio: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Training pass. audio `[B, 1, T]` → reconstruction `[B, 1, T]` (cropped to the input length)."""
        length = audio.shape[-1]
        latent = self.encoder(self._pad(audio)).float()
        with torch.autocast(latent.device.type, enabled=False):  # nearest codes in float32 (bf16 training)
            q = self.quantizer(latent, n_q)
        recon = self.decoder(q.latent)[..., :length]
        return CodecOutput(recon, q.codes, latent, q.commitment_loss, q.codebook_loss, q.rate)

    def encode_frames(self, audio: torch.Tensor, n_q: int) -> torch.Tensor:
        """One pass: audio `[B, 1, T]` → codes `[B, n_q, ceil(T / hop)]`."""
        return self.quantizer.encode(self.encoder(self._pad(audio)), n_q)

    def decode_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """One pass: codes `[B, n_q, F]` → audio `[B, 1, F * hop]`."""
        return self.decoder(self.quantizer.decode(codes))

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, n_q: int | None = None, window_frames: int = DEFAULT_WINDOW_FRAMES) -> torch.Tensor:
        """audio `[B, 1, T]` or `[B, T]` at `sample_rate` → codes `[B, n_q, ceil(T / hop)]`, in bounded memory."""
        audio = self._pad(audio)[:, 0].cpu().numpy()
        stream = WindowedEncoder(TorchNet(self), n_q or self.n_q, window_frames)
        return torch.from_numpy(np.concatenate([stream.push(audio), stream.flush()], axis=-1)).to(self.device)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, window_frames: int = DEFAULT_WINDOW_FRAMES) -> torch.Tensor:
        """codes `[B, n_q, F]` → audio `[B, 1, F * hop]`, in bounded memory."""
        stream = WindowedDecoder(TorchNet(self), window_frames)
        codes = codes.cpu().numpy()
        return torch.from_numpy(np.concatenate([stream.push(codes), stream.flush()], axis=-1)[:, None, :]
                                ).to(self.device)

    def prepare_for_inference(self) -> "Codec":
        """eval mode, weight norm folded into plain weights (faster, same output), no gradients."""
        self.eval()
        fold_weight_norm(self)
        self.requires_grad_(False)
        return self


class TorchNet:
    """`codec` (in inference mode) behind the `windows.Net` interface.

    `search`: a callable (audio `[B, F * hop]`, the encoder's latent `[B, latent_dim, F]`, index of the window's
    first frame) → codes `[B, n_q, F]` (torch) that replaces greedy quantisation; the encoder's windows then carry
    the decoder's context too, so that the frames they emit are judged as they will sound."""

    def __init__(self, codec: Codec, search: Callable | None = None):
        self.codec, self.search = codec, search
        self.sample_rate, self.hop_length, self.n_q = codec.sample_rate, codec.hop_length, codec.n_q
        self.latent_dim = codec.cfg.latent_dim
        self.decoder_context = codec.decoder.context_frames
        self.encoder_context = codec.encoder.context_frames
        self.encoder_lookahead = 0 if getattr(codec.encoder, "causal", False) else self.encoder_context
        if search is not None:
            self.encoder_context = max(self.encoder_context, self.decoder_context)
        self.device = codec.device

    def level_net(self) -> "TorchNet":
        return self

    def with_search(self, search: Callable | None) -> "TorchNet":
        return TorchNet(self.codec, search)

    def check_n_q(self, n_q: int) -> None:
        self.codec.quantizer._check_n_q(n_q)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    @torch.inference_mode()
    def encode_frames(self, audio: np.ndarray, n_q: int, first_frame: int = 0) -> np.ndarray:
        x = self._tensor(audio.astype(np.float32, copy=False))
        if self.search is None:
            codes = self.codec.encode_frames(x[:, None, :], n_q)
        else:
            codes = self.search(x, self.codec.encoder(self.codec._pad(x[:, None, :])), first_frame)
        return codes.cpu().numpy()

    @torch.inference_mode()
    def latent(self, codes: np.ndarray) -> np.ndarray:
        return self.codec.quantizer.decode(self._tensor(codes).long()).float().cpu().numpy()

    @torch.inference_mode()
    def decode_latent(self, latent: np.ndarray, first_frame: int = 0) -> np.ndarray:
        return self.codec.decoder(self._tensor(latent), first_frame)[:, 0].float().cpu().numpy()
