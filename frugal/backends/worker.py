"""An acting worker: its slices of the vectorised envs, a CPU copy of the agent that acts, and
per slice an act state and a random stream. The local backend runs one in the learner's process,
the Ray backend one per Ray actor; both run the same code, so which weights act on which env
step, and with which random numbers, never depends on where the worker runs."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from frugal.config import Config
from frugal.envs import make_env

STEP_KEYS = ("obs", "action", "reward", "terminated", "truncated", "reset", "next_obs", "final_obs")


def slice_bounds(num_envs: int, slices: int) -> list[tuple[int, int]]:
    """[start, stop) of each slice of the vectorised envs: contiguous, sizes differing by one."""
    sizes = [len(a) for a in np.array_split(np.arange(num_envs), slices)]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def slice_rng(seed: int, j: int) -> np.random.Generator:
    """Slice 0 keeps the run's acting stream (that of a run in one slice); the others their own."""
    return np.random.default_rng([seed, 1] if j == 0 else [seed, 1, j])


@contextmanager
def global_rngs_untouched():
    """Building an agent draws from the global RNGs; the learner's process must not notice."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(py)
    np.random.set_state(npy)


class ActingWorker:
    def __init__(self, config: Config, slices: list[int]):
        from frugal.agents import agent_module  # the agent packages import torch models

        self.config = config
        run, n = config.run, config.env.num_envs
        bounds = slice_bounds(n, run.act_slices)
        self.slices = list(slices)
        self.bounds = {j: bounds[j] for j in self.slices}
        with global_rngs_untouched():
            self.envs = {
                j: make_env(config.env, b - a, training=True) for j, (a, b) in self.bounds.items()
            }
            spec = self.envs[self.slices[0]].spec
            package = agent_module(config.algo)
            self.agent = package.Agent(config.agent, spec, n, torch.device("cpu"), run.seed)
        self.capturable = self.envs[self.slices[0]].capturable
        self.obs: dict[int, np.ndarray] = {}
        self.first: dict[int, np.ndarray] = {}
        self.act_state: dict[int, Any] = {}
        self.rng: dict[int, np.random.Generator] = {}
        self._loaded: Any = None  # key of the acting state in the agent

    def start(self, states: dict[int, dict] | None, reset_seed: int) -> dict[int, dict]:
        """Fresh slices (states None), or slices continued from saved states; a saved state
        without an env state (the suite cannot capture one) restarts that slice's games from
        `reset_seed`. Returns each slice's state after the start."""
        for j, (a, b) in self.bounds.items():
            saved = (states or {}).get(j)
            env = self.envs[j]
            obs = env.reset(reset_seed + a)
            if saved is not None and saved.get("env") is not None:
                env.set_state(saved["env"])
                self.obs[j], self.first[j] = saved["obs"], saved["first"]
                self.act_state[j] = saved["act_state"]
            else:
                self.obs[j], self.first[j] = obs, np.ones(b - a, dtype=bool)
                self.act_state[j] = self.agent.initial_act_state(b - a)
            self.rng[j] = slice_rng(self.config.run.seed, j)
            if saved is not None:
                self.rng[j].bit_generator.state = saved["rng"]
        return self.states()

    def act(self, acting_state: dict, key: Any, start: int, stop: int, capture: bool) -> dict:
        """Act and step every slice for vectorised steps [start, stop) with `acting_state`.
        Returns per slice the steps stacked [T, n, ...], the seconds it took (busy_s) and,
        with `capture`, every slice's state after."""
        t0 = time.perf_counter()
        if key != self._loaded:
            self.agent.load_acting_state(acting_state)
            self._loaded = key
        steps: dict[int, dict[str, list]] = {j: {k: [] for k in STEP_KEYS} for j in self.slices}
        records: dict[int, list] = {j: [] for j in self.slices}
        for _ in range(stop - start):
            for j in self.slices:
                obs, agent = self.obs[j], self.agent
                action, self.act_state[j] = agent.act(
                    obs, self.act_state[j], self.first[j], explore=True, rng=self.rng[j]
                )
                records[j].append(agent.act_record())
                result = self.envs[j].step(action)
                row = steps[j]
                for k, v in (
                    ("obs", obs), ("action", action), ("reward", result.reward),
                    ("terminated", result.terminated), ("truncated", result.truncated),
                    ("reset", result.reset), ("next_obs", result.obs),
                    ("final_obs", result.final_obs),
                ):  # fmt: skip
                    row[k].append(np.asarray(v))
                self.obs[j], self.first[j] = result.obs, result.reset
        out: dict[str, Any] = {"steps": {}}
        for j in self.slices:
            stacked = {k: np.stack(v) for k, v in steps[j].items()}
            rec = records[j]
            stacked["record"] = (
                None if rec[0] is None else {k: np.stack([r[k] for r in rec]) for k in rec[0]}
            )
            out["steps"][j] = stacked
        if capture:
            out["end"] = self.states()
        out["busy_s"] = time.perf_counter() - t0
        return out

    def states(self) -> dict[int, dict]:
        """Each slice's state as a checkpoint holds it: obs, first, act state, random stream and
        the envs' state (None where the suite cannot capture it)."""
        out = {}
        for j in self.slices:
            act_state = self.act_state[j]
            if isinstance(act_state, dict):
                act_state = {k: v.detach().clone() for k, v in act_state.items()}
            out[j] = {
                "obs": self.obs[j].copy(),
                "first": self.first[j].copy(),
                "act_state": act_state,
                "rng": self.rng[j].bit_generator.state,
                "env": self.envs[j].get_state() if self.capturable else None,
            }
        return out

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def merge(parts: dict[int, dict]) -> dict[str, Any]:
    """The slices' stacked steps joined in slice order: arrays [T, num_envs, ...]."""
    order = sorted(parts)
    out: dict[str, Any] = {
        k: np.concatenate([parts[j][k] for j in order], axis=1) for k in STEP_KEYS
    }
    first = parts[order[0]]["record"]
    out["record"] = (
        None
        if first is None
        else {k: np.concatenate([parts[j]["record"][k] for j in order], axis=1) for k in first}
    )
    return out
