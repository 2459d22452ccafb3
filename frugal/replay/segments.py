"""Game-segment replay for MuZero-family agents (EfficientZero).

EfficientZero keeps "game segments": runs of consecutive moves with their observations, actions,
rewards and the search statistics of the acting search, and samples *positions* inside them
with priorities. Here the segments are `num_envs` parallel streams (`StreamReplay` stores the
frames once, the actions, rewards and end flags); this module adds one row of search statistics
per move (policy target, root value and, for continuous control, the root's candidate actions)
and a sum tree over positions. A position is sampleable once the `window` moves that follow it
(unroll + TD horizon) are written, so every sample has its whole target window in memory; moves
beyond the end of a game read the next game's rows and are masked by the target functions
(`frugal.agents.efficientzero.targets`).

Reanalysis inputs come out as index arrays: `observations(rows, envs)` stacks observations at
any absolute rows, `final_observations` gives the true successors of truncated moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from frugal.replay.streams import StreamReplay
from frugal.replay.sum_tree import SumTree

# ------------------------------------------------------------------------------------- replay


@dataclass
class Sample:
    """Sampled positions: absolute rows and env streams [B], flat ids for priority updates,
    importance weights (ones without prioritisation)."""

    rows: np.ndarray
    envs: np.ndarray
    index: np.ndarray
    weights: np.ndarray


class SegmentReplay:
    """Positions of `num_envs` parallel game streams with search statistics and priorities.

    policy_size: length of the stored policy target (actions, or candidate slots).
    window: moves that must follow a position before it is sampled (unroll K + TD horizon n).
    sampled_shape: shape of the stored candidate actions per move ([K, D] for sampled search).
    New positions enter at the highest priority seen so far; priorities are (|error| + eps)^alpha.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, ...],
        frame_dtype: np.dtype,
        frame_stack: int,
        *,
        policy_size: int,
        window: int,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
        sampled_shape: tuple[int, ...] | None = None,
        alpha: float = 0.6,
        priority_eps: float = 1e-6,
    ):
        self.streams = StreamReplay(
            capacity,
            num_envs,
            frame_shape,
            frame_dtype,
            frame_stack,
            action_shape=action_shape,
            action_dtype=np.dtype(action_dtype),
            n_step=window,
        )
        rows = self.streams.rows
        self.rows, self.num_envs, self.window = rows, num_envs, window
        self.frame_stack = frame_stack
        self.policy = np.zeros((rows, num_envs, policy_size), dtype=np.float32)
        self.root_value = np.zeros((rows, num_envs), dtype=np.float32)
        self.sampled = (
            np.zeros((rows, num_envs, *sampled_shape), dtype=np.float32) if sampled_shape else None
        )
        self.alpha = alpha
        self.priority_eps = priority_eps
        self.max_priority = 1.0
        self.tree = SumTree(rows * num_envs)

    @property
    def count(self) -> int:
        """Moves written per stream (absolute row of the pending observation)."""
        return self.streams.count

    # ------------------------------------------------------------------------------ writing

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
        policy: np.ndarray,
        root_value: np.ndarray,
        sampled: np.ndarray | None = None,
    ) -> None:
        """Append one vectorised move (leading dim num_envs) with its search statistics:
        policy [E, policy_size], root_value [E], sampled [E, *sampled_shape] or None."""
        slot = self.count % self.rows
        self.policy[slot] = policy
        self.root_value[slot] = root_value
        if self.sampled is not None:
            self.sampled[slot] = sampled
        self.streams.add(obs, action, reward, terminated, truncated, reset, next_obs, final_obs)
        envs = np.arange(self.num_envs)
        opened = self.count - self.window
        if opened >= 0:
            mass = np.full(self.num_envs, self.max_priority**self.alpha)
            self.tree.set((opened % self.rows) * self.num_envs + envs, mass)
        closed = self.count - self.rows + self.frame_stack - 1
        if closed >= 0:
            self.tree.set((closed % self.rows) * self.num_envs + envs, np.zeros(self.num_envs))

    def restart(self, obs: np.ndarray) -> None:
        """Games in progress cut as truncations; every env restarts at `obs`."""
        self.streams.restart(obs)

    # ----------------------------------------------------------------------------- sampling

    def sampleable_rows(self) -> tuple[int, int]:
        lo = max(0, self.count - self.rows + self.frame_stack)
        return lo, self.count - self.window

    def __len__(self) -> int:
        lo, hi = self.sampleable_rows()
        return max(0, hi - lo + 1) * self.num_envs

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float) -> Sample:
        """Stratified prioritised sampling of positions; weights (N P)^-beta / max."""
        if len(self) == 0:
            raise ValueError("replay has no sampleable positions yet")
        total = self.tree.total
        edges = np.arange(batch_size) * (total / batch_size)
        mass = edges + rng.random(batch_size) * (total / batch_size)
        index = self.tree.find(np.minimum(mass, np.nextafter(total, 0)))
        slots, envs = np.divmod(index, self.num_envs)
        rows = self.count - ((self.count - slots) % self.rows)
        probs = self.tree.get(index) / total
        weights = (len(self) * probs) ** (-beta)
        weights = (weights / weights.max()).astype(np.float32)
        return Sample(rows, envs, index, weights)

    def age(self, rows: np.ndarray) -> np.ndarray:
        """Transitions collected since each row (all envs count): int [B]."""
        return (self.count - np.asarray(rows)) * self.num_envs

    def window_of(self, rows: np.ndarray, envs: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """Moves rows .. rows+length-1 of each stream: actions [B, L, ...], rewards, terminated,
        truncated [B, L]."""
        slots = (rows[:, None] + np.arange(length)[None]) % self.rows
        e = envs[:, None]
        s = self.streams
        return {
            "actions": s.actions[slots, e],
            "rewards": s.rewards[slots, e],
            "terminated": s.terminated[slots, e],
            "truncated": s.truncated[slots, e],
        }

    def observations(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Stacked observations at absolute rows (any shape S) -> [*S, *obs_shape]."""
        shape = np.shape(rows)
        flat = self.streams.stack(np.ravel(rows), np.ravel(np.broadcast_to(envs, shape)))
        return flat.reshape(*shape, *flat.shape[1:])

    def final_observations(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """True successors of truncated moves at absolute rows [N] -> [N, *obs_shape]."""
        keys = (np.asarray(rows) % self.rows) * self.num_envs + np.asarray(envs)
        return np.stack([self.streams.final_obs[int(k)] for k in keys])

    def search_stats(self, rows: np.ndarray, envs: np.ndarray) -> dict[str, np.ndarray]:
        """Stored acting-search statistics at absolute rows (any shape S): policy [*S, P],
        root_value [*S], sampled [*S, ...] when kept."""
        slots = np.asarray(rows) % self.rows
        out = {"policy": self.policy[slots, envs], "root_value": self.root_value[slots, envs]}
        if self.sampled is not None:
            out["sampled"] = self.sampled[slots, envs]
        return out

    def update_priorities(self, index: np.ndarray, errors: np.ndarray) -> None:
        """Priorities (|error| + eps)^alpha at flat ids; ids that left the buffer stay out."""
        priority = np.abs(errors) + self.priority_eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        live = self.tree.get(index) > 0
        if live.any():  # SumTree.set fails on an empty index
            self.tree.set(index[live], priority[live] ** self.alpha)

    # -------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        filled = min(self.count + 1, self.rows)
        state: dict[str, Any] = {
            "streams": self.streams.state_dict(),
            "policy": self.policy[:filled],
            "root_value": self.root_value[:filled],
            "tree": self.tree.state_dict(),
            "max_priority": self.max_priority,
        }
        if self.sampled is not None:
            state["sampled"] = self.sampled[:filled]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streams.load_state_dict(state["streams"])
        names = ["policy", "root_value"] + (["sampled"] if self.sampled is not None else [])
        for name in names:
            saved = np.asarray(state[name])
            target = getattr(self, name)
            if saved.shape[1:] != target.shape[1:] or len(saved) > len(target):
                raise ValueError(
                    f"replay '{name}' has shape {saved.shape}, expected {target.shape}"
                )
            target[: len(saved)] = saved
        self.tree.load_state_dict(state["tree"])
        self.max_priority = float(state["max_priority"])
