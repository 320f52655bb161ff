"""Bundled models and loading a model by name or path."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from .checkpoint import CheckpointInfo, read_model
from .errors import CheckpointError
from .model import Codec

DEFAULT_MODEL = "default"
_WEIGHTS_DIR = "weights"


def bundled_models() -> dict[str, Path]:
    """Name → path of every model shipped inside the package (`neurocodec/weights/*.safetensors`)."""
    root = resources.files("neurocodec") / _WEIGHTS_DIR
    out = {}
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.endswith(".safetensors"):
                out[entry.name[: -len(".safetensors")]] = Path(str(entry))
    return out


def resolve_model(name_or_path: str | os.PathLike | None) -> Path:
    """A bundled model's name, or a path to a checkpoint file."""
    name = str(name_or_path or DEFAULT_MODEL)
    bundled = bundled_models()
    if name in bundled:
        return bundled[name]
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists() or os.sep in name:
        return path
    hint = ", ".join(sorted(bundled)) or "none is installed"
    raise CheckpointError(f"unknown model {name!r}: give a .safetensors path or a bundled model ({hint})")


def build_codec(state: dict[str, torch.Tensor], info: CheckpointInfo) -> Codec:
    codec = Codec(info.config)
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the config of model {info.name!r}: {str(exc).splitlines()[0]}") from None
    return codec


def load_model(
    name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None, inference: bool = True
) -> tuple[Codec, CheckpointInfo]:
    """Load a codec. `device` None picks CUDA when present. Inference mode folds weight norm and freezes it."""
    state, info = read_model(resolve_model(name_or_path))
    codec = build_codec(state, info).float()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        codec = codec.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise CheckpointError(f"cannot use device {device!r}: {str(exc).splitlines()[0]}") from None
    if inference:
        codec.prepare_for_inference()
    return codec, info
