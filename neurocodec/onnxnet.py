"""The light runtime: the codec's networks on ONNX Runtime, everything around them in NumPy, no torch.

The encoder's and decoder's network cores (the ConvNeXt stacks at the frame rate) are ONNX graphs without weights
(`neurocodec/graphs/`, written by `neurocodec export`, `onnx_export.py`); the weights come from the model's own
safetensors file at load, handed to ONNX Runtime from memory, so a release is still one weights file. What is
not a network is NumPy: the encoder's STFT features, the residual quantizer (nearest code by cosine similarity,
tables folded from the weight-normed projections), the decoder's inverse STFT by overlap-add
(`dsp.overlap_add`). Parity with the torch path is a test (`tests/test_onnx.py`) and a measurement
(`benchmarks/parity.py`).

The graphs fit every checkpoint of one architecture (`graph_key`: the config's network fields); models of other
architectures run with torch until `neurocodec export --model M` has written their graphs.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from .config import ISTFTDecoderConfig, ModelConfig, STFTEncoderConfig, to_dict
from .dsp import overlap_add, stft
from .errors import MissingDependencyError

GRAPHS = ("encoder", "decoder", "decoder-int8")  # the int8 decoder serves the encoder's level loop
LINEAR = ("pwconv1.weight", "pwconv2.weight", "head.weight")  # the layers int8 graphs quantize


def import_onnxruntime():
    """`onnxruntime`, imported with its telemetry off (ORT 1.32 on Linux otherwise writes a session file to
    $TMPDIR at import and may send usage events: a codec has no business doing either); MissingDependencyError
    when it is not installed."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("the light runtime needs ONNX Runtime: pip install onnxruntime") from None
    return onnxruntime


def supports(config: ModelConfig) -> str | None:
    """None when the light runtime can run `config`, else why not (one line)."""
    if not isinstance(config.encoder, STFTEncoderConfig) or not isinstance(config.decoder, ISTFTDecoderConfig):
        return "the light runtime runs STFT encoders and iSTFT decoders (this model has convolutional ones)"
    if config.decoder.n_fft % config.hop_length or (config.decoder.n_fft - config.hop_length) % 2:
        return "the light runtime needs the decoder's n_fft to be a multiple of hop_length"
    if config.encoder.causal or config.decoder.causal:
        return "causal models run on torch (the light runtime's graphs are the centred ones)"
    return None


