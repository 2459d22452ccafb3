"""DQN pieces with known values: dueling aggregation, epsilon and PER beta schedules,
replay-ratio schedule, precision variants, config checks and presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frugal.agents import dqn
from frugal.agents.base import Transition, ratio_updates_due
from frugal.config import mutable_keys
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError

VECTOR = EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 3)
PIXELS = EnvSpec((4, 10, 10), np.dtype(np.uint8), True, 1, (4, 10, 10), True, 3)


def _agent(spec=VECTOR, **kw):
    cfg = dqn.Config(
        buffer_size=500, learning_starts=10, batch_size=8, hidden=(16,), head_hidden=8, **kw
    )
    return dqn.Agent(cfg, spec, 1, torch.device("cpu"), seed=0)


def test_dueling_head_is_value_plus_centred_advantage():
    agent = _agent()
    obs = torch.randn(5, 4)
    h = agent.q.torso(obs)
    v, a = agent.q.value(h), agent.q.advantage(h)
    torch.testing.assert_close(agent.q(obs), v + a - a.mean(1, keepdim=True))


def test_epsilon_decays_linearly_over_env_steps():
    agent = _agent(eps_start=1.0, eps_end=0.1, eps_decay_steps=100)
    assert agent.epsilon() == 1.0
    agent.env_steps = 50
    assert agent.epsilon() == pytest.approx(0.55)
    agent.env_steps = 1000
    assert agent.epsilon() == pytest.approx(0.1)


def test_per_beta_anneals_over_its_own_steps():
    agent = _agent(eps_decay_steps=100, per_beta_start=0.4, per_beta_steps=1000)
    assert agent.per_beta() == pytest.approx(0.4)
    agent.env_steps = 500
    assert agent.per_beta() == pytest.approx(0.7)
    agent.env_steps = 5000
    assert agent.per_beta() == 1.0


def test_presets_keep_the_beta_schedule_of_ten_epsilon_decays():
    for name, preset in dqn.PRESETS.items():
        cfg = dqn.Config(**preset.agent)
        assert cfg.per_beta_steps == 10 * cfg.eps_decay_steps, name
    cfg = dqn.Config()
    assert cfg.per_beta_steps == 10 * cfg.eps_decay_steps


def test_replay_ratio_is_exact_in_env_steps():
    assert [ratio_updates_due(s, 0.25, 100) for s in (99, 100, 103, 104, 500)] == [0, 0, 0, 1, 100]
    assert ratio_updates_due(3000, 1 / 3, 0) == 1000
    assert ratio_updates_due(10, 2.0, 0) == 20


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"channels_last": True},
        {"precision": "bf16"},
        {"precision": "bf16", "channels_last": True},
        {"prioritized": True},
        {"double": False, "dueling": False},
    ],
)
def test_update_variants_run_and_learn_something(variant):
    agent = _agent(PIXELS, torso="minatar", **variant)
    rng = np.random.default_rng(0)
    zeros = np.zeros(1)
    obs = rng.integers(0, 2, (1, 4, 10, 10), dtype=np.uint8)
    for _ in range(64):
        nxt = rng.integers(0, 2, (1, 4, 10, 10), dtype=np.uint8)
        agent.observe(
            Transition(
                obs,
                rng.integers(0, 3, 1),
                np.ones(1, np.float32),
                zeros.astype(bool),
                zeros.astype(bool),
                zeros.astype(bool),
                nxt,
                nxt,
            )
        )
        obs = nxt
    losses = [agent.update()["train/loss"] for _ in range(30)]
    assert all(np.isfinite(losses))
    assert agent.updates == 30


def test_channels_last_matches_fp32_within_float_tolerance():
    a, b = _agent(PIXELS, torso="minatar"), _agent(PIXELS, torso="minatar", channels_last=True)
    b.q.load_state_dict(a.q.state_dict())
    obs = torch.randint(0, 2, (6, 4, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(
        a.q(obs), b.q(obs.contiguous(memory_format=torch.channels_last)), rtol=1e-5, atol=1e-5
    )


def test_resume_changeable_keys_and_presets():
    keys = mutable_keys(dqn.Config)
    assert {"lr", "eps_end", "eps_decay_steps", "per_beta_steps", "replay_ratio"} <= keys
    assert not {"discount", "n_step", "buffer_size", "hidden", "dueling"} & keys
    minatar = EnvSpec(
        (4, 10, 10), np.dtype(np.uint8), True, 1, (4, 10, 10), True, 3, suite="minatar"
    )
    assert dqn.default_preset(minatar) == "minatar"
    assert dqn.default_preset(VECTOR) == "cartpole"
    for name, preset in dqn.PRESETS.items():
        assert preset.doc, name


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"torso": "resnet"}, "torso"),
        ({"precision": "fp16"}, "agent.precision"),
        ({"target_update_interval": 0}, "agent.target_update_interval"),
        ({"n_step": 0}, "agent.n_step"),
        ({"discount": 1.5}, "agent.discount"),
        ({"tau": 0.0}, "agent.tau"),
        ({"replay_ratio": 0.0}, "agent.replay_ratio"),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(FrugalError, match=key):
        _agent(**settings)


def test_continuous_actions_are_refused():
    box = EnvSpec((3,), np.dtype(np.float32), False, 1, (3,), False, 1)
    with pytest.raises(FrugalError, match="discrete action space"):
        _agent(box)


def test_network_keys_stay_those_of_saved_checkpoints():
    keys = list(_agent().q.state_dict())
    stream = [
        f"{s}.{i}.{p}" for s in ("advantage", "value") for i in (0, 2) for p in ("weight", "bias")
    ]
    assert keys == ["torso.1.0.weight", "torso.1.0.bias", *stream]
