"""Replay as `num_envs` parallel streams: row t of stream e is env e's t-th step.

Each row stores the newest frame of the observation once (uint8 for pixels), the action, the
learner's reward and the end flags. Frame stacks are rebuilt at sample time from the previous
rows of the same stream, with zeros before the first frame of a game (the env's own stacking
rule), so an 84x84 Atari transition costs ~7 KB instead of two float32 stacks. n-step returns
stop at a terminal (no bootstrap) or a truncation (bootstrap from the stored final observation).

Memory is preallocated and bounded: `capacity` transitions in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from frugal.replay.sum_tree import SumTree


@dataclass
class Batch:
    """Sampled transitions as numpy arrays, leading dim B.

    returns: n-step discounted sum of rewards; discount: the replay's discount to the power m
    (the steps summed) for the bootstrap, 0 where the window hit a terminal; next_obs: the
    observation to bootstrap from. weights: importance weights (ones without prioritisation);
    index: flat ids for `update_priorities`."""

    obs: np.ndarray
    action: np.ndarray
    returns: np.ndarray
    discount: np.ndarray
    next_obs: np.ndarray
    weights: np.ndarray
    index: np.ndarray


class StreamReplay:
    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, ...],
        frame_dtype: np.dtype,
        frame_stack: int,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
        n_step: int = 1,
        discount: float = 0.99,
        prioritized: bool = False,
        alpha: float = 0.6,
        priority_eps: float = 1e-6,
    ):
        self.rows = max(capacity // num_envs, frame_stack + n_step + 1)
        self.num_envs = num_envs
        self.frame_stack = frame_stack
        self.frame_channels = frame_shape[0]
        self.n_step = n_step
        self.discount = discount
        shape = (self.rows, num_envs)
        self.frames = np.zeros((*shape, *frame_shape), dtype=frame_dtype)
        self.first = np.zeros(shape, dtype=bool)
        self.actions = np.zeros((*shape, *action_shape), dtype=np.dtype(action_dtype))
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        # final observations of truncated episodes, keyed by flat id (slot * num_envs + env)
        self.final_obs: dict[int, np.ndarray] = {}
        self.count = 0  # complete rows written; row `count` holds only the pending frame
        self.started = False
        self.prioritized = prioritized
        self.alpha = alpha
        self.priority_eps = priority_eps
        self.max_priority = 1.0
        self.tree = SumTree(self.rows * num_envs) if prioritized else None

    # ------------------------------------------------------------------------------- writing

    def _frame(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, -self.frame_channels :] if self.frame_stack > 1 else obs

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        reset: np.ndarray,
        next_obs: np.ndarray,
        final_obs: np.ndarray,
    ) -> None:
        """Append one vectorised step (arrays with leading dim num_envs)."""
        slot = self.count % self.rows
        if not self.started:
            self.frames[slot] = self._frame(obs)
            self.first[slot] = True
            self.started = True
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminated[slot] = terminated
        self.truncated[slot] = truncated & ~terminated
        for e in np.flatnonzero(self.truncated[slot]):
            self.final_obs[slot * self.num_envs + int(e)] = final_obs[e].copy()
        self.count += 1
        nxt = self.count % self.rows
        for key in [nxt * self.num_envs + e for e in range(self.num_envs)]:
            self.final_obs.pop(key, None)
        self.frames[nxt] = self._frame(next_obs)
        self.first[nxt] = reset
        if self.tree is not None:
            self._update_tree_bounds()

    def restart(self, obs: np.ndarray) -> None:
        """Every env restarted at `obs` before the pending row was stepped (a resumed run whose
        env state could not be saved): cut the games in progress as truncations."""
        if not self.started:
            return
        slot = self.count % self.rows
        if self.count > 0:
            last = (self.count - 1) % self.rows
            pending = self.stack(np.full(self.num_envs, self.count), np.arange(self.num_envs))
            for e in np.flatnonzero(~(self.terminated[last] | self.truncated[last])):
                self.truncated[last, e] = True
                self.final_obs[last * self.num_envs + int(e)] = pending[e]
        self.frames[slot] = self._frame(obs)
        self.first[slot] = True

    def _update_tree_bounds(self) -> None:
        """Keep exactly the sampleable rows at non-zero mass: a row becomes sampleable once its
        n-step window is written and stops once its frame stack reaches overwritten rows."""
        envs = np.arange(self.num_envs)
        opened = self.count - self.n_step
        if opened >= 0:
            mass = np.full(self.num_envs, self.max_priority**self.alpha)
            self.tree.set((opened % self.rows) * self.num_envs + envs, mass)
        closed = self.count - self.rows + self.frame_stack - 1
        if closed >= 0:
            self.tree.set((closed % self.rows) * self.num_envs + envs, np.zeros(self.num_envs))

    # ------------------------------------------------------------------------------ sampling

    def sampleable_rows(self) -> tuple[int, int]:
        """[lo, hi] absolute rows whose stack and n-step window are both in memory."""
        lo = max(0, self.count - self.rows + self.frame_stack)
        return lo, self.count - self.n_step

    def __len__(self) -> int:
        lo, hi = self.sampleable_rows()
        return max(0, hi - lo + 1) * self.num_envs

    def stack(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Observations at absolute `rows` of streams `envs`: [B, *obs_shape]."""
        k = self.frame_stack
        if k == 1:
            return self.frames[rows % self.rows, envs]
        back = rows[:, None] - np.arange(k - 1, -1, -1)[None]  # [B, k], oldest first
        slots = back % self.rows
        frames = self.frames[slots, envs[:, None]]  # [B, k, C, H, W]
        first = self.first[slots, envs[:, None]]
        # a frame is kept unless a later frame of the stack starts a new game
        later_first = np.flip(np.cumsum(np.flip(first[:, 1:], 1), 1), 1) > 0
        keep = np.concatenate([~later_first, np.ones((len(rows), 1), bool)], 1)
        frames = frames * keep.reshape(*keep.shape, *([1] * (frames.ndim - 2)))
        return frames.reshape(len(rows), -1, *frames.shape[3:])

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 0.4) -> Batch:
        lo, hi = self.sampleable_rows()
        if hi < lo:
            raise ValueError("replay has no sampleable transitions yet")
        if self.tree is None:
            rows = rng.integers(lo, hi + 1, size=batch_size)
            envs = rng.integers(0, self.num_envs, size=batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
            index = (rows % self.rows) * self.num_envs + envs
        else:
            total = self.tree.total
            edges = np.arange(batch_size) * (total / batch_size)
            mass = edges + rng.random(batch_size) * (total / batch_size)
            index = self.tree.find(np.minimum(mass, np.nextafter(total, 0)))
            slots, envs = np.divmod(index, self.num_envs)
            rows = self._absolute(slots)
            probs = self.tree.get(index) / total
            weights = (len(self) * probs) ** (-beta)
            weights = (weights / weights.max()).astype(np.float32)
        return self._gather(rows, envs, weights, index)

    def _absolute(self, slots: np.ndarray) -> np.ndarray:
        """Absolute row numbers of slots holding the newest `rows` rows."""
        newest = self.count  # the pending row
        return newest - ((newest - slots) % self.rows)

    def _gather(self, rows, envs, weights, index) -> Batch:
        n = self.n_step
        window = rows[:, None] + np.arange(n)[None]  # [B, n]
        slots = window % self.rows
        rewards = self.rewards[slots, envs[:, None]]
        terminated = self.terminated[slots, envs[:, None]]
        truncated = self.truncated[slots, envs[:, None]]
        ended = terminated | truncated
        # alive[j]: no end among steps < j
        alive = np.concatenate(
            [np.ones((len(rows), 1), bool), ~np.cumsum(ended, 1)[:, :-1].astype(bool)], 1
        )
        discounts = self.discount ** np.arange(n)
        returns = (rewards * alive * discounts).sum(1).astype(np.float32)
        any_end = ended.any(1)
        end_at = np.where(any_end, ended.argmax(1), n - 1)
        steps = end_at + 1
        end_terminal = terminated[np.arange(len(rows)), end_at] & any_end
        discount = np.where(end_terminal, 0.0, self.discount**steps).astype(np.float32)
        next_obs = self.stack(rows + n, envs)
        for b in np.flatnonzero(any_end & ~end_terminal):
            key = int(slots[b, end_at[b]]) * self.num_envs + int(envs[b])
            next_obs[b] = self.final_obs[key]
        return Batch(
            obs=self.stack(rows, envs),
            action=self.actions[rows % self.rows, envs],
            returns=returns,
            discount=discount,
            next_obs=next_obs,
            weights=weights,
            index=index,
        )

    def update_priorities(self, index: np.ndarray, errors: np.ndarray) -> None:
        """Priorities from absolute TD errors: (|error| + eps)^alpha."""
        priority = np.abs(errors) + self.priority_eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        live = self.tree.get(index) > 0  # rows that left the buffer meanwhile stay out
        self.tree.set(index[live], priority[live] ** self.alpha)

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        filled = min(self.count + 1, self.rows)
        state: dict[str, Any] = {
            "count": self.count,
            "started": self.started,
            "max_priority": self.max_priority,
            "frames": self.frames[:filled],
            "first": self.first[:filled],
            "actions": self.actions[:filled],
            "rewards": self.rewards[:filled],
            "terminated": self.terminated[:filled],
            "truncated": self.truncated[:filled],
            "final_keys": np.array(sorted(self.final_obs), dtype=np.int64),
        }
        if self.final_obs:
            state["final_values"] = np.stack([self.final_obs[k] for k in sorted(self.final_obs)])
        if self.tree is not None:
            state["tree"] = self.tree.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.started = bool(state["started"])
        self.max_priority = float(state["max_priority"])
        for name in ("frames", "first", "actions", "rewards", "terminated", "truncated"):
            saved = np.asarray(state[name])
            target = getattr(self, name)
            if saved.shape[1:] != target.shape[1:] or len(saved) > len(target):
                raise ValueError(
                    f"replay '{name}' has shape {saved.shape}, expected {target.shape}"
                )
            target[: len(saved)] = saved
        keys = np.asarray(state["final_keys"]).tolist()
        values = state.get("final_values")
        self.final_obs = {int(k): np.asarray(values[i]) for i, k in enumerate(keys)}
        if self.tree is not None:
            self.tree.load_state_dict(state["tree"])
