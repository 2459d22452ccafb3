"""PPO: exact values of GAE (truncation vs termination), Gaussian log-probabilities, the running
normaliser and the clipped losses; the agent's rollout bookkeeping, sampling RNG discipline and
state round trip; and a short CartPole learning test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import frugal
from frugal import checkpoint
from frugal.agents import ppo
from frugal.agents.base import Transition
from frugal.agents.ppo import losses
from frugal.config import mutable_keys
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets.distributions import normal_entropy, normal_log_prob
from frugal.nets.normalize import RunningMeanStd


def _vector_spec(dim: int = 1, discrete: bool = True, actions: int = 2) -> EnvSpec:
    return EnvSpec(
        obs_shape=(dim,),
        obs_dtype=np.dtype(np.float32),
        pixels=False,
        frame_stack=1,
        frame_shape=(dim,),
        discrete=discrete,
        num_actions=actions,
        action_low=None if discrete else -np.ones(actions, np.float32),
        action_high=None if discrete else np.ones(actions, np.float32),
    )


class _ObsValue(nn.Module):
    """A critic whose value is the first observation feature: V(s) = s[0]."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, :1]


def _agent(num_steps=4, num_envs=1, **overrides) -> ppo.Agent:
    overrides = {"num_minibatches": 1, "update_epochs": 1, **overrides}
    cfg = ppo.Config(num_steps=num_steps, **overrides)
    return ppo.Agent(cfg, _vector_spec(), num_envs, torch.device("cpu"), seed=0)


def _step(obs, reward, terminated=False, truncated=False, next_obs=None, final_obs=None):
    """A one-env transition; next_obs is the reset observation where the episode ended."""
    as_arr = lambda x: np.array([[x]], dtype=np.float32)  # noqa: E731
    final = final_obs if final_obs is not None else next_obs
    return Transition(
        obs=as_arr(obs),
        action=np.array([0]),
        reward=np.array([reward], dtype=np.float32),
        terminated=np.array([terminated]),
        truncated=np.array([truncated]),
        reset=np.array([terminated or truncated]),
        next_obs=as_arr(next_obs),
        final_obs=as_arr(final),
    )


# ----------------------------------------------------------------------------------------- GAE

# A hand-computed rollout, discount 0.9, lambda 0.5, V(s) = s:
#   t  obs  r   end                       successor value       delta
#   0  0.5  1   -                         V(obs1)   = 1.0       1 + 0.9*1.0  - 0.5 = 1.4
#   1  1.0  2   truncated (final obs 10)  V(final)  = 10        2 + 0.9*10   - 1.0 = 10.0
#   2  1.5  3   terminated                (none)                3            - 1.5 = 1.5
#   3  2.0  4   -  (last, next obs 3)     V(next)   = 3.0       4 + 0.9*3.0  - 2.0 = 4.7
# advantages: A3 = 4.7, A2 = 1.5, A1 = 10.0 (the truncation cuts the trace),
#             A0 = 1.4 + 0.9*0.5*10.0 = 5.9; returns = A + V.
DISCOUNT, LAM = 0.9, 0.5
EXPECTED_ADV = [5.9, 10.0, 1.5, 4.7]
EXPECTED_RET = [6.4, 11.0, 3.0, 6.7]


def test_gae_hand_computed_with_truncation_and_termination():
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    values = torch.tensor([[0.5], [1.0], [1.5], [2.0]])
    next_values = torch.tensor([[1.0], [10.0], [7.0], [3.0]])  # 7.0: ignored (terminated)
    terminated = torch.tensor([[False], [False], [True], [False]])
    cut = torch.tensor([[False], [True], [True], [False]])
    adv, ret = losses.gae(rewards, values, next_values, terminated, cut, DISCOUNT, LAM)
    torch.testing.assert_close(adv[:, 0], torch.tensor(EXPECTED_ADV))
    torch.testing.assert_close(ret[:, 0], torch.tensor(EXPECTED_RET))


