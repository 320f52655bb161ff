"""What neurocodec accepts anywhere (audio in, `.ncd` headers, the Python API): one place for the bounds that the
audio path and the format share."""

MIN_SAMPLE_RATE = 1_000  # of the original audio and of the model: below it nothing is audio, and resampling
MAX_SAMPLE_RATE = 768_000  # to it costs without bound; the top is the highest PCM rate in common use
MAX_CHANNELS = 255  # a header's channel count is one byte's worth
