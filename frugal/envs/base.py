"""The vector-env interface every suite implements, and the result of one step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about the env to build its networks and replay.

    obs_shape: per-env observation shape. Pixel observations are uint8 [stack*C, H, W]; the
    replay stores each frame ([C, H, W]) once, so `frame_stack` and `frame_shape` say how.
    """

    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    pixels: bool
    frame_stack: int
    frame_shape: tuple[int, ...]
    discrete: bool
    num_actions: int  # discrete: number of actions; continuous: action dimension
    action_low: np.ndarray | None = None  # continuous bounds [action_dim]
    action_high: np.ndarray | None = None
    obs_high: float = 1.0  # networks divide pixel observations by this (255 for Atari)
    suite: str = "gym"  # atari | minatar | gym | dmc: presets are picked by suite and action space
    # binary-grid observations (MinAtar): uint8 [channels, 3], the colour each channel is drawn in
    palette: np.ndarray | None = None
    # env steps the runner counts per agent step: the action repeat where the suite's papers
    # count frames (dmc); 1 where they count agent steps (Atari 100k, MinAtar, Gymnasium)
    frames_per_step: int = 1


@dataclass
class StepResult:
    """One vectorised step. `obs` already holds reset observations where `reset` is set; the
    observation that really followed the action is in `final_obs`. `reward` is raw.
    `terminated` is the learner's terminal (a life loss counts under episodic life);
    `reset` marks a real end of game (terminal or truncated), after which the env restarted."""

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    reset: np.ndarray
    final_obs: np.ndarray


class VecEnv:
    """A batch of `num_envs` environments stepped in lockstep with same-step autoreset."""

    spec: EnvSpec
    num_envs: int
    #: True when `get_state` captures everything needed to continue exactly after a restart.
    capturable: bool = False

    def reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> StepResult:
        raise NotImplementedError

    def get_state(self) -> Any:
        """JSON-serialisable state, or None when the suite cannot capture it."""
        return None

    def set_state(self, state: Any) -> None:
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """RGB frames [num_envs, H, W, 3] uint8 of the current states, for videos."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def merge_final(obs: np.ndarray, done: np.ndarray, final: Any) -> np.ndarray:
    """final_obs: a copy of obs with the rows of finished envs replaced by their last obs."""
    if not done.any():
        return obs
    out = obs.copy()
    for i in np.flatnonzero(done):
        out[i] = final[i]
    return out
