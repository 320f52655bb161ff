"""`neurocodec export`: the encoder's and decoder's network cores as ONNX graphs (`onnxnet.py` runs them).

The graphs are built from the config with the `onnx` package (no torch: the ops are few, ConvNeXt blocks at the
frame rate), and carry no weights: each initializer is an external tensor named as in the checkpoint, which the
runtime hands to ONNX Runtime from the model's safetensors file. With `weights`, a self-contained graph (float32
weights inside) for use outside neurocodec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import ModelConfig
from .errors import MissingDependencyError
from .fileio import atomic_path
from .onnxnet import GRAPHS, graph_name, graph_tensors, supports

OPSET = 20  # Gelu


class _Graph:
    def __init__(self, onnx, tensors: dict[str, np.ndarray], embed: bool, int8: bool):
        self.onnx, self.tensors, self.embed, self.int8 = onnx, tensors, embed, int8
        self.nodes, self.initializers, self.count = [], {}, 0

    def weight(self, name: str) -> str:
        if name not in self.initializers:
            array = np.ascontiguousarray(self.tensors[name])
            if self.embed:
                t = self.onnx.numpy_helper.from_array(array, name)
            else:
                t = self.onnx.TensorProto(name=name, data_type=self.onnx.helper.np_dtype_to_tensor_dtype(array.dtype),
                                          dims=array.shape, data_location=self.onnx.TensorProto.EXTERNAL)
                for key, value in (("location", name), ("offset", "0"), ("length", str(array.nbytes))):
                    entry = t.external_data.add()
                    entry.key, entry.value = key, value
            self.initializers[name] = t
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        self.count += 1
        out = f"{kind.lower()}_{self.count}"
        self.nodes.append(self.onnx.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x: str, prefix: str, groups: int = 1) -> str:
        """Conv1d `[B, C, T]`, "same" padding (odd kernel)."""
        kernel = self.tensors[prefix + ".weight"].shape[-1]
        return self.op("Conv", [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
                       kernel_shape=[kernel], pads=[kernel // 2, kernel // 2], group=groups)

    def linear(self, x: str, prefix: str) -> str:
        """nn.Linear on the last axis (`[out, in]` weight, transposed here: `onnxnet.graph_tensors`); in an int8
        graph, the input quantised on the fly (uint8, per tensor) times the int8 weight (per output channel)."""
        if not self.int8:
            w = self.op("Transpose", [self.weight(prefix + ".weight")], perm=[1, 0])
            return self.op("Add", [self.op("MatMul", [x, w]), self.weight(prefix + ".bias")])
        self.count += 1
        xq, xs, xz = (f"{x}_{k}_{self.count}" for k in ("q", "scale", "zero"))
        self.nodes.append(self.onnx.helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xz]))
        w = prefix + ".weight"
        product = self.op("MatMulInteger", [xq, self.weight(w + ".q"), xz, self.weight(w + ".zero")])
        scale = self.op("Mul", [xs, self.weight(w + ".scale")])
        product = self.op("Mul", [self.op("Cast", [product], to=self.onnx.TensorProto.FLOAT), scale])
        return self.op("Add", [product, self.weight(prefix + ".bias")])

    def norm(self, x: str, prefix: str) -> str:
        """LayerNorm over the last axis, eps 1e-6."""
        return self.op("LayerNormalization", [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
                       axis=-1, epsilon=1e-6)

    def channels_last(self, x: str) -> str:
        return self.op("Transpose", [x], perm=[0, 2, 1])

    def convnext(self, x: str, prefix: str, dim: int) -> str:
        """`model.layers.ConvNeXtBlock` on `[B, C, T]`."""
        y = self.channels_last(self.conv(x, prefix + ".dwconv", groups=dim))
        y = self.linear(self.op("Gelu", [self.linear(self.norm(y, prefix + ".norm"), prefix + ".pwconv1")]),
                        prefix + ".pwconv2")
        y = self.op("Mul", [y, self.weight(prefix + ".gamma")])
        return self.op("Add", [x, self.channels_last(y)])

    def model(self, name: str, inputs: list, outputs: list):
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=list(self.initializers.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="neurocodec")
        model.ir_version = 10
        return model


def build(config: ModelConfig, graph: str, tensors: dict[str, np.ndarray], embed: bool = False):
    """The ONNX `ModelProto` of `graph` (`onnxnet.GRAPHS`: "encoder": STFT features `[B, 3 · bins, F]` → latent
    `[B, latent_dim, F]`; "decoder", and "decoder-int8" with int8 linear layers: latent → log magnitude and phase
    `[B, n_fft + 2, F]`). `tensors` give the shapes (and, with `embed`, the weights)."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise MissingDependencyError("exporting needs the onnx package: pip install onnx") from None
    why = supports(config)
    if why:
        raise MissingDependencyError(why)
    part = graph.split("-")[0]
    g = _Graph(onnx, graph_tensors(tensors, graph), embed, graph.endswith("-int8"))
    cfg = getattr(config, part)
    frames = "frames"
    if part == "encoder":
        bins = 3 * (cfg.n_fft // 2 + 1)
        inputs = [onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["batch", bins, frames])]
        h = g.conv("features", "encoder.embed")
    else:
        inputs = [onnx.helper.make_tensor_value_info("latent", onnx.TensorProto.FLOAT,
                                                     ["batch", config.latent_dim, frames])]
        h = g.conv("latent", "decoder.embed")
    h = g.channels_last(g.norm(g.channels_last(h), f"{part}.norm"))
    for i in range(cfg.n_blocks):
        h = g.convnext(h, f"{part}.blocks.{i}", cfg.dim)
    h = g.norm(g.channels_last(h), f"{part}.final_norm")  # [B, F, dim]
    if part == "encoder":
        g.conv(g.channels_last(h), "encoder.proj")
        name, size = "latent", config.latent_dim
    else:
        g.channels_last(g.linear(h, "decoder.head"))
        name, size = "spectrum", cfg.n_fft + 2
    g.nodes[-1].output[0] = name  # the last node's output is the graph's
    outputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", size, frames])]
    model = g.model(f"neurocodec-{graph}", inputs, outputs)
    if embed:  # the checker reads external tensors, which are supplied only at load
        onnx.checker.check_model(model)
    return model


def export(config: ModelConfig, tensors: dict[str, np.ndarray], directory: Path, embed: bool = False
           ) -> list[Path]:
    """Write the graphs (`onnxnet.GRAPHS`) into `directory` (atomically), named by architecture
    (`onnxnet.graph_name`), or with `embed` as `encoder.onnx`, `decoder.onnx`, `decoder-int8.onnx` with their
    weights inside."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for graph in GRAPHS:
        path = directory / (f"{graph}.onnx" if embed else graph_name(config, graph))
        data = build(config, graph, tensors, embed).SerializeToString()
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        written.append(path)
    return written
