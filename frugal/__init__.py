"""frugal: sample-efficient deep reinforcement learning that fits on one machine.

import frugal
run = frugal.train("dqn", env="gym/CartPole-v1", steps=50_000)
run.evaluate(episodes=10, video=True)

The API is imported on first use, so `import frugal` (and the CLI's start) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from frugal.errors import FrugalError

__all__ = [
    "FrugalError", "Run", "compare", "evaluate", "load_run", "resume", "train", "watch",
]  # fmt: skip
__version__ = "0.1.0"

_PUBLIC = {
    "train": "frugal.api",
    "resume": "frugal.api",
    "evaluate": "frugal.api",
    "watch": "frugal.api",
    "Run": "frugal.runs",
    "load_run": "frugal.runs",
    "compare": "frugal.report",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    try:
        return importlib.import_module(f"frugal.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"frugal.{name}":
            raise
        raise AttributeError(f"module 'frugal' has no attribute '{name}'") from None