def graph_key(config: ModelConfig, graph: str) -> str:
    """What a graph depends on (its part's architecture, not its weights), as a short hash."""
    part = graph.split("-")[0]
    spec = {k: v for k, v in to_dict(getattr(config, part)).items() if k != "causal"}  # (always False here)
    fields = {"part": part, "latent_dim": config.latent_dim, "hop_length": config.hop_length, part: spec}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def user_graphs() -> Path:
    """Where `neurocodec export` writes graphs of architectures the package does not ship."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neurocodec" / "graphs"


def graph_name(config: ModelConfig, graph: str) -> str:
    return f"{graph}-{graph_key(config, graph)}.onnx"


def find_graph(config: ModelConfig, graph: str) -> bytes | None:
    """The bytes of `graph` (one of `GRAPHS`) for `config`: shipped with the package, else exported by the user,
    else None."""
    name = graph_name(config, graph)
    shipped = resources.files("neurocodec").joinpath("graphs", name)
    if shipped.is_file():
        return shipped.read_bytes()
    path = user_graphs() / name
    return path.read_bytes() if path.is_file() else None


def graph_tensors(tensors: dict[str, np.ndarray], graph: str) -> dict[str, np.ndarray]:
    """The arrays `graph` reads, by name: the checkpoint's tensors of its part in float32. Linear weights stay
    `[out, in]`, transposed in the graph: ONNX Runtime then multiplies by the transpose without one (a MatMul on a
    pre-transposed `[in, out]` weight measured 15-20 % slower on 2 threads). An int8 graph reads each linear weight
    as `NAME.q` (int8 `[in, out]`, symmetric per output channel), `NAME.scale` (`[out]`) and `NAME.zero` (zeros)."""
    part, int8 = graph.split("-")[0], graph.endswith("-int8")
    out = {}
    for name, value in tensors.items():
        if not name.startswith(part + "."):
            continue
        w = np.ascontiguousarray(value, np.float32)
        if int8 and name.endswith(LINEAR):
            scale = np.maximum(np.abs(w).max(axis=1), np.float32(1e-12)) / np.float32(127)
            q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
            out.update({name + ".q": np.ascontiguousarray(q.T), name + ".scale": scale.astype(np.float32),
                        name + ".zero": np.zeros(len(scale), np.int8)})
        else:
            out[name] = w
    return out


def graphs(config: ModelConfig) -> dict[str, bytes]:
    """Every graph `config` needs (`GRAPHS`), by name; `MissingDependencyError` saying why the light runtime cannot
    run it (its architecture, or a graph not exported)."""
    why = supports(config)
    if why:
        raise MissingDependencyError(why)
    found = {}
    for graph in GRAPHS:
        found[graph] = find_graph(config, graph)
        if found[graph] is None:
            raise MissingDependencyError(
                f"no ONNX graph {graph} for this model (architecture {graph_key(config, graph)}): run "
                "`neurocodec export --model MODEL` once where torch is installed")
    return found


def unavailable(config: ModelConfig) -> str | None:
    """None when the light runtime can run `config` here (graphs found, ONNX Runtime installed), else why not."""
    try:
        graphs(config)
        import_onnxruntime()
    except MissingDependencyError as exc:
        return str(exc)
    return None


def fold_weight_norm(tensors: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """The plain weight of a weight-normed layer: g · v / ‖v‖ (norm over every axis but the first, as torch's
    `weight_norm` with dim 0)."""
    g = tensors[prefix + ".parametrizations.weight.original0"].astype(np.float32)
    v = tensors[prefix + ".parametrizations.weight.original1"].astype(np.float32)
    norm = np.sqrt(np.square(v).sum(axis=tuple(range(1, v.ndim)), keepdims=True))
    return g * v / norm


class Quantizer:
    """The residual quantizer in NumPy: per stage, the input projection `[codebook_dim, latent_dim]`, the unit
    codebook `[codebook_size, codebook_dim]` and each code's contribution to the latent `[codebook_size,
    latent_dim]` (output projection folded in)."""

    def __init__(self, tensors: dict[str, np.ndarray], n_q: int):
        self.stages = []
        for i in range(n_q):
            p = f"quantizer.quantizers.{i}"
            w_in = fold_weight_norm(tensors, p + ".in_proj")[..., 0]
            b_in = tensors[p + ".in_proj.bias"].astype(np.float32)
            book = tensors[p + ".codebook.weight"].astype(np.float32)
            unit = book / np.maximum(np.linalg.norm(book, axis=1, keepdims=True), np.float32(1e-12))
            w_out = fold_weight_norm(tensors, p + ".out_proj")[..., 0]
            table = book @ w_out.T + tensors[p + ".out_proj.bias"].astype(np.float32)
            self.stages.append((w_in, b_in, unit, np.ascontiguousarray(table, np.float32)))

    def encode(self, latent: np.ndarray, n_q: int) -> np.ndarray:
        """latent `[B, latent_dim, F]` → codes `[B, n_q, F]` int64 (greedy, stage by stage)."""
        residual = latent.astype(np.float32, copy=True)
        codes = []
        for w_in, b_in, unit, table in self.stages[:n_q]:
            z = np.matmul(w_in, residual) + b_in[:, None]  # [B, codebook_dim, F]
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), np.float32(1e-12))
            # [B, F, codebook_size] so that the argmax runs along contiguous memory (7x faster than along axis 1)
            idx = np.matmul(np.ascontiguousarray(z.transpose(0, 2, 1)), unit.T).argmax(axis=-1)
            residual -= table[idx].transpose(0, 2, 1)
            codes.append(idx)
        return np.stack(codes, axis=1).astype(np.int64)

    def latent(self, codes: np.ndarray) -> np.ndarray:
        """codes `[B, n_q, F]` (−1: absent) → latent `[B, latent_dim, F]`."""
        batch, n_q, count = codes.shape
        out = np.zeros((batch, self.stages[0][3].shape[1], count), np.float32)
        for i in range(n_q):
            c = codes[:, i]
            part = self.stages[i][3][np.maximum(c, 0)].transpose(0, 2, 1)
            out += part if (c >= 0).all() else part * (c >= 0)[:, None, :]
        return out


class OnnxNet:
    """A model's networks on ONNX Runtime (`windows.Net`). `tensors`: the checkpoint's arrays
    (`checkpoint.read_model(numpy=True)`); `threads` 0: ONNX Runtime's default (the machine's cores)."""

    def __init__(self, config: ModelConfig, tensors: dict[str, np.ndarray], threads: int = 0):
        self.graphs = graphs(config)
        import_onnxruntime()
        self.config = config
        self.sample_rate, self.hop_length, self.n_q = config.sample_rate, config.hop_length, config.quantizer.n_q
        self.latent_dim = config.latent_dim
        enc, dec = config.encoder, config.decoder
        self.encoder_context = -(-enc.n_fft // self.hop_length) + 1 + 3 * enc.n_blocks + 1  # as STFTEncoder
        self.decoder_context = 3 + 3 * dec.n_blocks + -(-dec.n_fft // self.hop_length) + 1  # as ISTFTDecoder
        self.encoder_lookahead = self.encoder_context  # (causal models run on torch)
        self.quantizer = Quantizer(tensors, self.n_q)
        self.tensors, self.threads = tensors, threads
        self.sessions = {}

    def session(self, graph: str):
        """`graph`'s ONNX Runtime session, made when first used (decoding never pays for the encoder's)."""
        if graph not in self.sessions:
            onnxruntime = import_onnxruntime()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            arrays = graph_tensors(self.tensors, graph)
            options.add_external_initializers_from_files_in_memory(
                list(arrays), [a.reshape(-1).view(np.uint8) for a in arrays.values()],
                [a.nbytes for a in arrays.values()])
            self.sessions[graph] = onnxruntime.InferenceSession(self.graphs[graph], options,
                                                                providers=["CPUExecutionProvider"])
            if len(self.sessions) == len(GRAPHS):
                self.tensors = {}  # ONNX Runtime holds its own copies now: 23 MB less at the peak
        return self.sessions[graph]

    def level_net(self) -> "OnnxNet":
        """The net the encoder's level loop decodes with: this one with the int8 decoder (1.4x faster; the loop
        only measures the decoded level, which int8 keeps: `benchmarks/level.py`)."""
        return _Int8Decoder(self)

    def check_n_q(self, n_q: int) -> None:
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be in [1, {self.n_q}], got {n_q}")

    def features(self, audio: np.ndarray) -> np.ndarray:
        """audio `[B, F * hop]` → the STFT encoder's input `[B, 3 · (n_fft / 2 + 1), F]`: log magnitude and the
        power-law compressed complex spectrum (as `model.encoder.STFTEncoder`)."""
        n_fft = self.config.encoder.n_fft
        pad = (n_fft - self.hop_length) // 2
        x = np.pad(np.asarray(audio, np.float64), ((0, 0), (pad, pad)))
        # The FFT in float64 (as the torch encoder: float32 rounding is what differs between FFTs), the rest in
        # float32.
        spec = stft(x, n_fft, self.hop_length, center=False, dtype=np.float64).astype(np.complex64)
        log_mag = np.log(np.maximum(np.abs(spec), np.float32(1e-5)))
        compressed = spec * np.exp(np.float32(-0.7) * log_mag)  # |X|^0.3 with the phase of X
        return np.concatenate([log_mag, compressed.real, compressed.imag], axis=1)

    def encode_latent(self, audio: np.ndarray) -> np.ndarray:
        """audio `[B, F * hop]` → latent `[B, latent_dim, F]`."""
        return self.session("encoder").run(None, {"features": self.features(audio)})[0]

    def encode_frames(self, audio: np.ndarray, n_q: int, first_frame: int = 0) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        audio = np.pad(audio, ((0, 0), (0, (-audio.shape[-1]) % self.hop_length)))
        return self.quantizer.encode(self.encode_latent(audio), n_q)

    def latent(self, codes: np.ndarray) -> np.ndarray:
        return self.quantizer.latent(np.asarray(codes, np.int64))

    def decode_latent(self, latent: np.ndarray, first_frame: int = 0, graph: str = "decoder") -> np.ndarray:
        dec = self.config.decoder
        head = self.session(graph).run(None, {"latent": np.ascontiguousarray(latent, np.float32)})[0]
        log_mag, phase = np.split(head, 2, axis=1)
        mag = np.exp(np.minimum(log_mag, np.float32(6.0)))
        if dec.phase_reference:
            phase = phase + reference_phase(dec.n_fft, self.hop_length, first_frame, phase.shape[-1])
        spec = np.empty(mag.shape, np.complex64)
        spec.real, spec.imag = mag * np.cos(phase), mag * np.sin(phase)
        return overlap_add(spec, dec.n_fft, self.hop_length, (dec.n_fft - self.hop_length) // 2)


def reference_phase(n_fft: int, hop: int, first_frame: int, frames: int) -> np.ndarray:
    """`[n_fft/2+1, frames]` phase advance of each bin's centre frequency since frame 0, exact in integers
    (`model.decoder.ISTFTDecoder.reference_phase`)."""
    k = np.arange(n_fft // 2 + 1, dtype=np.int64)
    t = np.arange(first_frame, first_frame + frames, dtype=np.int64)
    cycles = (k[:, None] * ((t[None, :] * hop) % n_fft)) % n_fft
    return cycles.astype(np.float32) * np.float32(2 * np.pi / n_fft)


class _Int8Decoder:
    """An `OnnxNet` whose decoder is the int8 graph (`OnnxNet.level_net`)."""

    def __init__(self, net: OnnxNet):
        self.net = net

    def __getattr__(self, name: str):
        return getattr(self.net, name)

    def decode_latent(self, latent: np.ndarray, first_frame: int = 0) -> np.ndarray:
        return self.net.decode_latent(latent, first_frame, graph="decoder-int8")
