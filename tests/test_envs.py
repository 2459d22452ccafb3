"""Environment suites: explicit protocols, raw rewards, life loss for training only, exact
state capture."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from frugal.agents import agent_module
from frugal.api import build_config
from frugal.config import EnvConfig
from frugal.envs import describe, make_env, resolve
from frugal.errors import FrugalError


def test_atari_protocols_set_every_setting_explicitly():
    a100k = resolve(EnvConfig(id="atari/Breakout"))
    assert a100k.protocol == "atari100k"
    assert (a100k.sticky_actions, a100k.frame_skip, a100k.noop_max) == (0.0, 4, 30)
    assert (a100k.episodic_life, a100k.max_episode_frames) == (True, 108_000)
    machado = resolve(EnvConfig(id="atari/Breakout", protocol="machado"))
    assert (machado.sticky_actions, machado.episodic_life) == (0.25, False)
    explicit = resolve(EnvConfig(id="atari/Breakout", protocol="machado", sticky_actions=0.0))
    assert explicit.sticky_actions == 0.0, "an explicit setting overrides the protocol"
    with pytest.raises(FrugalError, match="did you mean machado"):
        resolve(EnvConfig(id="atari/Breakout", protocol="machdo"))


def _play(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(steps):
        if env.spec.discrete:
            actions = rng.integers(0, env.spec.num_actions, env.num_envs)
        else:
            actions = rng.uniform(-2, 2, (env.num_envs, env.spec.num_actions)).astype(np.float32)
        results.append(env.step(actions))
    return results


@pytest.mark.parametrize(
    "env_id", ["gym/CartPole-v1", "gym/Pendulum-v1", "minatar/breakout", "minatar/seaquest"]
)
def test_captured_state_continues_exactly(env_id):
    env = make_env(EnvConfig(id=env_id), 2)
    env.reset(seed=5)
    _play(env, 37)
    saved = json.loads(json.dumps(env.get_state()))  # must survive JSON
    original = _play(env, 300, seed=1)
    fresh = make_env(EnvConfig(id=env_id), 2)
    fresh.reset(seed=123)
    fresh.set_state(saved)
    replayed = _play(fresh, 300, seed=1)
    for a, b in zip(original, replayed, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.reset, b.reset)


def test_gym_truncation_keeps_the_final_observation():
    env = make_env(EnvConfig(id="gym/Pendulum-v1"), 1)  # 200-step time limit, never terminates
    env.reset(seed=0)
    results = _play(env, 200)
    last = results[-1]
    assert last.truncated[0] and not last.terminated[0] and last.reset[0]
    assert not np.array_equal(last.final_obs, last.obs), "final_obs is the pre-reset observation"


def test_atari_raw_rewards_and_life_loss_only_ends_training_episodes():
    config = EnvConfig(id="atari/Breakout", num_envs=2)
    train_env = make_env(config, 2, training=True)
    eval_env = make_env(config, 2, training=False)
    assert train_env.spec.obs_shape == (4, 84, 84) and train_env.spec.obs_high == 255.0
    for env in (train_env, eval_env):
        env.reset(seed=0)
    train = _play(train_env, 400)
    evals = _play(eval_env, 400)
    life_losses = sum(int((r.terminated & ~r.reset).sum()) for r in train)
    assert life_losses > 0, "training envs end the learner's episode at a life loss"
    assert all(not (r.terminated & ~r.reset).any() for r in evals), "evaluation plays full games"
    # identical seeds and actions: the same game, raw (unclipped) rewards in both
    np.testing.assert_array_equal(
        np.stack([r.reward for r in train]), np.stack([r.reward for r in evals])
    )


def test_atari_rgb_observations_are_channels_first():
    config = dataclasses.replace(EnvConfig(id="atari/Pong"), obs_size=96, grayscale=False)
    env = make_env(config, 1)
    obs = env.reset(seed=0)
    assert obs.shape == (1, 12, 96, 96) and env.spec.frame_shape == (3, 96, 96)
    assert env.render().shape[-1] == 3


@pytest.mark.parametrize(
    "env_id, box",
    [
        ("gym/Pendulum-v1", True),
        ("gym/MountainCarContinuous-v0", True),
        ("gym/CartPole-v1", False),
        ("minatar/breakout", False),
    ],
)
def test_box_actions_pick_the_continuous_presets(env_id, box):
    spec = describe(env_id)
    assert spec.discrete is not box
    expected = "pendulum" if box else ("minatar" if env_id.startswith("minatar") else "cartpole")
    for algo in ("ppo", "dreamerv3", "efficientzero"):
        assert agent_module(algo).default_preset(spec) == expected


def test_an_unknown_env_id_is_one_clear_error_before_any_preset_is_picked():
    with pytest.raises(FrugalError, match="unknown Gymnasium env id 'NoSuchEnv-v0'"):
        build_config("ppo", "gym/NoSuchEnv-v0")