def test_rollout_bootstraps_truncation_from_final_obs_and_not_termination():
    agent = _agent(discount=DISCOUNT, gae_lambda=LAM)
    agent.net.critic = _ObsValue()
    # the reset observations (7.0, 1.5's successor after termination is a reset obs 2.0) must
    # never be used as successors of the steps that ended episodes
    agent.observe(_step(0.5, 1.0, next_obs=1.0))
    agent.observe(_step(1.0, 2.0, truncated=True, next_obs=1.5, final_obs=10.0))
    agent.observe(_step(1.5, 3.0, terminated=True, next_obs=2.0, final_obs=7.0))
    agent.observe(_step(2.0, 4.0, next_obs=3.0))
    adv, ret = agent.advantages()
    torch.testing.assert_close(adv[:, 0], torch.tensor(EXPECTED_ADV))
    torch.testing.assert_close(ret[:, 0], torch.tensor(EXPECTED_RET))


def test_restart_cuts_the_partial_rollout_as_a_truncation():
    agent = _agent(discount=DISCOUNT, gae_lambda=LAM)
    agent.net.critic = _ObsValue()
    agent.observe(_step(0.5, 1.0, next_obs=1.0))
    agent.observe(_step(1.0, 2.0, next_obs=10.0))  # the game in progress is lost after this
    agent.restart(np.array([[1.5]], dtype=np.float32))
    agent.observe(_step(1.5, 3.0, terminated=True, next_obs=2.0, final_obs=7.0))
    agent.observe(_step(2.0, 4.0, next_obs=3.0))
    adv, _ = agent.advantages()  # the same numbers as a truncation with final obs 10
    torch.testing.assert_close(adv[:, 0], torch.tensor(EXPECTED_ADV))
    assert agent.buffer["cut"][1, 0] and not agent.buffer["terminated"][1, 0]


def test_updates_due_one_per_full_rollout():
    agent = _agent(num_steps=32, num_envs=2)
    assert [agent.updates_due(s) for s in (0, 62, 64, 127, 128)] == [0, 0, 1, 1, 2]


# ------------------------------------------------------------------------------ distributions


def test_gaussian_log_prob_of_unclipped_sample():
    mean = torch.tensor([[0.5, -1.0]])
    log_std = torch.tensor([math.log(2.0), 0.0])
    action = torch.tensor([[2.5, 3.0]])  # outside [-1, 1]: the env clips, the learner does not
    # dim 0: z = 1 -> -0.5 - ln 2 - ln(2 pi)/2; dim 1: z = 4 -> -8 - ln(2 pi)/2
    expected = -8.5 - math.log(2.0) - math.log(2 * math.pi)
    got = normal_log_prob(action, mean, log_std.exp())
    assert got.item() == pytest.approx(expected, abs=1e-6)
    entropy = normal_entropy(log_std.exp()).item()
    assert entropy == pytest.approx(1.0 + math.log(2 * math.pi) + math.log(2.0), abs=1e-6)


def test_act_stores_log_prob_of_the_unclipped_action():
    spec = _vector_spec(dim=3, discrete=False, actions=2)
    cfg = ppo.Config(num_steps=2, num_minibatches=1, init_log_std=1.5)  # wide: samples leave bounds
    agent = ppo.Agent(cfg, spec, 4, torch.device("cpu"), seed=0)
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    action, _ = agent.act(obs, None, np.ones(4, bool), explore=True, rng=np.random.default_rng(1))
    assert np.abs(action).max() > 1.0, "expected samples outside the action bounds"
    agent.observe(
        Transition(
            obs,
            action,
            np.zeros(4, np.float32),
            np.zeros(4, bool),
            np.zeros(4, bool),
            np.zeros(4, bool),
            obs,
            obs,
        )
    )
    with torch.no_grad():
        mean = agent.net.policy(torch.as_tensor(obs))
        std = agent.net.log_std.exp()
        expected = torch.distributions.Normal(mean, std).log_prob(torch.as_tensor(action)).sum(-1)
    torch.testing.assert_close(agent.buffer["logprobs"][0], expected)
    torch.testing.assert_close(agent.buffer["actions"][0], torch.as_tensor(action))
    greedy, _ = agent.act(obs, None, np.ones(4, bool), explore=False, rng=np.random.default_rng(1))
    np.testing.assert_allclose(greedy, mean.numpy())


