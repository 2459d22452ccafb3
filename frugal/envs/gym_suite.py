"""Any Gymnasium id (`gym/CartPole-v1`), vectorised in-process or one process per env."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from frugal.config import EnvConfig
from frugal.envs.base import EnvSpec, StepResult, VecEnv, merge_final
from frugal.envs.state import capture_chain, restore_chain
from frugal.errors import FrugalError, unknown


class Snapshot(gym.Wrapper):
    """Outermost wrapper whose `frugal_state` attribute reads or restores the whole chain, so
    vector envs can reach it with get_attr / set_attr, also across processes."""

    @property
    def frugal_state(self) -> list[dict[str, Any]]:
        return capture_chain(self.env)

    @frugal_state.setter
    def frugal_state(self, layers: list[dict[str, Any]]) -> None:
        restore_chain(self.env, layers)


def _check_id(gym_id: str) -> None:
    if gym_id not in gym.registry:
        raise unknown("Gymnasium env id", gym_id, [k for k in gym.registry if "/" not in k])


def spec_from_spaces(obs_space: gym.Space, action_space: gym.Space, gym_id: str) -> EnvSpec:
    if not isinstance(obs_space, gym.spaces.Box):
        raise FrugalError(
            f"{gym_id} has {type(obs_space).__name__} observations; frugal supports Box "
            "observations (vectors or images)"
        )
    pixels = obs_space.dtype == np.uint8 and len(obs_space.shape) == 3
    shape = (obs_space.shape[2], *obs_space.shape[:2]) if pixels else tuple(obs_space.shape)
    common = dict(
        obs_shape=shape,
        obs_dtype=np.dtype(np.uint8 if pixels else np.float32),
        pixels=pixels,
        frame_stack=1,
        frame_shape=shape,
        obs_high=255.0 if pixels else 1.0,
    )
    if isinstance(action_space, gym.spaces.Discrete):
        return EnvSpec(discrete=True, num_actions=int(action_space.n), **common)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return EnvSpec(
            discrete=False,
            num_actions=int(action_space.shape[0]),
            action_low=action_space.low.astype(np.float32),
            action_high=action_space.high.astype(np.float32),
            **common,
        )
    raise FrugalError(
        f"{gym_id} has {action_space} actions; frugal supports Discrete and 1-D Box actions"
    )


class GymVecEnv(VecEnv):
    capturable = True

    def __init__(self, config: EnvConfig, num_envs: int, render: bool = False):
        gym_id = config.id.split("/", 1)[1]
        _check_id(gym_id)
        if config.vectorization not in ("sync", "async"):
            raise unknown("vectorization", config.vectorization, ["sync", "async"])
        render_mode = "rgb_array" if render else None
        if render and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # frames only, no window: keeps SDL (pygame) from probing for a desktop session
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

        def factory() -> gym.Env:
            return Snapshot(gym.make(gym_id, render_mode=render_mode))

        vector_cls = AsyncVectorEnv if config.vectorization == "async" else SyncVectorEnv
        try:
            self._env = vector_cls(
                [factory] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP, copy=False
            )
        except gym.error.DependencyNotInstalled as e:
            raise FrugalError(f"{config.id} needs a package that is not installed: {e}") from None
        self.num_envs = num_envs
        self.spec = spec_from_spaces(
            self._env.single_observation_space, self._env.single_action_space, gym_id
        )
        self._transpose = self.spec.pixels

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        if self._transpose:
            return np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
        return np.asarray(obs, dtype=np.float32)

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self._env.reset(seed=seed)
        return self._obs(obs).copy()

    def step(self, actions: np.ndarray) -> StepResult:
        if self.spec.discrete:
            actions = np.asarray(actions, dtype=np.int64)
        else:
            actions = np.clip(actions, self.spec.action_low, self.spec.action_high)
        obs, reward, terminated, truncated, info = self._env.step(actions)
        obs = self._obs(obs).copy()
        done = terminated | truncated
        final = None
        if done.any():
            final = [None if f is None else self._obs(f[None])[0] for f in info["final_obs"]]
        return StepResult(
            obs=obs,
            reward=np.asarray(reward, dtype=np.float32),
            terminated=terminated.copy(),
            truncated=truncated.copy(),
            reset=done.copy(),
            final_obs=merge_final(obs, done, final),
        )

    def get_state(self) -> Any:
        return list(self._env.get_attr("frugal_state"))

    def set_state(self, state: Any) -> None:
        self._env.set_attr("frugal_state", list(state))

    def render(self) -> np.ndarray:
        return np.stack(self._env.render())

    def close(self) -> None:
        self._env.close()
