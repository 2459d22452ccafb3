"""MinAtar games (`minatar/breakout`, ...): 10x10 binary channels, stepped in a Python loop
(each step is a few microseconds). Actions index the game's minimal action set."""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np

from frugal.config import EnvConfig
from frugal.envs.base import EnvSpec, StepResult, VecEnv
from frugal.envs.state import capture_chain, restore_chain
from frugal.errors import unknown

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
RENDER_SCALE = 16


def channel_palette(channels: int) -> np.ndarray:
    """One colour per observation channel, evenly spaced hues: uint8 [channels, 3]."""
    hues = [colorsys.hsv_to_rgb(i / channels, 0.8, 1.0) for i in range(channels)]
    return (np.array(hues) * 255).astype(np.uint8)


class MinAtarVecEnv(VecEnv):
    capturable = True

    def __init__(self, config: EnvConfig, num_envs: int):
        from minatar import Environment

        game = config.id.split("/", 1)[1].lower()
        if game not in GAMES:
            raise unknown("MinAtar game", game, GAMES)
        self._envs = [
            Environment(game, sticky_action_prob=config.sticky_actions, difficulty_ramping=True)
            for _ in range(num_envs)
        ]
        self._actions = np.asarray(self._envs[0].minimal_action_set(), dtype=np.int64)
        self._max_steps = config.max_episode_frames
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self.num_envs = num_envs
        channels = self._envs[0].state_shape()[2]
        shape = (channels, 10, 10)
        self.spec = EnvSpec(
            shape, np.dtype(np.uint8), True, 1, shape, True, len(self._actions),
            suite="minatar", palette=channel_palette(channels),
        )  # fmt: skip

    def _observe(self, i: int) -> np.ndarray:
        return self._envs[i].state().transpose(2, 0, 1).astype(np.uint8)

    def reset(self, seed: int) -> np.ndarray:
        for i, env in enumerate(self._envs):
            env.seed(seed + i)
            env.reset()
        self._steps[:] = 0
        return np.stack([self._observe(i) for i in range(self.num_envs)])

    def step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        final = np.empty((n, *self.spec.obs_shape), dtype=np.uint8)
        obs = np.empty_like(final)
        self._steps += 1
        for i, env in enumerate(self._envs):
            reward[i], terminated[i] = env.act(int(self._actions[actions[i]]))
            final[i] = self._observe(i)
        truncated = ~terminated & (self._steps >= self._max_steps)
        done = terminated | truncated
        for i in range(n):
            if done[i]:
                self._envs[i].reset()
                self._steps[i] = 0
            obs[i] = self._observe(i) if done[i] else final[i]
        return StepResult(obs, reward, terminated, truncated, done, final)

    def get_state(self) -> Any:
        return {"steps": self._steps.tolist(), "envs": [capture_chain(e) for e in self._envs]}

    def set_state(self, state: Any) -> None:
        self._steps[:] = state["steps"]
        for env, layers in zip(self._envs, state["envs"], strict=True):
            restore_chain(env, layers)

    def render(self) -> np.ndarray:
        frames = []
        for i in range(self.num_envs):
            state = self._observe(i).astype(bool)  # [C, 10, 10]
            image = np.zeros((10, 10, 3), dtype=np.uint8)
            for c in range(state.shape[0]):  # later channels drawn on top
                image[state[c]] = self.spec.palette[c]
            frames.append(image.repeat(RENDER_SCALE, 0).repeat(RENDER_SCALE, 1))
        return np.stack(frames)
