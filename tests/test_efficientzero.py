"""EfficientZero V1/V2: support transforms, segment-replay targets, losses, the agent in a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frugal.agents.efficientzero import Agent
from frugal.agents.efficientzero.augment import augment_pixels
from frugal.agents.efficientzero.losses import consistency_loss
from frugal.agents.efficientzero.sampled import sample_candidates
from frugal.agents.efficientzero.targets import (
    alive_mask,
    off_policy_td_steps,
    reward_targets,
    search_value_mask,
    td_targets,
)
from frugal.agents.efficientzero.v1 import visit_temperature
from frugal.nets.support import Support, h_inverse, h_transform
from frugal.replay.segments import SegmentReplay

# ------------------------------------------------------------------------------- h(x), support


def test_h_transform_exact_values():
    x = torch.tensor([0.0, 3.0, -3.0, 8.0, 99.0], dtype=torch.float64)
    expected = torch.tensor([0.0, 1.003, -1.003, 2.008, 9.099], dtype=torch.float64)
    torch.testing.assert_close(h_transform(x), expected, rtol=0, atol=1e-12)


def test_h_inverse_inverts_h_over_a_wide_range():
    x = torch.tensor(
        [-1e5, -300.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 42.0, 1e5], dtype=torch.float64
    )
    torch.testing.assert_close(h_inverse(h_transform(x)), x, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(
        h_inverse(torch.tensor([1.003, -2.008], dtype=torch.float64)),
        torch.tensor([3.0, -8.0], dtype=torch.float64),
        rtol=0,
        atol=1e-9,
    )


def test_two_hot_splits_mass_between_neighbours_and_clips():
    y = torch.tensor([0.25, 5.0, -5.0, 1.0, -0.5])
    expected = torch.tensor(
        [[0.0, 0.75, 0.25], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]
    )
    torch.testing.assert_close(Support(-1.0, 1.0, 3, transform=False).encode(y), expected)


def test_support_encode_decode_round_trip_and_exact_projection():
    support = Support(-300.0, 300.0, 601)
    probs = support.encode(torch.tensor([3.0]))
    assert probs.shape == (1, 601)
    nonzero = probs[0].nonzero().flatten().tolist()
    assert nonzero == [301, 302], "h(3) = 1.003 lies between atoms 1 and 2"
    torch.testing.assert_close(probs[0, 301:303], torch.tensor([0.997, 0.003]))
    x = torch.tensor([[0.0, 1.0, -7.5], [120.0, -2500.0, 0.25]])
    decoded = support.decode(support.encode(x).clamp_min(1e-30).log())
    torch.testing.assert_close(decoded, x, rtol=1e-4, atol=1e-3)
    # a coarse support (51 bins as in EfficientZero V2) is still exact on its grid's span
    coarse = Support(-300.0, 300.0, 51)
    torch.testing.assert_close(
        coarse.decode(coarse.encode(x).clamp_min(1e-30).log()), x, rtol=1e-3, atol=1e-2
    )


def test_support_cross_entropy_is_minimal_at_the_encoded_target():
    support = Support(-5.0, 5.0, 11)
    target = torch.tensor([2.0])
    best = support.encode(target).clamp_min(1e-12).log()
    worse = torch.zeros(1, 11)
    assert support.cross_entropy(best, target).item() < support.cross_entropy(worse, target).item()


# ---------------------------------------------------------------------------- replay targets


def _flags(length: int, terminal_at=None, truncated_at=None):
    term = np.zeros((1, length), bool)
    trunc = np.zeros((1, length), bool)
    if terminal_at is not None:
        term[0, terminal_at] = True
    if truncated_at is not None:
        trunc[0, truncated_at] = True
    return term, trunc


def test_td_targets_stop_at_a_terminal_and_are_zero_after_it():
    rewards = np.arange(1, 11, dtype=np.float32)[None]
    term, trunc = _flags(10, terminal_at=3)
    t = td_targets(rewards, term, trunc, n=np.array([2]), gamma=0.5, positions=6)
    np.testing.assert_allclose(t.partial[0], [2.0, 3.5, 5.0, 4.0, 0.0, 0.0])
    np.testing.assert_allclose(t.discount[0], [0.25, 0.25, 0.0, 0.0, 0.0, 0.0])
    assert t.boot_row[0, :2].tolist() == [2, 3]
    assert not t.from_final.any()
    assert t.valid.all(), "after a terminal the target (0) is known"


def test_td_targets_bootstrap_from_the_final_observation_of_a_truncation():
    rewards = np.arange(1, 11, dtype=np.float32)[None]
    term, trunc = _flags(10, truncated_at=3)
    t = td_targets(rewards, term, trunc, n=np.array([2]), gamma=0.5, positions=6)
    np.testing.assert_allclose(t.partial[0, :4], [2.0, 3.5, 5.0, 4.0])
    np.testing.assert_allclose(t.discount[0, :4], [0.25, 0.25, 0.25, 0.5])
    assert t.from_final[0].tolist() == [False, False, True, True, False, False]
    assert t.boot_row[0, 2:4].tolist() == [3, 3]
    assert t.valid[0].tolist() == [True, True, True, True, False, False]


def test_td_targets_use_each_samples_own_horizon():
    rewards = np.ones((2, 8), dtype=np.float32)
    term = np.zeros((2, 8), bool)
    t = td_targets(rewards, term, term.copy(), n=np.array([3, 1]), gamma=0.5, positions=2)
    np.testing.assert_allclose(t.partial, [[1.75, 1.75], [1.0, 1.0]])
    np.testing.assert_allclose(t.discount, [[0.125, 0.125], [0.5, 0.5]])
    assert t.boot_row.tolist() == [[3, 4], [1, 2]]


def test_reward_and_value_prefix_targets_across_episode_ends():
    rewards = np.arange(1, 8, dtype=np.float32)[None]
    none = np.zeros((1, 7), bool)
    r, m = reward_targets(rewards, none, none, unroll=7)
    np.testing.assert_allclose(r[0], [1, 2, 3, 4, 5, 6, 7])
    prefix, m = reward_targets(rewards, none, none, unroll=7, value_prefix=True, horizon=5)
    np.testing.assert_allclose(prefix[0], [1, 3, 6, 10, 15, 6, 13])
    assert m.all()
    term, trunc = _flags(7, terminal_at=2)
    prefix, m = reward_targets(rewards, term, trunc, unroll=7, value_prefix=True, horizon=5)
    np.testing.assert_allclose(prefix[0], [1, 3, 6, 6, 6, 0, 0])
    assert m.all(), "absorbing steps after a terminal are trained towards 0"
    term, trunc = _flags(7, truncated_at=2)
    r, m = reward_targets(rewards, term, trunc, unroll=7)
    assert m[0].tolist() == [True, True, True, False, False, False, False]
    assert alive_mask(term, trunc, 5)[0].tolist() == [True, True, True, False, False]


def test_off_policy_td_horizon_shrinks_with_age():
    age = np.array([0, 35_999, 36_000, 72_000, 1_000_000])
    assert off_policy_td_steps(age, 5, 36_000).tolist() == [5, 5, 4, 3, 1]


def test_sve_takes_search_values_only_for_old_data_after_the_start():
    age = np.array([0, 4_999, 5_000, 10_000])
    assert not search_value_mask(age, 29_999, 30_000, 5_000).any()
    assert search_value_mask(age, 30_000, 30_000, 5_000).tolist() == [False, False, True, True]


def _segment_replay(capacity=12, window=2, alpha=0.5):
    return SegmentReplay(
        capacity, 2, (3,), np.dtype(np.float32), 1, policy_size=2, window=window, alpha=alpha
    )


def _add(replay, step, **kw):
    obs = np.full((2, 3), step, np.float32)
    zeros = np.zeros(2, bool)
    replay.add(
        obs,
        np.array([0, 1]),
        np.ones(2, np.float32),
        zeros,
        zeros,
        zeros,
        obs + 1,
        obs + 1,
        np.full((2, 2), 0.5, np.float32),
        np.array([step, -step], np.float32),
        **kw,
    )


def test_segment_priorities_new_at_max_updated_and_evicted():
    replay = _segment_replay()
    for step in range(3):
        _add(replay, step)
    # 3 moves with window 2: row 0 and row 1 are sampleable, 2 envs each
    leaves = replay.tree.state_dict()["leaves"]
    np.testing.assert_allclose(leaves[:4], 1.0)
    assert leaves[4:].sum() == 0
    replay.update_priorities(np.array([0, 3]), np.array([3.0, 0.0]))
    leaves = replay.tree.state_dict()["leaves"]
    np.testing.assert_allclose(leaves[[0, 1, 2, 3]], [(3 + 1e-6) ** 0.5, 1.0, 1.0, 1e-6**0.5])
    assert replay.max_priority == pytest.approx(3 + 1e-6)
    _add(replay, 3)  # opens row 2 at the new maximum
    np.testing.assert_allclose(replay.tree.get(np.array([4, 5])), (3 + 1e-6) ** 0.5)
    for step in range(4, 8):
        _add(replay, step)  # 6 rows per stream: row 0 was overwritten
    # 6 rows per stream: rows 1 and 2 left (their slots wait for rows 7, 8), row 6 reuses slot 0
    assert replay.tree.get(np.arange(2, 6)).tolist() == [0.0] * 4
    np.testing.assert_allclose(replay.tree.get(np.array([0, 1])), (3 + 1e-6) ** 0.5)
    lo, hi = replay.sampleable_rows()
    sample = replay.sample(64, np.random.default_rng(0), beta=0.4)
    assert ((sample.rows >= lo) & (sample.rows <= hi)).all()
    stats = replay.search_stats(sample.rows, sample.envs)
    expected = np.where(sample.envs == 0, sample.rows, -sample.rows)
    np.testing.assert_allclose(stats["root_value"], expected)
    np.testing.assert_allclose(replay.observations(sample.rows, sample.envs)[:, 0], sample.rows)


def test_segment_replay_state_round_trip():
    a = _segment_replay()
    for step in range(9):
        _add(a, step)
    a.update_priorities(np.array([8, 9, 4]), np.array([2.0, 0.1, 5.0]))  # id 4 left
    b = _segment_replay()
    b.load_state_dict(a.state_dict())
    s1 = a.sample(16, np.random.default_rng(3), 0.4)
    s2 = b.sample(16, np.random.default_rng(3), 0.4)
    np.testing.assert_array_equal(s1.index, s2.index)
    np.testing.assert_array_equal(s1.weights, s2.weights)
    np.testing.assert_array_equal(a.policy, b.policy)


# ------------------------------------------------------------------------------ agent pieces


def test_consistency_gradient_flows_only_through_the_online_branch():
    online = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8, requires_grad=True)
    loss = consistency_loss(online, target)
    assert loss.shape == (4,)
    loss.sum().backward()
    assert online.grad is not None and online.grad.abs().sum() > 0
    assert target.grad is None, "the target branch must be stop-gradient"
    same = consistency_loss(target.detach(), target.detach())
    torch.testing.assert_close(same, -torch.ones(4))


def test_consistency_in_the_network_only_trains_the_online_path():
    from frugal.nets.muzero import MuZeroNet, NetConfig

    net = MuZeroNet(
        NetConfig(
            obs_shape=(4,),
            num_actions=2,
            hidden=16,
            latent=8,
            fc=(16,),
            value_bins=5,
            reward_bins=5,
            proj_hidden=16,
            proj_out=8,
            pred_hidden=8,
        )
    )
    obs = torch.randn(6, 4)
    with torch.no_grad():
        target = net.project(net.represent(obs), with_predictor=False)
    s, _, _ = net.dynamics(net.represent(obs), torch.zeros(6, dtype=torch.long))
    consistency_loss(net.project(s, with_predictor=True), target).mean().backward()
    assert net.predictor[0].weight.grad is not None, "the predictor is on the online branch"
    assert net.dyn_in[0].weight.grad.abs().sum() > 0


def test_visit_temperature_schedule():
    assert [visit_temperature(u, (10, 20)) for u in (0, 9, 10, 19, 20, 99)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        0.25,
    ]


def test_sampled_candidates_include_the_mean_and_importance_logits():
    gen = torch.Generator().manual_seed(0)
    mean = torch.tensor([[0.3, -0.2]])
    std = torch.tensor([[0.5, 0.5]])
    cand, logits = sample_candidates(mean, std, 16, 4, 3.0, gen)
    assert cand.shape == (1, 16, 2) and logits.shape == (1, 16)
    torch.testing.assert_close(cand[0, 0], torch.tanh(mean[0]))
    assert (cand.abs() < 1).all() and torch.isfinite(logits).all()
    # the widened draws are on average less likely under pi than under beta
    assert logits[0, 4:].mean() < logits[0, :4].mean()


def test_augmentation_keeps_shape_and_shifts_within_padding():
    gen = torch.Generator().manual_seed(1)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment_pixels(x, gen, pad=2)
    assert out.shape == x.shape
    ratio = out / augment_pixels(x, torch.Generator().manual_seed(1), pad=2)
    torch.testing.assert_close(ratio, torch.ones_like(ratio)), "same generator, same result"


# ------------------------------------------------------------------------------- in a run

import frugal  # noqa: E402

FAST = [
    "run.progress=false",
    "env.num_envs=2",
    "run.eval_episodes=2",
    "run.eval_envs=2",
    "agent.num_simulations=4",
    "agent.batch_size=16",
    "agent.learning_starts=64",
    "run.eval_every=128",
    "run.log_every=64",
    "run.checkpoint_every=128",
]


def _stable(points):
    return [
        {k: v for k, v in p.items() if k != "wall_s" and not k.startswith("perf/")} for p in points
    ]


@pytest.mark.parametrize(
    "env_id, extra",
    [
        ("gym/CartPole-v1", ["agent.version=v1"]),
        ("gym/Pendulum-v1", []),
    ],
    ids=["v1-cartpole", "v2-pendulum-sampled"],
)
def test_resume_is_exact(env_id, extra, tmp_path):
    torch.set_num_threads(1)
    overrides = FAST + extra
    straight = frugal.train(
        "efficientzero",
        env_id,
        steps=256,
        seed=5,
        run_dir=tmp_path / "straight",
        overrides=overrides,
    )
    first = frugal.train(
        "efficientzero", env_id, steps=128, seed=5, run_dir=tmp_path / "split", overrides=overrides
    )
    resumed = frugal.resume(first.dir, steps=256)
    a, b = _stable(straight.metrics), _stable(resumed.metrics)
    assert [p["env_step"] for p in a] == [p["env_step"] for p in b]
    assert a == b


@pytest.mark.learning
def test_v2_learns_cartpole_quickly(tmp_path):
    """~1,250 updates at batch 32 lift CartPole from ~20 (random) to well above 100."""
    torch.set_num_threads(1)
    run = frugal.train(
        "efficientzero",
        "gym/CartPole-v1",
        steps=3_000,
        seed=0,
        run_dir=tmp_path / "learn",
        overrides=[
            "run.progress=false",
            "run.eval_every=0",
            "run.eval_episodes=5",
            "agent.batch_size=32",
            "agent.replay_ratio=0.5",
            "agent.learning_starts=500",
        ],
    )
    final = [p for p in run.metrics if "eval/return_mean" in p][-1]
    assert final["eval/return_mean"] >= 100, f"eval return {final['eval/return_mean']:.1f}"


def _agent(env_id="gym/CartPole-v1", overrides=()):
    from frugal.api import build_config
    from frugal.envs import make_env

    config = build_config("efficientzero", env_id, overrides=list(overrides))
    env = make_env(config.env, 1)
    spec = env.spec
    env.close()
    return Agent(config.agent, spec, 1, torch.device("cpu"), seed=0)


def test_value_prefix_search_step_returns_prefix_differences_and_resets_at_the_horizon():
    agent = _agent(overrides=["agent.version=v1"])
    assert agent.value_prefix
    net, gen = agent.net.eval(), torch.Generator().manual_seed(0)
    recurrent = agent.version.model.recurrent_fn(net, gen, 2)
    with torch.no_grad():
        s = net.represent(torch.randn(2, 4))
        h = torch.randn(2, agent.cfg.lstm_hidden)
        emb = {"s": s, "h": h, "c": h.clone(), "prefix": torch.tensor([0.5, -1.0]),
               "depth": torch.tensor([3.0, 4.0])}  # fmt: skip
        step, child = recurrent(emb, torch.tensor([0, 1]))
        _, rlog, _ = net.dynamics(s, torch.tensor([0, 1]), (h, h.clone()))
    prefix = agent.reward_support.decode(rlog)
    torch.testing.assert_close(step.reward, prefix - emb["prefix"])
    assert child["depth"].tolist() == [4.0, 5.0]
    # depth 5 = lstm_horizon: the child starts a new prefix from a zero LSTM state
    assert child["prefix"][1] == 0 and child["h"][1].abs().sum() == 0
    torch.testing.assert_close(child["prefix"][0], prefix[0])


def test_mixed_precision_update_runs(tmp_path):
    overrides = FAST + ["agent.precision=bf16"]
    run = frugal.train("efficientzero", "gym/CartPole-v1", steps=128, seed=0,
                       run_dir=tmp_path / "bf16", overrides=overrides)  # fmt: skip
    losses = [p["train/loss"] for p in run.metrics if "train/loss" in p]
    assert losses and all(np.isfinite(losses))


# ------------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    "low, high, bins, message",
    [(-1.0, 1.0, 1, "bins must be an integer >= 2"), (1.0, 1.0, 5, "low < high")],
)
def test_a_bad_support_is_one_clear_error(low, high, bins, message):
    from frugal.errors import FrugalError

    with pytest.raises(FrugalError, match=message):
        Support(low, high, bins)


@pytest.mark.parametrize(
    "override, message",
    [
        ("agent.version=v3", "unknown agent.version 'v3'"),
        ("agent.gumbel_rescale=global", "unknown agent.gumbel_rescale 'global'"),
        ("agent.value_support=-5,5,1", "agent.value_support: bins must be an integer >= 2"),
        ("agent.reward_support=5,-5,11", "agent.reward_support: low must be below high"),
        ("agent.reward_support=-5,5", "agent.reward_support takes low,high,bins"),
        ("agent.c_visit=-1", "c_visit must be >= 0"),
    ],
)
def test_bad_agent_settings_are_one_clear_error(override, message):
    from frugal.errors import FrugalError

    with pytest.raises(FrugalError, match=message) as info:
        _agent(overrides=[override])
    assert "\n" not in str(info.value)
