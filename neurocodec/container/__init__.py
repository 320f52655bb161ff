"""The `.ncd` container: bytes, lengths and checksums, not models (no torch, no entropy coding). The byte-level
contract is `formats/ncd.md`.

- `header`: the file's facts, read in both layouts and written in 2.x;
- `chunk`: what both layouts' chunks share; `v1`, `v2`: each layout's framing (2.x with the `Writer`);
- `reader`: a whole file → verified chunks, index and damage, the framing chosen once from the header.
"""

from .chunk import MAX_BITS_PER_SYMBOL, Chunk, ParsedFile, max_payload
from .header import (EXT_CRITICAL, EXT_ENCODER, EXT_LEVEL, ID_BYTES, MAGIC, MAX_CHUNK_FRAMES, MAX_CODEBOOK_SIZE, MAX_HEADER,
                     MAX_HOP, MAX_LEVEL_POINTS, MAX_MODEL_N_Q, MAX_NAME, MAX_SEGMENT, MAX_VARINT, VERSION_MAJOR,
                     VERSION_MINOR, Header, LevelExtension, crc32, encoder_extension, parse_header, read_varint,
                     varint)
from .reader import StreamParser, framing, justified_frames, parse
from .v2 import Writer, chunk_header, index_bytes

__all__ = ["MAX_BITS_PER_SYMBOL", "Chunk", "ParsedFile", "max_payload", "EXT_CRITICAL", "EXT_ENCODER", "EXT_LEVEL", "ID_BYTES",
           "MAGIC", "MAX_CHUNK_FRAMES", "MAX_CODEBOOK_SIZE", "MAX_HEADER", "MAX_HOP", "MAX_LEVEL_POINTS",
           "MAX_MODEL_N_Q", "MAX_NAME", "MAX_SEGMENT", "MAX_VARINT", "VERSION_MAJOR", "VERSION_MINOR", "Header",
           "LevelExtension", "crc32", "encoder_extension", "parse_header", "read_varint", "varint", "framing", "justified_frames", "parse", "StreamParser",
           "Writer", "chunk_header", "index_bytes"]
