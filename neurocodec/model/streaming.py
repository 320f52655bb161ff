"""Chunked inference with bounded memory and no seams.

Scheme: overlap with receptive-field context. A chunk that emits frames [f0, f1) is computed from the input
frames [f0 - C, f1 + C), where C is the encoder's (or decoder's) one-sided receptive field in frames, clipped to
the signal. Every output frame therefore sees exactly the input it would see in one unchunked pass, so chunked
output equals unchunked output up to float rounding (convolutions of different lengths may sum in a different
order). At the file ends both see the same zero padding. Memory is bounded by the chunk plus 2·C frames, whatever
the input length; the cost is 2·C/chunk extra compute (about 3% for the default chunk of 10 s).

Both classes are push/flush streams, so a file never has to be in memory at once.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_FRAMES = 750  # 10 s at 75 Hz


class ChunkedEncoder:
    """Push audio `[B, n]` at the model's sample rate; receive codes `[B, n_q, k]` as frames complete."""

    def __init__(self, codec, n_q: int, chunk_frames: int = DEFAULT_CHUNK_FRAMES):
        codec.quantizer._check_n_q(n_q)
        self.codec = codec
        self.n_q = n_q
        self.hop = codec.hop_length
        self.context = codec.encoder.context_frames
        self.chunk = max(1, chunk_frames)
        self.buffer: torch.Tensor | None = None  # samples from frame `self.buffer_frame` on
        self.buffer_frame = 0
        self.next_frame = 0  # first frame not yet emitted
        self.samples_in = 0

    def _process(self, end_frame: int, final: bool) -> list[torch.Tensor]:
        out = []
        available = self.buffer_frame + (0 if self.buffer is None else self.buffer.shape[-1] // self.hop)
        if final:
            available = end_frame
        while self.next_frame < end_frame:
            f0 = self.next_frame
            f1 = min(f0 + self.chunk, end_frame)
            if not final and f1 - f0 < self.chunk:
                break  # wait for a whole chunk: small pieces would each pay 2·context frames of overhead
            right = min(f1 + self.context, available)
            if not final and right < f1 + self.context:
                break
            left = max(0, f0 - self.context)
            a = (left - self.buffer_frame) * self.hop
            b = (right - self.buffer_frame) * self.hop
            window = self.buffer[:, a:b]
            codes = self.codec.encode_frames(window[:, None, :], self.n_q)
            out.append(codes[..., f0 - left : f1 - left])
            self.next_frame = f1
            # Keep only what later chunks still need as left context.
            drop = max(0, (self.next_frame - self.context) - self.buffer_frame)
            if drop:
                self.buffer = self.buffer[:, drop * self.hop :]
                self.buffer_frame += drop
        return out

    def push(self, audio: torch.Tensor) -> torch.Tensor:
        """audio `[B, n]` → the codes `[B, n_q, k]` that became final (k may be 0)."""
        audio = audio.to(self.codec.device, torch.float32)
        self.samples_in += audio.shape[-1]
        self.buffer = audio if self.buffer is None else torch.cat([self.buffer, audio], dim=-1)
        whole = self.buffer_frame + self.buffer.shape[-1] // self.hop
        return self._cat(self._process(whole - self.context, final=False), audio.shape[0])

    def flush(self) -> torch.Tensor:
        """Zero-pad the tail to a whole frame (as the unchunked model does) and emit the remaining codes."""
        if self.buffer is None:
            return torch.zeros(0, self.n_q, 0, dtype=torch.long)
        total = -(-self.samples_in // self.hop)
        need = (total - self.buffer_frame) * self.hop - self.buffer.shape[-1]
        if need > 0:
            self.buffer = torch.nn.functional.pad(self.buffer, (0, need))
        return self._cat(self._process(total, final=True), self.buffer.shape[0])

    def _cat(self, parts: list[torch.Tensor], batch: int) -> torch.Tensor:
        if not parts:
            return torch.zeros(batch, self.n_q, 0, dtype=torch.long, device=self.codec.device)
        return torch.cat(parts, dim=-1)


class ChunkedDecoder:
    """Push codes `[B, n_q, k]` (n_q may change between pushes); receive audio `[B, k' * hop]` as it completes."""

    def __init__(self, codec, chunk_frames: int = DEFAULT_CHUNK_FRAMES):
        self.codec = codec
        self.hop = codec.hop_length
        self.context = codec.decoder.context_frames
        self.chunk = max(1, chunk_frames)
        self.latent: torch.Tensor | None = None  # quantised latent from frame `self.latent_frame` on
        self.latent_frame = 0
        self.next_frame = 0

    def _process(self, end_frame: int, final: bool) -> list[torch.Tensor]:
        out = []
        available = self.latent_frame + (0 if self.latent is None else self.latent.shape[-1])
        while self.next_frame < end_frame:
            f0 = self.next_frame
            f1 = min(f0 + self.chunk, end_frame)
            if not final and f1 - f0 < self.chunk:
                break  # wait for a whole chunk: small pieces would each pay 2·context frames of overhead
            right = min(f1 + self.context, available)
            if not final and right < f1 + self.context:
                break
            left = max(0, f0 - self.context)
            window = self.latent[..., left - self.latent_frame : right - self.latent_frame]
            audio = self.codec.decoder(window)[:, 0]
            out.append(audio[:, (f0 - left) * self.hop : (f1 - left) * self.hop])
            self.next_frame = f1
            drop = max(0, (self.next_frame - self.context) - self.latent_frame)
            if drop:
                self.latent = self.latent[..., drop:]
                self.latent_frame += drop
        return out

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, n_q, k]` → audio `[B, n]` that became final (n may be 0)."""
        # Codes → latent is per frame (no context), so chunks with different n_q join seamlessly here.
        latent = self.codec.quantizer.decode(codes.to(self.codec.device))
        self.latent = latent if self.latent is None else torch.cat([self.latent, latent], dim=-1)
        available = self.latent_frame + self.latent.shape[-1]
        return self._cat(self._process(available - self.context, final=False), codes.shape[0])

    def flush(self) -> torch.Tensor:
        if self.latent is None:
            return torch.zeros(0, 0)
        return self._cat(self._process(self.latent_frame + self.latent.shape[-1], final=True), self.latent.shape[0])

    def _cat(self, parts: list[torch.Tensor], batch: int) -> torch.Tensor:
        if not parts:
            return torch.zeros(batch, 0, device=self.codec.device)
        return torch.cat(parts, dim=-1)