def test_categorical_log_prob_and_entropy():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    logp, entropy = losses.categorical_log_prob_entropy(logits, torch.tensor([2]))
    assert logp.item() == pytest.approx(math.log(0.5), abs=1e-6)
    h = -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))
    assert entropy.item() == pytest.approx(h, abs=1e-6)


def test_sampling_uses_only_the_callers_rng():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])).expand(20_000, 3)
    torch_state = torch.get_rng_state()
    a = losses.sample_categorical(logits, np.random.default_rng(7))
    b = losses.sample_categorical(logits, np.random.default_rng(7))
    assert torch.equal(torch_state, torch.get_rng_state()), "sampling touched torch's RNG"
    np.testing.assert_array_equal(a, b)
    freq = np.bincount(a, minlength=3) / len(a)
    np.testing.assert_allclose(freq, [0.2, 0.3, 0.5], atol=0.015)


def test_evaluation_act_does_not_disturb_training():
    agent = _agent(num_steps=4, num_envs=2)
    obs = np.array([[0.3], [-0.2]], dtype=np.float32)
    first = np.ones(2, bool)
    greedy, _ = agent.act(obs, None, first, explore=False, rng=np.random.default_rng(0))
    with torch.no_grad():
        np.testing.assert_array_equal(greedy, agent.net.policy(torch.as_tensor(obs)).argmax(-1))
    assert agent._pending is None and agent.pos == 0


# ------------------------------------------------------------------------------- normaliser


def test_running_mean_std_merges_batches_exactly():
    data = np.array([[1.0, -2.0], [3.0, 0.0], [5.0, 4.0], [-1.0, 2.0], [0.5, 0.5]])
    rms = RunningMeanStd((2,), epsilon=0.0)
    for batch in (data[:2], data[2:3], data[3:]):
        rms.update(batch)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-12)
    assert rms.count == 5


def test_running_mean_std_prior_count():
    # the prior is a pseudo-sample of weight eps with mean 0 and variance 1
    eps, x = 1e-4, np.array([[2.0], [4.0]])
    rms = RunningMeanStd((1,), epsilon=eps)
    rms.update(x)
    mean = x.sum() / (eps + 2)
    var = (eps * (1.0 + mean**2) + ((x - mean) ** 2).sum()) / (eps + 2)
    assert rms.mean[0] == pytest.approx(mean, rel=1e-12)
    assert rms.var[0] == pytest.approx(var, rel=1e-12)
    out = rms.normalize(np.array([[3.0], [1e6]]), clip=10.0)
    assert out[0, 0] == pytest.approx((3.0 - mean) / math.sqrt(var + 1e-8), rel=1e-6)
    assert out[1, 0] == 10.0 and out.dtype == np.float32


def test_reward_scaling_divides_by_discounted_return_std():
    agent = _agent(num_steps=3, discount=0.5, norm_reward=True, clip_reward=100.0)
    rewards, returns, expected = [2.0, 4.0, 1.0], [], []
    g, rms = 0.0, RunningMeanStd(())
    for i, r in enumerate(rewards):
        g = g * 0.5 + r
        rms.update(np.array([g]))
        expected.append(r / math.sqrt(rms.var + 1e-8))
        returns.append(g)
        agent.observe(_step(0.0, r, terminated=i == 1, next_obs=0.0))
        if i == 1:
            g = 0.0  # the discounted return restarts after an episode end
    torch.testing.assert_close(agent.buffer["rewards"][:, 0], torch.tensor(expected))


# ------------------------------------------------------------------------------------ losses


def test_clipped_policy_loss_tiny_case():
    ratio = torch.tensor([0.5, 0.5, 1.5, 1.0])
    adv = torch.tensor([1.0, -1.0, 2.0, -1.0])
    old = torch.zeros(4)
    loss, r = losses.clipped_policy_loss(torch.log(ratio), old, adv, clip=0.2)
    # per sample max(-A r, -A clip(r)): -0.5, 0.8 (clipped, pessimistic), -2.4 (clipped), 1.0
    assert loss.item() == pytest.approx((-0.5 + 0.8 - 2.4 + 1.0) / 4, abs=1e-6)
    torch.testing.assert_close(r, ratio)


