"""neurocodec: a DAC-style neural audio codec with an entropy-coded, checksummed container.

    import neurocodec
    model = neurocodec.load_model()                  # a LoadedModel: codec, config, entropy tables, identity
    encoded = model.encode(audio, sample_rate)       # audio [C, T] → codes [C, n_q, T_frames]
    model.encode_file("in.wav", "out.ncd", kbps=6)

The public names are imported lazily, so that `import neurocodec.cli` (and `neurocodec --help`) does not pay for
torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
_LAZY = {
    "Codec": ".model",
    "load_model": ".loader",
    "LoadedModel": ".loader",
    "EncodedAudio": ".stream",
    "describe": ".ncdinfo",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'neurocodec' has no attribute {name!r}")
