"""`make_env(config, num_envs)` -> a vectorised env for any suite: `atari/<Game>`,
`minatar/<game>`, `gym/<Gymnasium id>`, `dmc/<domain>-<task>`."""

from __future__ import annotations

from frugal.config import EnvConfig
from frugal.envs.base import EnvSpec, StepResult, VecEnv
from frugal.envs.protocols import PROTOCOLS, resolve, suite_of
from frugal.errors import FrugalError

__all__ = [
    "EnvSpec", "StepResult", "VecEnv", "describe", "make_env", "resolve", "suite_of", "PROTOCOLS"
]  # fmt: skip


def make_env(
    config: EnvConfig, num_envs: int, *, training: bool = True, render: bool = False
) -> VecEnv:
    """Build `num_envs` envs from a config; `training=False` plays full games (evaluation)."""
    config = resolve(config)
    suite = suite_of(config.id)
    if suite != "dmc" and (config.obs != "proprio" or config.camera is not None):
        raise FrugalError(
            f"env.obs and env.camera choose what DeepMind Control envs show (dmc/...); "
            f"{config.id} has its own observations: leave them out"
        )
    if suite == "atari":
        from frugal.envs.atari import AtariVecEnv

        return AtariVecEnv(config, num_envs, training=training)
    if suite == "minatar":
        from frugal.envs.minatar_suite import MinAtarVecEnv

        return MinAtarVecEnv(config, num_envs)
    if suite == "dmc":
        from frugal.envs.dmc_suite import DMCVecEnv

        return DMCVecEnv(config, num_envs, render=render)
    from frugal.envs.gym_suite import GymVecEnv

    return GymVecEnv(config, num_envs, render=render)


def describe(env_id: str) -> EnvSpec:
    """The spec of `env_id` under its suite's default settings: enough to pick a preset (suite,
    action space) before the run's own envs are configured."""
    env = make_env(EnvConfig(id=env_id), 1, training=False)
    try:
        return env.spec
    finally:
        env.close()
