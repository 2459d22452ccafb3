"""EfficientZero's batches drawn ahead (`agent.prefetch=L`), so their reanalysis can run on
other workers while the learner trains.

The batch for update v is drawn as update v - L begins (the first L + 1 all as the first update
begins), exactly as an update would draw its own then: positions and importance weights from
the learner's random stream and the replay as it is at that point (its priorities as of the
updates before, its positions those the schedule has collected), the positions chosen for
re-search from the same stream, the target network as of that point. Its search draws from a
generator seeded by (run seed, v). The schedule fixes each of these, so where and when the
reanalysis runs — in this process (`InProcess`) or on reanalysis workers the runner hands in
(`use`) — never changes a target. A batch is a job of numpy arrays (targets.prepare_targets:
the distinct observations it needs, not the replay) naming a target-weight version; the jobs not
yet consumed and the versions they name are part of the checkpoint, and are reanalysed again
after a resume.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from frugal.agents.base import detached
from frugal.agents.efficientzero.targets import assemble, prepare_targets, reanalyse
from frugal.nets import precision

if TYPE_CHECKING:
    from frugal.agents.efficientzero.agent import Agent


def search_seed(seed: int, update: int) -> int:
    """The seed of the reanalysis search of the batch of `update`, in a run seeded `seed`."""
    return int(np.random.default_rng([seed, 13, update]).integers(2**62))


class Reanalyser:
    """Computes a job's targets with the target weights of the version it names, in a copy of
    the target network (the learner's own is never touched). A reanalysis worker runs one over
    its own copy of the agent; `InProcess` one over the learner."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.net = copy.deepcopy(agent.target)
        self.loaded: int | None = None  # the version in self.net

    def __call__(self, job: dict[str, Any], version: int, weights: dict) -> dict[str, Any]:
        t0 = time.perf_counter()
        if version != self.loaded:
            self.net.load_state_dict(weights)
            self.loaded = version
        frames = precision.to_device(job["frames"], self.agent.device)
        generator = torch.Generator().manual_seed(int(job["seed"]))
        out = reanalyse(self.agent, job, frames, self.net, generator)
        out["busy_s"] = time.perf_counter() - t0
        return out


class InProcess:
    """Reanalysis in the learner's process, when the learner takes the batch."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.work: Reanalyser | None = None  # made when first needed
        self._jobs: dict[int, tuple] = {}

    def submit(self, key: int, job: dict[str, Any], version: int, weights: dict) -> None:
        self._jobs[key] = (job, version, weights)

    def take(self, key: int) -> dict[str, Any]:
        if self.work is None:
            self.work = Reanalyser(self.agent)
        return self.work(*self._jobs.pop(key))


class Prefetch:
    """The queue of drawn batches, oldest first, and the target weights they name."""

    def __init__(self, agent: Agent, depth: int):
        self.agent, self.depth = agent, depth
        self.queue: deque[dict[str, Any]] = deque()  # {update, version, index, weights, job}
        self.version = 0  # target refreshes so far: names the target's weights
        self.versions: dict[int, dict] = {}  # weights of the versions queued batches name
        self.executor: Any = InProcess(agent)

    def use(self, executor: Any | None) -> None:
        """Reanalyse on `executor` (submit / take by update index), or in this process (None);
        the batches already drawn are handed to it again."""
        self.executor = InProcess(self.agent) if executor is None else executor
        for entry in self.queue:
            v = entry["version"]
            self.executor.submit(entry["update"], entry["job"], v, self.versions[v])

    def target_refreshed(self) -> None:
        self.version += 1

    def batch(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The batch of the update about to run: (priority ids, importance weights, targets;
        the targets' timings include the wait for its reanalysis). Draws the batches up to L
        ahead first; the queue is left as it was if the reanalysis fails (a lost worker), so
        the update can be tried again."""
        agent = self.agent
        u = agent.updates
        self._draw(u + self.depth)
        entry = self.queue[0]
        assert entry["update"] == u, f"prefetched batch {entry['update']} at update {u}"
        t0 = time.perf_counter()
        computed = self.executor.take(u)
        computed["timings"]["perf/prefetch_wait_s"] = time.perf_counter() - t0
        self.queue.popleft()
        named = {e["version"] for e in self.queue}
        self.versions = {k: w for k, w in self.versions.items() if k in named}
        job = entry["job"]
        frames = precision.to_device(job["frames"], agent.device)
        return entry["index"], entry["weights"], assemble(job, computed, frames)

    def _draw(self, last: int) -> None:
        agent, cfg = self.agent, self.agent.cfg
        first = self.queue[-1]["update"] + 1 if self.queue else agent.updates
        for v in range(first, last + 1):
            sample = agent.replay.sample(cfg.batch_size, agent.rng, beta=agent.per_beta())
            job = prepare_targets(agent, sample.rows, sample.envs)
            job["seed"] = search_seed(agent.seed, v)
            if self.version not in self.versions:
                self.versions[self.version] = detached(agent.target)
            self.queue.append(
                {"update": v, "version": self.version, "index": sample.index,
                 "weights": sample.weights, "job": job}
            )  # fmt: skip
            self.executor.submit(v, job, self.version, self.versions[self.version])

    # ---------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "versions": dict(self.versions),
            "queue": [dict(e) for e in self.queue],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.version = int(state["version"])
        device = self.agent.device
        self.versions = {
            int(k): {n: t.to(device) for n, t in w.items()} for k, w in state["versions"].items()
        }
        self.queue = deque(state["queue"])
        self.use(None if isinstance(self.executor, InProcess) else self.executor)
