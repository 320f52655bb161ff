"""What neurocodec accepts anywhere (audio in, `.ncd` headers, the Python API): one place for the bounds that the
audio path and the format share."""

MIN_SAMPLE_RATE = 1_000  # of the original audio and of the model: below it nothing is audio, and resampling
MAX_SAMPLE_RATE = 768_000  # to it costs without bound; the top is the highest PCM rate in common use
MAX_CHANNELS = 255  # a header's channel count is one byte's worth
MAX_EFFORT = 4  # `encode --effort` 0 … 4 (`search.EFFORT_STEPS`)
MAX_SECONDS = 24 * 3600.0  # the longest input read or decoded by default (`--max-hours` on the command line)

# The level envelope (`level.py` measures it, an `.ncd` header states it): every encoder writes these parameters
# for a model of a given rate and hop, and a reader accepts no others, so that a file cannot ask the decoder for
# gains, or a spacing (audio held until the next point), that no encoder of ours would write.
LEVEL_SPACING_SECONDS = 0.2  # a point per 0.2 s (docs/history.md, research/level_rates.py: the rates measured)
LEVEL_TARGET_DB = -23.0  # RMS the model sees (dBFS), EBU R 128's programme level
LEVEL_STEP_DB = 0.5  # fine enough that the closed loop's corrections do not wobble (level JND ≈ 0.5-1 dB)
LEVEL_FLOOR_DB = -45.0  # the quantiser's lowest point: quieter passages are raised by at most 22 dB
LEVEL_POINTS = 121  # floor … +15 dBFS: room for the closed loop to raise a loud passage the model renders soft


def level_spacing_frames(sample_rate: int, hop_length: int) -> int:
    """Frames between level points for a model of `sample_rate` and `hop_length` (0.2 s, at least one frame)."""
    return max(1, round(LEVEL_SPACING_SECONDS * sample_rate / hop_length))
