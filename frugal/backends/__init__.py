"""Where acting (and reanalysis) runs: `local` (in the learner's process) or `ray` (Ray actors,
on this machine or a cluster). The runner owns time and the learner; a backend only acts on requests
[start, stop) of vectorised env steps with the acting state the runner's schedule names, so both
backends give the same steps for the same settings."""

from __future__ import annotations

from typing import Any

from frugal.config import Config
from frugal.errors import FrugalError


class WorkerLost(FrugalError):
    """An acting worker failed and could not be restarted; the message names it."""


class Backend:
    """What the runner calls. Requests are taken in the order they were submitted."""

    capturable: bool  # the envs' state can be saved
    busy_s: float  # seconds the acting workers have spent acting, summed over them
    reanalysers: Any = None  # reanalysis workers for agents that draw batches ahead, or None

    def start(self, states: dict[int, dict] | None, reset_seed: int) -> dict[int, dict]:
        """Start every slice (see ActingWorker.start); returns their states."""
        raise NotImplementedError

    def submit(self, key: Any, acting_state: dict, start: int, stop: int) -> None:
        """Act on vectorised steps [start, stop) with `acting_state` (named by `key`)."""
        raise NotImplementedError

    def take(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The oldest request's steps (merged over slices, arrays [T, num_envs, ...]) and what
        happened meanwhile: {"restarts": workers restarted, "reset_obs": all envs' obs when
        games were restarted (the learner cuts its games there), or absent}."""
        raise NotImplementedError

    def states(self) -> dict[int, dict]:
        """Every slice's state after the last request taken."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def make_backend(config: Config) -> Backend:
    if config.run.backend == "ray":
        from frugal.backends.ray import RayBackend  # Ray is an optional extra

        return RayBackend(config)
    from frugal.backends.local import LocalBackend

    return LocalBackend(config)
