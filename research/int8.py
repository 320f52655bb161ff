#!/usr/bin/env python3
"""Do int8 weights pay on the light runtime? Speed of the encoder's and decoder's graphs, and PESQ-WB / level of
whole encode → decode round trips at 6 kbps, with ONNX Runtime's dynamic int8 quantization of every MatMul
(`onnxruntime.quantization.quantize_dynamic`, weights int8 per channel) against float32.

    python research/int8.py [FOLDER] [--files 40] [--threads 2]

FOLDER: speech to judge on (default: the corpus's validation speech; never the evaluation set). Variants:
fp32 (shipped); int8 (both graphs); loop-int8 (float32 everywhere but the decoder the encoder's level loop runs,
which only measures the output's level).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from neurocodec import metrics, onnx_export
from neurocodec.audio import list_audio, read_audio
from neurocodec.checkpoint import read_model, resolve_model
from neurocodec.loader import LoadedModel, load_model
from neurocodec.onnxnet import OnnxNet

VALID = Path("~/.cache/neurocodec/corpus/valid/speech").expanduser()


def quantized_sessions(threads: int) -> dict:
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tensors, info = read_model(resolve_model(None), numpy=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("encoder", "decoder"):
            src, dst = Path(tmp) / f"{part}.onnx", Path(tmp) / f"{part}.int8.onnx"
            src.write_bytes(untransposed(onnx_export.build(info.config, part, tensors, embed=True)).SerializeToString())
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            out[part] = onnxruntime.InferenceSession(str(dst), options, providers=["CPUExecutionProvider"])
    return out


def untransposed(model):
    """The graph with each weight's Transpose folded into its initializer, so that the quantizer sees MatMuls on
    initializers."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    for node in list(model.graph.node):
        if node.op_type == "Transpose" and node.input[0] in inits:
            array = numpy_helper.to_array(inits[node.input[0]]).T.copy()
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
            model.graph.node.remove(node)
    return model


class LoopNet:
    """A net whose encoder is `net`'s and whose decoder (what the encoder's level loop decodes with) is `loop`'s."""

    def __init__(self, net: OnnxNet, loop: OnnxNet):
        self.net, self.loop = net, loop
        for k in ("sample_rate", "hop_length", "n_q", "encoder_context", "decoder_context", "check_n_q",
                  "encode_frames", "latent"):
            setattr(self, k, getattr(net, k))
        self.decode_latent = loop.decode_latent


def timing(net: OnnxNet, seconds: float = 60.0, repeats: int = 3) -> tuple[float, float]:
    frames = int(seconds * net.sample_rate / net.hop_length)
    x = (np.random.default_rng(0).standard_normal((1, frames * net.hop_length)) * 0.05).astype(np.float32)
    latent = net.encode_latent(x)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.encode_latent(x)
        t1 = time.perf_counter()
        net.decode_latent(latent)
        dec.append(time.perf_counter() - t1)
        enc.append(t1 - t0)
    return seconds / min(enc), seconds / min(dec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(VALID))
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    base = load_model(runtime="onnx", threads=args.threads)
    fp32 = base.net
    q = OnnxNet(base.config, read_model(resolve_model(None), numpy=True)[0], args.threads)
    q.sessions = quantized_sessions(args.threads)
    for name, net in (("fp32", fp32), ("int8", q)):
        e, d = timing(net)
        print(f"{name}: encoder graph {e:.0f}x real time, decoder graph {d:.0f}x (60 s, {args.threads} threads)")
    variants = {"fp32": (fp32, fp32), "int8": (q, q), "loop-int8": (LoopNet(fp32, q), fp32)}
    files = sorted(list_audio([Path(args.folder)]), key=lambda p: p.stat().st_size, reverse=True)[: args.files]
    scores = {k: ([], [], []) for k in variants}
    for path in files:
        audio, sr = read_audio(path)
        if audio.shape[-1] < sr:
            continue
        for name, (enc_net, dec_net) in variants.items():
            enc = LoadedModel(enc_net, base.info, base.identity)
            dec = LoadedModel(dec_net, base.info, base.identity)
            t0 = time.perf_counter()
            out = dec.decode(enc.encode(audio, sr, kbps=6))
            scores[name][2].append(time.perf_counter() - t0)
            scores[name][0].append(metrics.pesq_wb(audio[0], out[0], sr))
            scores[name][1].append(float(np.sqrt(np.mean(out ** 2)) / max(np.sqrt(np.mean(audio ** 2)), 1e-9)))
    for name, (pesq, ratio, wall) in scores.items():
        print(f"{name}: PESQ-WB {np.mean(pesq):.3f}, level ratio {np.mean(ratio):.4f}, "
              f"round trips {sum(wall):.1f} s ({len(pesq)} files)")
    diff = np.array(scores["int8"][0]) - np.array(scores["fp32"][0])
    print(f"int8 - fp32 PESQ per file: mean {diff.mean():+.3f}, worst {diff.min():+.3f}")


if __name__ == "__main__":
    main()
