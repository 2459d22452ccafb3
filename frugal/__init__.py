"""frugal: sample-efficient deep reinforcement learning that fits on one machine.

import frugal
run = frugal.train("dqn", env="gym/CartPole-v1", steps=50_000)
run.evaluate(episodes=10, video=True)
"""

from frugal.api import evaluate, resume, train
from frugal.errors import FrugalError
from frugal.runs import Run, load_run

__all__ = ["FrugalError", "Run", "compare", "evaluate", "load_run", "resume", "train"]
__version__ = "0.1.0"


def compare(*args, **kwargs):
    """Learning curves, score tables and human-normalised scores of several runs."""
    from frugal.report import compare as _compare

    return _compare(*args, **kwargs)
