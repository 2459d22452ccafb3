"""The local backend: one acting worker in the learner's process holds every slice, and acts on
a request when the runner takes it. It runs the schedule the Ray backend runs, one step after
another instead of overlapped, so both give the same steps."""

from __future__ import annotations

from collections import deque
from typing import Any

from frugal.backends import Backend
from frugal.backends.worker import ActingWorker, merge
from frugal.config import Config


class LocalBackend(Backend):
    def __init__(self, config: Config):
        self.worker = ActingWorker(config, list(range(config.run.act_slices)))
        self.capturable = self.worker.capturable
        self._requests: deque = deque()
        self.busy_s = 0.0  # acting time, summed

    def start(self, states: dict[int, dict] | None, reset_seed: int) -> dict[int, dict]:
        return self.worker.start(states, reset_seed)

    def submit(self, key: Any, acting_state: dict, start: int, stop: int) -> None:
        self._requests.append((key, acting_state, start, stop))

    def take(self) -> tuple[dict[str, Any], dict[str, Any]]:
        key, acting_state, start, stop = self._requests.popleft()
        out = self.worker.act(acting_state, key, start, stop, capture=False)
        self.busy_s += out["busy_s"]
        return merge(out["steps"]), {"restarts": 0}

    def states(self) -> dict[int, dict]:
        return self.worker.states()

    def close(self) -> None:
        self.worker.close()
