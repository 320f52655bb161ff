"""The model, following the pipeline: layers → encoder → quantize → decoder → codec."""

from .codec import Codec, CodecOutput

__all__ = ["Codec", "CodecOutput"]
