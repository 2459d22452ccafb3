"""`make_env(config, num_envs)` -> a vectorised env for any suite: `atari/<Game>`,
`minatar/<game>`, `gym/<Gymnasium id>`."""

from __future__ import annotations

from frugal.config import EnvConfig
from frugal.envs.base import EnvSpec, StepResult, VecEnv
from frugal.envs.protocols import PROTOCOLS, resolve, suite_of

__all__ = ["EnvSpec", "StepResult", "VecEnv", "make_env", "resolve", "suite_of", "PROTOCOLS"]


def make_env(
    config: EnvConfig, num_envs: int, *, training: bool = True, render: bool = False
) -> VecEnv:
    """Build `num_envs` envs from a config; `training=False` plays full games (evaluation)."""
    config = resolve(config)
    suite = suite_of(config.id)
    if suite == "atari":
        from frugal.envs.atari import AtariVecEnv

        return AtariVecEnv(config, num_envs, training=training)
    if suite == "minatar":
        from frugal.envs.minatar_suite import MinAtarVecEnv

        return MinAtarVecEnv(config, num_envs)
    from frugal.envs.gym_suite import GymVecEnv

    return GymVecEnv(config, num_envs, render=render)
