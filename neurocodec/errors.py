"""Domain errors. The CLI turns each into a one-line message and a non-zero exit code."""


class NeurocodecError(Exception):
    """Base class of every error a user can cause (bad input, bad file, bad config)."""

    exit_code = 1


class ConfigError(NeurocodecError):
    """A config file is unreadable, has an unknown key, or a value of the wrong type."""

    exit_code = 2


class InputError(NeurocodecError):
    """An input cannot be read: missing, unreadable, a folder, or not what the command reads."""

    exit_code = 3


class AudioError(InputError):
    """Audio cannot be read, written or resampled."""


class CheckpointError(NeurocodecError):
    """A checkpoint is missing, corrupt, or does not match its config or hash."""

    exit_code = 4


class FormatError(NeurocodecError):
    """An `.ncd` file is damaged, truncated, of an unknown version, or made by another model."""

    exit_code = 5


class MissingDependencyError(NeurocodecError):
    """An optional package or external tool is needed; the message says how to install it."""

    exit_code = 6


class OutputError(NeurocodecError):
    """An output cannot be written: missing or read-only folder, a folder as the name, disk full, closed pipe, or
    the input itself as the output."""

    exit_code = 8
