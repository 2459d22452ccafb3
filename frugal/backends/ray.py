"""The Ray backend: `run.actors` Ray actors, each an ActingWorker over its share of the env
slices. Requests are submitted as soon as the schedule has produced their acting state, so the
actors act on later chunks while the learner trains on earlier ones; each actor runs its
requests in the order they were submitted. Every wait has a timeout that names the worker. A
worker that dies (or stays silent past `run.worker_timeout`) is replaced by a new actor that
continues its slices from their state after the last request taken (exactly, where the envs'
state can be captured; otherwise its games restart) and is given again the requests it owed."""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

import numpy as np
import ray
import torch
from ray.exceptions import GetTimeoutError, RayError

from frugal.backends import Backend, WorkerLost
from frugal.backends.worker import ActingWorker, merge, slice_bounds
from frugal.config import Config

TRIES = 3  # restarts of one worker for one request before the run stops


class _RayWorker(ActingWorker):
    def __init__(self, config: Config, slices: list[int]):
        torch.set_num_threads(1)  # one core per actor
        super().__init__(config, slices)

    def info(self) -> dict[str, Any]:
        return {
            "capturable": self.capturable,
            "node": ray.get_runtime_context().get_node_id(),
        }


class RayBackend(Backend):
    def __init__(self, config: Config):
        run = config.run
        self.config = config
        self.timeout = run.worker_timeout
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _check_reachable(run.ray_address)
            try:  # "local" starts a new instance here, never joining one found running
                ray.init(
                    address=run.ray_address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level="error",
                )
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise WorkerLost(
                    f"cannot reach the Ray cluster at run.ray_address={run.ray_address} "
                    f"({str(e).splitlines()[0][:120]}); start it with 'ray start --head' or "
                    "use run.ray_address=local"
                ) from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        need = run.actors + run.reanalysers
        if cpus < need:  # the workers would wait for CPUs that never come
            raise WorkerLost(
                f"run.actors={run.actors} and run.reanalysers={run.reanalysers} need {need} CPUs "
                f"in the Ray cluster, which has {cpus}; lower them or add nodes"
            )
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
        groups = np.array_split(np.arange(run.act_slices), run.actors)
        self.groups = [[int(j) for j in g] for g in groups]
        bounds = slice_bounds(config.env.num_envs, run.act_slices)
        self.envs_of = [f"envs {bounds[g[0]][0]}-{bounds[g[-1]][1] - 1}" for g in self.groups]
        self.workers = [self._spawn(w) for w in range(len(self.groups))]
        infos = [
            self._wait(w, self.workers[w].info.remote(), "start") for w in range(len(self.groups))
        ]
        self.capturable = bool(infos[0]["capturable"])
        self.nodes = [i["node"] for i in infos]
        self._requests: deque = deque()
        self._state_refs: dict[Any, Any] = {}  # acting states put once, shared by all actors
        self._end: dict[int, dict] = {}  # each slice's state after the last request taken
        self._reset_seed = run.seed
        self.restarts = 0
        self.busy_s = 0.0  # the acting workers' acting time, summed
        self.reanalysers = None
        if run.reanalysers > 0:
            from frugal.backends.reanalysis import RayReanalysers

            self.reanalysers = RayReanalysers(config, run.reanalysers, self.timeout)

    # ---------------------------------------------------------------------------- workers

    def _spawn(self, w: int):
        return self._actor_class.remote(self.config, self.groups[w])

    def _name(self, w: int) -> str:
        return f"acting worker {w} ({self.envs_of[w]})"

    def _wait(self, w: int, ref, what: str):
        """ray.get with the run's timeout; a failure names the worker."""
        try:
            return ray.get(ref, timeout=self.timeout)
        except GetTimeoutError:
            raise WorkerLost(
                f"{self._name(w)} sent nothing for {self.timeout:g} s ({what}); raise "
                "run.worker_timeout or check the cluster"
            ) from None
        except RayError as e:
            raise WorkerLost(f"{self._name(w)} failed ({what}): {_first_line(e)}") from None

    def start(self, states: dict[int, dict] | None, reset_seed: int) -> dict[int, dict]:
        self._reset_seed = reset_seed
        refs = [
            worker.start.remote(
                None if states is None else {j: states[j] for j in self.groups[w]}, reset_seed
            )
            for w, worker in enumerate(self.workers)
        ]
        for w, ref in enumerate(refs):
            self._end.update(_writable(self._wait(w, ref, "start")))
        return dict(self._end)

    def submit(self, key: Any, acting_state: dict, start: int, stop: int) -> None:
        if key not in self._state_refs:
            cpu = _to_cpu(acting_state)
            self._state_refs[key] = ray.put(cpu)
        ref = self._state_refs[key]
        request = {"key": key, "ref": ref, "start": start, "stop": stop}
        request["refs"] = [w.act.remote(ref, key, start, stop, True) for w in self.workers]
        self._requests.append(request)

    def take(self) -> tuple[dict[str, Any], dict[str, Any]]:
        request = self._requests[0]
        parts: dict[int, dict] = {}
        restarts, reset = 0, False
        before = dict(self._end)  # where every slice began this request
        for w in range(len(self.workers)):
            tries = 0
            while True:
                try:
                    out = self._wait(w, request["refs"][w], f"steps {request['start']}-")
                    break
                except WorkerLost as lost:
                    tries += 1
                    if tries > TRIES:
                        raise WorkerLost(f"{lost} and could not be restarted") from None
                    started = self._restart(w)
                    before.update(started)
                    reset |= any(self._end[j]["env"] is None for j in started)
                    restarts += 1
            parts.update(out["steps"])
            self.busy_s += out["busy_s"]
            self._end.update(_writable(out["end"]))
        self._requests.popleft()
        wanted = {r["key"] for r in self._requests}
        newest = max(self._state_refs)
        self._state_refs = {k: v for k, v in self._state_refs.items() if k in wanted or k == newest}
        self.restarts += restarts
        news: dict[str, Any] = {"restarts": restarts}
        if reset:  # the learner cuts its games where the restarted slices began new ones
            news["reset_obs"] = np.concatenate([before[j]["obs"] for j in sorted(before)])
        return merge(parts), news

    def _restart(self, w: int) -> dict[int, dict]:
        """A new actor for worker w, continued from its slices' state after the last request
        taken (their games restart where the envs' state was not captured), and given again
        every request it still owes. Returns its slices' states after the start."""
        try:
            ray.kill(self.workers[w], no_restart=True)
        except RayError:
            pass
        self.workers[w] = worker = self._spawn(w)
        mine = {j: self._end[j] for j in self.groups[w]}
        seed = int(
            np.random.default_rng([self.config.run.seed, 4, self.restarts, w]).integers(2**31)
        )
        started = self._wait(w, worker.start.remote(mine, seed), "restart")
        started = _writable(started)
        self._end.update(started)
        self.nodes[w] = self._wait(w, worker.info.remote(), "restart")["node"]
        for request in self._requests:
            request["refs"][w] = worker.act.remote(
                request["ref"], request["key"], request["start"], request["stop"], True
            )
        return started

    def states(self) -> dict[int, dict]:
        return dict(self._end)

    def close(self) -> None:
        if self.reanalysers is not None:
            self.reanalysers.close()
        for worker in self.workers:
            try:
                ray.kill(worker, no_restart=True)
            except RayError:
                pass
        self.workers = []
        if self._owns_ray:
            ray.shutdown()


def _check_reachable(address: str, seconds: float = 10.0) -> None:
    """A HOST:PORT that accepts no connection is one line now, where Ray would retry for
    minutes."""
    if address in ("local", "auto"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as e:
        raise WorkerLost(
            f"no Ray head answers at run.ray_address={address} ({e.strerror or e}); start one "
            "there with 'ray start --head', or use run.ray_address=local"
        ) from None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:160]


def _writable(tree: Any) -> Any:
    """Arrays read from the object store are read-only views; the learner owns copies."""
    if isinstance(tree, np.ndarray):
        return tree.copy()
    if isinstance(tree, dict):
        return {k: _writable(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_writable(v) for v in tree]
    return tree


def _to_cpu(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_to_cpu(v) for v in tree)
    return tree
