from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from neurocodec.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent  # tests use absolute paths from here: they run from any folder
DATA = Path(__file__).resolve().parent / "data"
SPEECH = DATA / "librivox_0930.flac"  # real speech, 3.3 s, 16 kHz, public domain
GOLDEN = ROOT / "formats" / "golden"
TINY_MODEL = GOLDEN / "tiny.safetensors"  # the untrained tiny model the golden vectors were made with


def free_port() -> int:
    """A TCP port nobody listens on now (for a DDP rendezvous), from the OS."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_config() -> Config:
    return load_config(ROOT / "examples" / "tiny.toml")


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    audio, sr = sf.read(SPEECH, dtype="float32", always_2d=True)
    return audio.T.copy(), sr
