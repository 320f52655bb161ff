"""Model files: safetensors weights + metadata (config, model name, weights SHA-256), and where they are found
(the models bundled in the package, or a path). Never pickle. Loading one for use is `loader.load_model`.

The hash covers, for every tensor in sorted name order: the name, dtype, shape and raw bytes. It is the model's
identity in `.ncd` files, so a decoder can refuse codes made by another model before decoding anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from safetensors import SafetensorError

from .config import ModelConfig, model_config_from_json, to_dict
from .entropy import EntropyModel, uniform_model
from .errors import CheckpointError, ConfigError, FormatError
from .fileio import atomic_path

if TYPE_CHECKING:  # torch is imported where tensors are: `info` and the light paths read metadata without it
    import torch

FORMAT = "neurocodec-model"
FORMAT_VERSION = "1"
DEFAULT_MODEL = "default"
_WEIGHTS_DIR = "weights"
ENCODER_PREFIX = "encoder."  # tensors only the encoder uses


class CheckpointInfo(NamedTuple):
    name: str
    config: ModelConfig
    weights_sha256: str  # every weight: the checkpoint's identity
    extra: dict[str, str]
    entropy: EntropyModel  # the fitted tables, or the uniform model when the checkpoint carries none
    decoder_sha256: str = ""  # the weights a decoder needs (all but the encoder's): what files name since 2.1
    encoder_sha256: str = ""  # the encoder's weights alone
    decodes: tuple[str, ...] = ()  # weights hashes of earlier releases with the same decoder (their files decode)


def weights_sha256(tensors: "dict[str, torch.Tensor | np.ndarray]") -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, np.ndarray):  # read without torch: the same bytes under torch's dtype name
            dtype, shape, raw = "torch." + t.dtype.name, t.shape, np.ascontiguousarray(t).view(np.uint8)
        else:
            import torch

            t = t.detach().cpu().contiguous()
            dtype, shape, raw = str(t.dtype), t.shape, t.view(torch.uint8).numpy() if t.numel() else b""
        h.update(name.encode())
        h.update(dtype.encode())
        h.update(json.dumps(list(shape)).encode())
        h.update(bytes(raw) if len(raw) else b"")
    return h.hexdigest()


def part_hashes(tensors: dict[str, torch.Tensor]) -> tuple[str, str]:
    """(decoder hash, encoder hash): `weights_sha256` of every tensor but the encoder's (quantizer and decoder: all
    a decoder uses), and of the encoder's alone. A better encoder leaves the decoder hash, hence files, alone."""
    encoder = {k: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    return weights_sha256({k: v for k, v in tensors.items() if k not in encoder}), weights_sha256(encoder)


def integrity_sha256(metadata: dict[str, str]) -> str:
    """The hash over everything that decides what a checkpoint computes besides its tensors: format, name, the
    config JSON exactly as stored, the weights hash and the entropy tables' hash. An edited sample rate or hop
    changes it; the model's identity in `.ncd` files stays `weights_sha256`, so re-saving never orphans files."""
    fields = ("format", "format_version", "name", "config", "weights_sha256", "entropy_sha256")
    fields += ("mix_sha256",) if "mix_sha256" in metadata else ()  # the 2.x context model's, when it has one
    fields += tuple(k for k in ("decoder_sha256", "decodes") if k in metadata)  # since the identity split
    return hashlib.sha256(json.dumps([metadata.get(k, "") for k in fields]).encode()).hexdigest()


def save_model(
    path: str | os.PathLike,
    state: dict[str, torch.Tensor],
    config: ModelConfig,
    name: str | None = None,
    dtype: torch.dtype | None = None,
    extra: dict[str, str] | None = None,
    entropy: EntropyModel | None = None,
    decodes: tuple[str, ...] = (),
) -> str:
    """Write weights atomically; returns the weights hash. `dtype` converts floating tensors (e.g. fp16 release).

    `entropy` tables travel in the same file as `entropy.*` tensors with their own hash: refitting them does not
    change the model's identity, so files coded with older tables still decode (their header names the tables).
    `decodes`: weights hashes of earlier checkpoints whose files this one decodes (the caller checked that their
    decoder hash is this one's: `tools/release_model.py` does).
    """
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v
    digest = weights_sha256(tensors)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name or config.name,
        "config": json.dumps(to_dict(config)),
        "weights_sha256": digest,
        "decoder_sha256": part_hashes(tensors)[0],
        **(extra or {}),
    }
    if decodes:
        metadata["decodes"] = json.dumps(sorted(set(decodes)))
    if entropy is not None:
        tensors.update({k: torch.from_numpy(v) for k, v in entropy.tensors().items()})
        metadata["entropy_sha256"] = entropy.sha256
        if entropy.mix is not None:
            metadata["mix_sha256"] = entropy.mix.sha256
    metadata["integrity_sha256"] = integrity_sha256(metadata)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return digest


