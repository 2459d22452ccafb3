"""Replay of step sequences for world models (Dreamer): one ring buffer per env stream.

Row i of a stream is one observed step: the observation, the action that led to it, the reward
received on arriving there, and its flags. `first` marks the first observation of a game (its
action and reward are zeros); `terminal` marks an observation after which the game cannot go on.
A game of n steps takes n + 1 rows, because unlike `StreamReplay` the final observation of every
game is kept (a world model learns rewards and termination from it).

Sampled windows run across game boundaries; a model resets its state where `first` is set.
Each of the batch's slots continues, on the next call, right after the window it last read
(same stream), so a model can carry its latent state from one batch to the next; a slot whose
continuation is not yet written (or already overwritten) jumps to a uniformly drawn window,
whose first row is then marked `first` so the carried state is dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SequenceReplay:
    """`capacity` rows in all, split evenly over `num_envs` streams.

    obs_shape/obs_dtype: one observation (uint8 frames are stored as they come);
    action_shape/action_dtype: one action (scalar int for discrete actions)."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
    ):
        self.rows = max(capacity // num_envs, 2)
        self.num_envs = num_envs
        shape = (num_envs, self.rows)
        self.obs = np.zeros((*shape, *obs_shape), dtype=obs_dtype)
        self.action = np.zeros((*shape, *action_shape), dtype=action_dtype)
        self.reward = np.zeros(shape, dtype=np.float32)
        self.first = np.zeros(shape, dtype=bool)
        self.terminal = np.zeros(shape, dtype=bool)
        self.count = np.zeros(num_envs, dtype=np.int64)  # rows written to each stream
        self.started = False
        # per batch slot: the stream and absolute row its next window starts at (-1: none)
        self.cursor_env = np.zeros(0, dtype=np.int64)
        self.cursor_row = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------------------- writing

    def _write(self, envs: np.ndarray, obs, action, reward, first, terminal) -> None:
        slots = self.count[envs] % self.rows
        self.obs[envs, slots] = obs
        self.action[envs, slots] = action
        self.reward[envs, slots] = reward
        self.first[envs, slots] = first
        self.terminal[envs, slots] = terminal
        self.count[envs] += 1

    def _write_starts(self, envs: np.ndarray, obs: np.ndarray) -> None:
        n = len(envs)
        zeros_action = np.zeros((n, *self.action.shape[2:]), dtype=self.action.dtype)
        self._write(envs, obs, zeros_action, np.zeros(n), np.ones(n, bool), np.zeros(n, bool))

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        reset: np.ndarray,
        next_obs: np.ndarray,
        final_obs: np.ndarray,
    ) -> None:
        """One vectorised step (leading dim num_envs): `final_obs` is the true successor of
        `obs`; where `reset`, the env started a new game at `next_obs`."""
        envs = np.arange(self.num_envs)
        if not self.started:
            self._write_starts(envs, obs)
            self.started = True
        self._write(envs, final_obs, action, reward, np.zeros(self.num_envs, bool), terminated)
        restarted = np.flatnonzero(reset)
        if len(restarted):
            self._write_starts(restarted, next_obs[restarted])

    def restart(self, obs: np.ndarray) -> None:
        """Every env started a new game at `obs` (a resumed run whose env state could not be
        saved): the games in progress end there, unfinished."""
        self._write_starts(np.arange(self.num_envs), obs)
        self.started = True

    # ------------------------------------------------------------------------------ sampling

    def windows(self, length: int) -> np.ndarray:
        """[num_envs] number of complete windows of `length` rows each stream holds."""
        return np.maximum(0, np.minimum(self.count, self.rows) - length + 1)

    def can_sample(self, length: int) -> bool:
        return bool(self.windows(length).sum() > 0)

    def sample(self, batch_size: int, length: int, rng: np.random.Generator) -> dict[str, Any]:
        """Windows [batch_size, length, ...] as numpy arrays: obs, action, reward, first,
        terminal; plus `continued` [batch_size]: the window follows the slot's previous one."""
        available = self.windows(length)
        if available.sum() == 0:
            raise ValueError(f"no stream holds {length} rows yet")
        if len(self.cursor_env) != batch_size:
            self.cursor_env = np.zeros(batch_size, dtype=np.int64)
            self.cursor_row = np.full(batch_size, -1, dtype=np.int64)
        envs, starts = self.cursor_env.copy(), self.cursor_row.copy()
        oldest = np.maximum(0, self.count - self.rows)
        continued = (starts >= 0) & (starts >= oldest[envs]) & (starts + length <= self.count[envs])
        fresh = np.flatnonzero(~continued)
        if len(fresh):
            # uniform over all complete windows of all streams
            picks = rng.integers(0, int(available.sum()), size=len(fresh))
            edges = np.cumsum(available)
            envs[fresh] = np.searchsorted(edges, picks, side="right")
            offset = picks - (edges[envs[fresh]] - available[envs[fresh]])
            starts[fresh] = oldest[envs[fresh]] + offset
        self.cursor_env, self.cursor_row = envs, starts + length
        rows = (starts[:, None] + np.arange(length)[None]) % self.rows  # [B, T]
        streams = envs[:, None]
        first = self.first[streams, rows]
        first[~continued, 0] = True
        return {
            "obs": self.obs[streams, rows],
            "action": self.action[streams, rows],
            "reward": self.reward[streams, rows],
            "first": first,
            "terminal": self.terminal[streams, rows],
            "continued": continued,
        }

    def __len__(self) -> int:
        return int(np.minimum(self.count, self.rows).sum())

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        filled = int(min(self.count.max(initial=0), self.rows))
        return {
            "count": self.count.copy(),
            "started": self.started,
            "cursor_env": self.cursor_env.copy(),
            "cursor_row": self.cursor_row.copy(),
            "obs": self.obs[:, :filled],
            "action": self.action[:, :filled],
            "reward": self.reward[:, :filled],
            "first": self.first[:, :filled],
            "terminal": self.terminal[:, :filled],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("obs", "action", "reward", "first", "terminal"):
            saved = np.asarray(state[name])
            target = getattr(self, name)
            if (
                saved.shape[0] != target.shape[0]
                or saved.shape[2:] != target.shape[2:]
                or (saved.shape[1] > target.shape[1])
            ):
                raise ValueError(
                    f"replay '{name}' has shape {saved.shape}, expected {target.shape}"
                )
            target[:, : saved.shape[1]] = saved
        self.count = np.asarray(state["count"], dtype=np.int64).copy()
        self.started = bool(state["started"])
        self.cursor_env = np.asarray(state["cursor_env"], dtype=np.int64).copy()
        self.cursor_row = np.asarray(state["cursor_row"], dtype=np.int64).copy()