def test_clipped_policy_loss_gradient_vanishes_outside_the_trust_region():
    logp = torch.log(torch.tensor([1.5, 1.1])).requires_grad_()
    loss, _ = losses.clipped_policy_loss(logp, torch.zeros(2), torch.tensor([2.0, 2.0]), clip=0.2)
    loss.backward()
    # sample 0 is clipped (no gradient); sample 1: d(-A r / 2)/dlogp = -A r / 2 = -1.1
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, -1.1]))


def test_value_loss_clipped_and_unclipped():
    values = torch.tensor([1.0, 2.0])
    old = torch.tensor([0.5, 2.5])
    returns = torch.tensor([3.0, 2.4])
    # sample 0: unclipped (1-3)^2 = 4, clipped old+0.2 = 0.7 -> 5.29: max 5.29
    # sample 1: unclipped 0.16, clipped old-0.2 = 2.3 -> 0.01: max 0.16
    assert losses.value_loss(values, old, returns, 0.2).item() == pytest.approx(
        0.5 * (5.29 + 0.16) / 2, abs=1e-6
    )
    assert losses.value_loss(values, old, returns, None).item() == pytest.approx(
        0.5 * (4.0 + 0.16) / 2, abs=1e-6
    )


# ------------------------------------------------------------------------------------- state


def _collect(agent: ppo.Agent, rng: np.random.Generator, steps: int, obs: np.ndarray):
    for _ in range(steps):
        action, _ = agent.act(obs, None, np.zeros(len(obs), bool), explore=True, rng=rng)
        nxt = obs + 0.1 * rng.normal(size=obs.shape).astype(np.float32)
        done = rng.random(len(obs)) < 0.1
        agent.observe(
            Transition(
                obs,
                action,
                rng.normal(size=len(obs)).astype(np.float32),
                done,
                np.zeros(len(obs), bool),
                done,
                nxt,
                nxt,
            )
        )
        obs = nxt
    return obs