def read_model(path: str | os.PathLike, numpy: bool = False
               ) -> tuple[dict[str, "torch.Tensor | np.ndarray"], CheckpointInfo]:
    """Load and verify a checkpoint: torch tensors, or with `numpy` NumPy arrays (no torch: the light runtime; a
    dtype NumPy lacks, bfloat16, is refused there). Raises `CheckpointError` with one line saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        from safetensors import safe_open

        if numpy:
            from safetensors.numpy import load_file
        else:
            from safetensors.torch import load_file

        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({str(exc).splitlines()[0]})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a neurocodec model (metadata format {metadata.get('format')!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {metadata.get('format_version')!r}")
    # Files written before the integrity hash existed have none; they load, checked by the weights hash alone.
    if "integrity_sha256" in metadata and metadata["integrity_sha256"] != integrity_sha256(metadata):
        raise CheckpointError(f"{path}: integrity hash mismatch: its config, name or hashes were altered after it "
                              "was saved")
    try:
        config = model_config_from_json(metadata.get("config", ""))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad config in metadata: {exc}") from None
    tables = {k: np.asarray(tensors.pop(k)) for k in list(tensors) if k.startswith("entropy.")}
    digest = weights_sha256(tensors)
    if digest != metadata.get("weights_sha256"):
        raise CheckpointError(
            f"{path}: weights hash mismatch (file says {str(metadata.get('weights_sha256'))[:16]}…, "
            f"weights hash to {digest[:16]}…): the file is corrupt or was altered"
        )
    if tables:
        try:
            entropy = EntropyModel.from_tensors(tables)
        except (KeyError, FormatError) as exc:
            raise CheckpointError(f"{path}: bad entropy tables ({exc})") from None
        if entropy.sha256 != metadata.get("entropy_sha256") or \
                (entropy.mix is not None and entropy.mix.sha256 != metadata.get("mix_sha256")):
            raise CheckpointError(f"{path}: entropy tables hash mismatch: the file is corrupt or was altered")
        if entropy.n_q != config.quantizer.n_q or entropy.codebook_size != config.quantizer.codebook_size:
            raise CheckpointError(f"{path}: entropy tables do not fit the model's codebooks")
    else:
        entropy = uniform_model(config.quantizer.n_q, config.quantizer.codebook_size)
    decoder, encoder = part_hashes(tensors)
    if metadata.get("decoder_sha256", decoder) != decoder:
        raise CheckpointError(f"{path}: decoder hash mismatch: the file is corrupt or was altered")
    try:
        decodes = tuple(json.loads(metadata.get("decodes", "[]")))
        if not all(isinstance(d, str) and len(d) == 64 for d in decodes):
            raise ValueError
    except ValueError:
        raise CheckpointError(f"{path}: bad 'decodes' list in metadata") from None
    known = {"format", "format_version", "name", "config", "weights_sha256", "entropy_sha256", "integrity_sha256",
             "mix_sha256", "decoder_sha256", "decodes"}
    extra = {k: v for k, v in metadata.items() if k not in known}
    return tensors, CheckpointInfo(metadata.get("name", config.name), config, digest, extra, entropy, decoder,
                                   encoder, decodes)


def read_config(path: str | os.PathLike) -> ModelConfig:
    """A checkpoint's config from its metadata alone (no tensors, no torch): what the command line checks an
    option against before the model loads. `read_model` verifies the whole file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
        return model_config_from_json(metadata.get("config", ""))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable neurocodec checkpoint ({str(exc).splitlines()[0]})") from None
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad config in metadata: {exc}") from None


def bundled_models() -> dict[str, Path]:
    """Name → path of every model shipped inside the package (`neurocodec/weights/*.safetensors`)."""
    root = resources.files("neurocodec") / _WEIGHTS_DIR
    out = {}
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.endswith(".safetensors"):
                out[entry.name[: -len(".safetensors")]] = Path(str(entry))
    return out


def bundled_name(model_id: str) -> str | None:
    """The bundled model a file's model id (a prefix of a weights or decoder hash) names, if any: read from each
    bundled file's metadata, or for a checkpoint saved before the identity split, its tensors' decoder hash."""
    from safetensors import safe_open

    for name, path in sorted(bundled_models().items()):
        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError):
            continue
        ids = [meta.get("weights_sha256", ""), *json.loads(meta.get("decodes", "[]"))]
        ids.append(meta.get("decoder_sha256") or _decoder_hash(str(path)))
        if any(str(i).startswith(model_id) for i in ids if i):
            return name
    return None


@functools.lru_cache(maxsize=8)
def _decoder_hash(path: str) -> str:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)  # numpy: no torch for `info`
    except (TypeError, ValueError, SafetensorError):  # a dtype numpy lacks (bfloat16)
        from safetensors.torch import load_file

        tensors = load_file(path)
    return part_hashes({k: v for k, v in tensors.items() if not k.startswith("entropy.")})[0]


def resolve_model(name_or_path: str | os.PathLike | None) -> Path:
    """A bundled model's name (None: the default), or a path to a checkpoint file."""
    name = str(name_or_path or DEFAULT_MODEL)
    bundled = bundled_models()
    if name in bundled:
        return bundled[name]
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists() or os.sep in name:
        return path
    hint = ", ".join(sorted(bundled)) or "none is installed"
    raise CheckpointError(f"unknown model {name!r}: give a .safetensors path or a bundled model ({hint})")
