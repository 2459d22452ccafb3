"""Reanalysis workers on Ray (`run.reanalysers=M`): each a Ray actor with a CPU copy of the
agent that computes the targets of the batches the learner draws ahead (EfficientZero's
`agent.prefetch`). A job holds the distinct observations its batch needs (never the replay) and
names a target-weight version; each version's weights are put in the object store once and
fetched by a worker only when it has not loaded that version. Results are taken in the order the
learner consumes them; every wait has a timeout that names the worker; a worker that dies or
stays silent is replaced and given again every job it owed, which it computes exactly as the
lost one would have (the job and the version fix the result). When the learner finds a batch
not yet reanalysed, it reanalyses the next batch it draws itself (`learner`), as the workers
would: who computes a batch never changes it, only how long the learner waits."""

from __future__ import annotations

from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, RayError

from frugal.backends import WorkerLost
from frugal.backends.ray import _first_line, _to_cpu, _writable
from frugal.backends.worker import global_rngs_untouched
from frugal.config import Config
from frugal.envs import make_env

TRIES = 3  # restarts of one worker for one job before the run stops


class _Reanalyser:
    def __init__(self, config: Config):
        from frugal.agents import agent_module  # the agent packages import torch models

        torch.set_num_threads(1)  # one core per worker
        with global_rngs_untouched():
            env = make_env(config.env, 1, training=True)
            spec = env.spec
            env.close()
            agent = agent_module(config.algo).Agent(
                config.agent, spec, config.env.num_envs, torch.device("cpu"), config.run.seed
            )
        self.work = agent.reanalyser()

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def run(self, job: dict[str, Any], version: int, weights: list) -> dict[str, Any]:
        """`weights` is [the version's object ref], fetched only when the version is new here."""
        loaded = self.work.loaded == version
        return self.work(job, version, None if loaded else ray.get(weights[0]))


class RayReanalysers:
    """M reanalysis workers; jobs are dealt out in turn, and to `learner` (the learner's own
    Reanalyser, when given) after the learner had to wait."""

    def __init__(self, config: Config, count: int, timeout: float):
        self.config, self.timeout = config, timeout
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(_Reanalyser)
        self.workers = [self._actor_class.remote(config) for _ in range(count)]
        self.nodes = [self._wait(w, self.workers[w].node.remote(), "start") for w in range(count)]
        self._weights: dict[int, Any] = {}  # version -> object ref of its weights
        # update -> [worker (None: the learner), result ref, job, version, weights]
        self._jobs: dict[int, list] = {}
        self._turn = 0
        self.learner: Any = None  # a Reanalyser in the learner's process, or None
        self._behind = False  # the learner waited for the last batch it took
        self.restarts = 0
        self.busy_s = 0.0  # the workers' computing time, summed

    def _name(self, w: int) -> str:
        return f"reanalysis worker {w}"

    def _wait(self, w: int, ref, what: str):
        try:
            return ray.get(ref, timeout=self.timeout)
        except GetTimeoutError:
            raise WorkerLost(
                f"{self._name(w)} sent nothing for {self.timeout:g} s ({what}); raise "
                "run.worker_timeout or check the cluster"
            ) from None
        except RayError as e:
            raise WorkerLost(f"{self._name(w)} failed ({what}): {_first_line(e)}") from None

    def submit(self, key: int, job: dict[str, Any], version: int, weights: dict) -> None:
        if version not in self._weights:
            self._weights[version] = ray.put(_to_cpu(weights))
        if self._behind and self.learner is not None:
            self._behind = False
            self._jobs[key] = [None, None, job, version, weights]
            return
        w = self._turn % len(self.workers)
        self._turn += 1
        self._jobs[key] = [w, None, job, version, weights]
        self._send(key)

    def _send(self, key: int) -> None:
        entry = self._jobs[key]
        w, _, job, version, _ = entry
        entry[1] = self.workers[w].run.remote(job, version, [self._weights[version]])

    def take(self, key: int) -> dict[str, Any]:
        w, ref, job, version, weights = self._jobs[key]
        if w is None:
            del self._jobs[key]
            out = self.learner(job, version, weights)
            out.pop("busy_s")
            return out
        self._behind = not ray.wait([ref], timeout=0)[0]
        tries = 0
        while True:
            w, ref = self._jobs[key][:2]
            try:
                out = self._wait(w, ref, f"the batch of update {key}")
                break
            except WorkerLost as lost:
                tries += 1
                if tries > TRIES:
                    raise WorkerLost(f"{lost} and could not be restarted") from None
                self._restart(w)
        del self._jobs[key]
        named = {entry[3] for entry in self._jobs.values()}
        newest = max(self._weights)
        self._weights = {k: r for k, r in self._weights.items() if k in named or k == newest}
        self.busy_s += out.pop("busy_s", 0.0)
        return _writable(out)

    def _restart(self, w: int) -> None:
        """A new actor for worker w, given again every job it owed."""
        try:
            ray.kill(self.workers[w], no_restart=True)
        except RayError:
            pass
        self.workers[w] = self._actor_class.remote(self.config)
        self.nodes[w] = self._wait(w, self.workers[w].node.remote(), "restart")
        self.restarts += 1
        for key, entry in self._jobs.items():
            if entry[0] == w:
                self._send(key)

    def close(self) -> None:
        for worker in self.workers:
            try:
                ray.kill(worker, no_restart=True)
            except RayError:
                pass
        self.workers = []
