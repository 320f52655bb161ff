"""neurocodec: a DAC-style neural audio codec with an entropy-coded, checksummed container."""

from .models import load_model
from .model import Codec
from .pipeline import EncodedAudio, decode_audio, encode_audio

__version__ = "0.1.0"
__all__ = ["Codec", "EncodedAudio", "decode_audio", "encode_audio", "load_model", "__version__"]
