"""Atari through ale-py's C++-vectorised `AtariVectorEnv` (`atari/Breakout`).

Every setting is passed explicitly from the resolved protocol. Rewards are left raw (agents clip
in the learner) and life loss is detected here from the `lives` counter, so the env itself only
ever ends real games: scores are full-game scores, and `terminated` marks a life loss only for
training envs whose protocol uses episodic life. Frames arrive stacked by the emulator (zeros
before the first frame of a game), which is the rule the replay uses to rebuild stacks.

The emulators' state cannot be captured, so a resumed Atari run restarts in-progress games.
"""

from __future__ import annotations

import os
import re

import numpy as np

from frugal.config import EnvConfig
from frugal.envs.base import EnvSpec, StepResult, VecEnv, merge_final
from frugal.errors import unknown

VIDEO_SCALE = 4


def rom_name(game: str) -> str:
    """'MsPacman' -> 'ms_pacman' (ale-py's ROM ids are snake_case)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", game).lower()


class AtariVecEnv(VecEnv):
    capturable = False

    def __init__(self, config: EnvConfig, num_envs: int, training: bool):
        from ale_py import roms
        from ale_py.vector_env import AtariVectorEnv

        game = rom_name(config.id.split("/", 1)[1])
        if game not in roms.get_all_rom_ids():
            raise unknown("Atari game", config.id.split("/", 1)[1], roms.get_all_rom_ids())
        self._env = AtariVectorEnv(
            game,
            num_envs,
            num_threads=min(num_envs, os.cpu_count() or 1),
            max_num_frames_per_episode=config.max_episode_frames,
            repeat_action_probability=config.sticky_actions,
            full_action_space=False,
            autoreset_mode="SameStep",
            img_height=config.obs_size,
            img_width=config.obs_size,
            grayscale=config.grayscale,
            stack_num=config.frame_stack,
            frameskip=config.frame_skip,
            maxpool=True,
            noop_max=config.noop_max,
            episodic_life=False,
            life_loss_info=False,
            reward_clipping=False,
            use_fire_reset=config.fire_reset,
        )
        self.num_envs = num_envs
        self._life_loss_ends_episode = training and config.episodic_life
        self._lives = np.zeros(num_envs, dtype=np.int64)
        channels = 1 if config.grayscale else 3
        frame = (channels, config.obs_size, config.obs_size)
        self.spec = EnvSpec(
            obs_shape=(config.frame_stack * channels, config.obs_size, config.obs_size),
            obs_dtype=np.dtype(np.uint8),
            pixels=True,
            frame_stack=config.frame_stack,
            frame_shape=frame,
            discrete=True,
            num_actions=int(self._env.single_action_space.n),
            obs_high=255.0,
            suite="atari",
        )
        self._last_obs: np.ndarray | None = None

    def _obs(self, raw: np.ndarray) -> np.ndarray:
        if raw.ndim == 5:  # RGB [N, stack, H, W, 3] -> [N, stack*3, H, W]
            n, k, h, w, c = raw.shape
            return np.ascontiguousarray(raw.transpose(0, 1, 4, 2, 3)).reshape(n, k * c, h, w)
        return raw

    def reset(self, seed: int) -> np.ndarray:
        raw, info = self._env.reset(seed=seed)
        self._lives[:] = info["lives"]
        self._last_obs = self._obs(raw)
        return self._last_obs

    def step(self, actions: np.ndarray) -> StepResult:
        raw, reward, terminated, truncated, info = self._env.step(
            np.asarray(actions, dtype=np.int32)
        )
        obs = self._obs(raw)
        done = terminated | truncated
        final = self._obs(info["final_obs"]) if done.any() else None
        # `lives` already belongs to the new game where an env reset
        life_lost = ~done & (info["lives"] < self._lives)
        self._lives[:] = info["lives"]
        learner_terminal = terminated | (life_lost & self._life_loss_ends_episode)
        self._last_obs = obs
        return StepResult(
            obs=obs,
            reward=np.asarray(reward, dtype=np.float32),
            terminated=learner_terminal,
            truncated=truncated & ~terminated,
            reset=done,
            final_obs=merge_final(obs, done, final),
        )

    def render(self) -> np.ndarray:
        """The agent's own view (latest frame of each stack), enlarged for viewing."""
        assert self._last_obs is not None, "render() before reset()"
        channels = self.spec.frame_shape[0]
        frames = self._last_obs[:, -channels:]  # [N, C, H, W]
        frames = np.repeat(frames, 3 // channels, axis=1).transpose(0, 2, 3, 1)
        return frames.repeat(VIDEO_SCALE, 1).repeat(VIDEO_SCALE, 2)

    def close(self) -> None:
        self._env.close()
