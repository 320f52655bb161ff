"""A training run's folder: the one place that knows its layout.

    state.safetensors      everything needed to resume (weights, optimisers, schedulers, step, VQ usage): `state.py`
    generator.safetensors  the latest generator as a model checkpoint (`neurocodec encode --model …`)
    best.safetensors       the generator with the lowest validation mel distance so far
    log.jsonl              one JSON record per log step, per evaluation, and at start and stop
    config.json            the config the run started with (rewritten when a resume changes the recipe)
    curves.png             `neurocodec train --plot`
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import Config, from_dict, to_dict
from ..errors import CheckpointError, InputError

RUNS = Path("~/.cache/neurocodec/runs")  # where a run goes when no folder is given: RUNS/<model name>


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    @classmethod
    def default(cls, model_name: str) -> "RunDir":
        return cls(RUNS.expanduser() / model_name)

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------------------------------- files
    @property
    def state(self) -> Path:
        return self.path / "state.safetensors"

    @property
    def generator(self) -> Path:
        return self.path / "generator.safetensors"

    @property
    def best(self) -> Path:
        return self.path / "best.safetensors"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    def holds_run(self) -> bool:
        """Whether a run was started here (it has a state to resume)."""
        return self.state.exists()

    # ------------------------------------------------------------------------------------------- contents
    def read_config(self) -> Config:
        """The config the run started with (or last changed to)."""
        try:
            return from_dict(Config, json.loads(self.config.read_text()), where=str(self.config))
        except FileNotFoundError:
            raise CheckpointError(f"{self.config}: no run to resume here") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.config}: unreadable run config ({exc})") from None

    def write_config(self, config: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(to_dict(config), indent=1))

    def append_log(self, record: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict]:
        if not self.log.is_file():
            raise InputError(f"{self.log}: no training log here")
        records = []
        for line in self.log.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill -9 mid-write
        return records
