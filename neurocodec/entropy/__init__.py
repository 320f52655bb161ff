"""Entropy coding of RVQ codes with integer probability tables and constriction's range coder, one room per format
generation:

- `rangecoder`: what both share (integer tables, the decoder's guards, clustering, side information: level points
  and segment counts);
- `tables`: a model's tables as its checkpoint carries them (`EntropyModel`: 1.x tables and the 2.x `MixModel`);
- `v1`: the 1.x context model and chunk payload; `v2`: the 2.x mixed context model and chunk payload.

No torch here, and no container: which generation a file uses is chosen once from its header (`payload.py`).
"""

from .rangecoder import (PRECISION, SLACK_BITS, TOTAL, UNIFORM_SHA256, decode_points, decode_side, level_bits,
                         level_reference, level_table, quantize_table, segment_table, uniform_freqs)
from .tables import EntropyModel, uniform_model
from .v1 import code_bits, contexts, decode_chunk, encode_chunk, fit
from .v2 import (LOG_UNIT, MixModel, decode_chunk_v2, encode_chunk_v2, fit_mix, mix_bits, mix_contexts,
                 mix_freqs)

__all__ = ["PRECISION", "SLACK_BITS", "TOTAL", "UNIFORM_SHA256", "decode_points", "decode_side", "level_bits",
           "level_reference", "level_table", "quantize_table", "segment_table", "uniform_freqs", "EntropyModel",
           "uniform_model", "code_bits", "contexts", "decode_chunk", "encode_chunk", "fit", "LOG_UNIT", "MixModel",
           "decode_chunk_v2", "encode_chunk_v2", "fit_mix", "mix_bits", "mix_contexts", "mix_freqs"]