def test_state_round_trip_mid_rollout_continues_identically(tmp_path):
    torch.set_num_threads(1)
    spec = _vector_spec(dim=3, discrete=False, actions=2)
    cfg = ppo.Config(
        num_steps=8,
        num_minibatches=2,
        update_epochs=2,
        norm_obs=True,
        norm_reward=True,
        anneal_steps=1000,
    )

    def fresh():
        return ppo.Agent(cfg, spec, 2, torch.device("cpu"), seed=5)

    a = fresh()
    rng = np.random.default_rng(0)
    obs = _collect(a, rng, 8, np.zeros((2, 3), np.float32))
    a.update()
    obs = _collect(a, rng, 3, obs)  # mid-rollout
    checkpoint.save(tmp_path, "ck", {"agent": a.state_dict(), "rng": rng.bit_generator.state})
    loaded = checkpoint.load(checkpoint.latest(tmp_path))
    b = fresh()
    b.load_state_dict(loaded["agent"])
    rng_b = np.random.default_rng()
    rng_b.bit_generator.state = loaded["rng"]
    obs_a = _collect(a, rng, 5, obs)
    obs_b = _collect(b, rng_b, 5, obs)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert a.update() == b.update()
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def _pixel_update(**overrides) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics and parameters after one update on a fixed 4-step pixel rollout (seed 1)."""
    torch.set_num_threads(1)
    spec = EnvSpec(
        obs_shape=(4, 10, 10),
        obs_dtype=np.dtype(np.uint8),
        pixels=True,
        frame_stack=4,
        frame_shape=(1, 10, 10),
        discrete=True,
        num_actions=3,
        obs_high=255.0,
    )
    settings = {"precision": "fp32", **overrides}  # the reference update is fp32
    cfg = ppo.Config(num_steps=4, num_minibatches=2, update_epochs=2, **settings)
    agent = ppo.Agent(cfg, spec, 2, torch.device("cpu"), seed=1)
    rng, data = np.random.default_rng(0), np.random.default_rng(1)
    obs = data.integers(0, 256, (2, 4, 10, 10), dtype=np.uint8)
    for _ in range(4):
        action, _ = agent.act(obs, None, np.zeros(2, bool), explore=True, rng=rng)
        nxt = data.integers(0, 256, (2, 4, 10, 10), dtype=np.uint8)
        no = np.zeros(2, bool)
        agent.observe(Transition(obs, action, np.ones(2, np.float32), no, no, no, nxt, nxt))
        obs = nxt
    metrics = agent.update()
    return metrics, torch.cat([p.detach().flatten() for p in agent.net.parameters()])


def test_pixel_agent_channels_last_matches_default_layout():
    """The NHWC option changes the memory layout only: the same seed gives the same actions and
    (to float tolerance) the same update."""
    (m0, p0), (m1, p1) = _pixel_update(), _pixel_update(channels_last=True)
    for key in m0:
        assert m0[key] == pytest.approx(m1[key], rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(p0, p1, rtol=1e-4, atol=1e-6)


def test_bf16_update_runs_the_network_in_bf16_and_stays_close_to_fp32():
    (m0, p0), (m1, p1) = _pixel_update(), _pixel_update(precision="bf16", channels_last=True)
    assert not torch.equal(p0, p1)  # autocast did run
    for key in ("pg_loss", "v_loss", "entropy"):
        k = f"train/{key}"
        assert m1[k] == pytest.approx(m0[k], rel=0.05, abs=1e-3), key
    with pytest.raises(FrugalError, match="agent.precision"):
        _pixel_update(precision="fp16")


def test_resumed_run_may_change_hyperparameters():
    keys = mutable_keys(ppo.Config)
    assert {"lr", "clip_range", "ent_coef", "vf_coef"} <= keys
    for name in keys:
        assert hasattr(ppo.Config, name)


def test_network_keys_stay_those_of_saved_checkpoints():
    spec = _vector_spec(dim=3, discrete=False, actions=2)
    agent = ppo.Agent(ppo.Config(num_steps=2, num_minibatches=1), spec, 1, torch.device("cpu"), 0)
    mlp = [
        f"{net}.1.{i}.{p}"
        for net in ("actor", "critic")
        for i in (0, 2, 4)
        for p in ("weight", "bias")
    ]
    assert list(agent.net.state_dict()) == ["log_std", *mlp]


def test_bad_settings_name_the_key():
    with pytest.raises(FrugalError, match="agent.num_minibatches"):
        _agent(num_steps=4, num_envs=1, num_minibatches=5)
    with pytest.raises(FrugalError, match="agent.torso"):
        _agent(torso="nature")


def test_default_presets():
    atari = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 4, (1, 84, 84), True, 4, suite="atari")
    assert ppo.default_preset(atari) == "atari"  # atari/Breakout
    assert ppo.default_preset(_vector_spec(4)) == "cartpole"  # gym/CartPole-v1
    assert ppo.default_preset(_vector_spec(3, discrete=False)) == "pendulum"  # gym/Pendulum-v1
    for name, preset in ppo.PRESETS.items():
        assert preset.doc, name
        ppo.Config(**preset.agent)


# ---------------------------------------------------------------------------------- learning


@pytest.mark.learning
def test_cartpole_learns(tmp_path):
    """The cartpole preset, seed 0: within 10k env steps greedy evaluation returns pass 250 (they
    are ~335; a random policy scores ~22, and the preset reaches 500 by ~15k-20k). Under 10 s on a
    free CPU core. Fails if learning breaks."""
    torch.set_num_threads(1)
    run = frugal.train(
        "ppo",
        "gym/CartPole-v1",
        steps=10_240,
        seed=0,
        run_dir=tmp_path / "r",
        overrides=[
            "run.progress=false",
            "run.eval_every=5_120",
            "run.checkpoint_every=0",
            "run.eval_episodes=5",
        ],
    )
    evals = [p["eval/return_mean"] for p in run.metrics if "eval/return_mean" in p]
    assert max(evals) >= 250, f"PPO did not learn CartPole: eval returns {evals}"
