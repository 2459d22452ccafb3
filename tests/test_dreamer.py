"""DreamerV3 components with exact values, the sequence replay, the RSSM's resets, and a short
learning test on CartPole."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frugal.agents import dreamer
from frugal.agents.base import Transition
from frugal.agents.dreamer import config, losses
from frugal.agents.dreamer.video import observation_image
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets import dreamer as nets
from frugal.nets.distributions import (
    bounded_normal,
    categorical_kl,
    free_bits,
    onehot_from_uniform,
    symexp,
    symlog,
    symlog_buckets,
    twohot,
    twohot_loss,
    twohot_mean,
    unimix_logits,
    unimix_probs,
)
from frugal.nets.returns import PercentileNormaliser, lambda_returns
from frugal.replay.sequences import SequenceReplay

# ------------------------------------------------------------------------------ transforms


def test_symlog_values_and_symexp_inverts_it():
    x = torch.tensor([-(math.e - 1), -1.0, 0.0, 1.0, math.e**2 - 1], dtype=torch.float64)
    expected = torch.tensor([-1.0, -math.log(2), 0.0, math.log(2), 2.0], dtype=torch.float64)
    torch.testing.assert_close(symlog(x), expected)
    big = torch.tensor([-1e6, -3.5, 0.25, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(big)), big)


def test_twohot_splits_weight_between_neighbouring_buckets():
    buckets = torch.tensor([0.0, 1.0, 2.0, 3.0])
    codes = twohot(torch.tensor([1.25, 2.0, -5.0, 3.0, 9.0]), buckets)
    expected = torch.tensor(
        [[0, 0.75, 0.25, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1.0]]
    )
    torch.testing.assert_close(codes, expected)


def test_twohot_on_evenly_spaced_buckets_clips_at_both_ends():
    buckets = torch.linspace(-2.0, 2.0, 5)  # -2 -1 0 1 2, as a categorical support builds them
    x = torch.tensor([[-7.0, -2.0, -1.75, -1.0], [0.0, 0.5, 2.0, 3.5]])
    codes = twohot(x, buckets)
    expected = torch.tensor(
        [
            [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0.75, 0.25, 0, 0, 0], [0, 1, 0, 0, 0]],
            [[0, 0, 1, 0, 0], [0, 0, 0.5, 0.5, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1.0]],
        ]
    )
    torch.testing.assert_close(codes, expected)
    # the code decodes to the value clipped to the range, at any batch shape
    torch.testing.assert_close((codes * buckets).sum(-1), x.clamp(-2.0, 2.0))
    # a many-bucket grid: every value exactly on a bucket takes all the weight, rounding aside
    grid = torch.linspace(-300.0, 300.0, 601)
    on = twohot(grid, grid)
    torch.testing.assert_close(on, torch.eye(601), atol=1e-5, rtol=0)
    wide = twohot(torch.tensor([-1e9, 1e9, 0.25], dtype=torch.float64), grid)
    assert wide[0, 0] == 1 and wide[1, -1] == 1 and wide[2, 300] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least 2 buckets"):
        twohot(x, torch.zeros(1))


def test_twohot_round_trip_over_255_symlog_buckets():
    buckets = symlog_buckets(255, -20.0, 20.0).double()
    assert buckets.shape == (255,) and buckets[0] == -20 and buckets[-1] == 20
    values = torch.tensor([-1000.0, -3.5, 0.0, 0.1, 7.0, 1e5], dtype=torch.float64)
    code = twohot(symlog(values), buckets)
    torch.testing.assert_close(code.sum(-1), torch.ones(6, dtype=torch.float64))
    assert ((code > 0).sum(-1) <= 2).all()
    # logits = log(code) give softmax(logits) = code: the decoded mean is the value again
    torch.testing.assert_close(twohot_mean(code.log(), buckets), values)


def test_twohot_loss_is_cross_entropy_to_the_code():
    buckets = symlog_buckets().double()
    target = torch.tensor([0.0, 123.0], dtype=torch.float64)
    # zero logits: uniform prediction, loss ln(255) whatever the target
    uniform = twohot_loss(torch.zeros(2, 255, dtype=torch.float64), target, buckets)
    torch.testing.assert_close(uniform, torch.full((2,), math.log(255), dtype=torch.float64))
    # predicting the code itself leaves its entropy: 0.75/0.25 split -> 0.562335...
    small = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    logits = torch.tensor([[-30.0, math.log(0.75), math.log(0.25), -30.0]], dtype=torch.float64)
    loss = twohot_loss(logits, symexp(torch.tensor([1.25], dtype=torch.float64)), small)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert loss.item() == pytest.approx(entropy, abs=1e-9)


def test_free_bits_clip_at_one_nat_and_stop_gradients_below():
    kl = torch.tensor([0.3, 1.0, 2.5], requires_grad=True)
    clipped = free_bits(kl, 1.0)
    torch.testing.assert_close(clipped, torch.tensor([1.0, 1.0, 2.5]))
    clipped.sum().backward()
    assert kl.grad.tolist() == [0.0, 1.0, 1.0]  # max(1, KL): no gradient from the floor


def test_unimix_mixes_one_percent_uniform():
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # softmax 0.25 / 0.75
    probs = unimix_probs(logits, 0.01)
    torch.testing.assert_close(probs, torch.tensor([[0.2525, 0.7475]], dtype=torch.float64))
    torch.testing.assert_close(unimix_logits(logits, 0.01), probs.log())
    # even a near-certain categorical keeps 0.01 / K on every class
    peaked = unimix_probs(torch.tensor([[100.0, 0.0, 0.0, 0.0]], dtype=torch.float64), 0.01)
    assert peaked[0, 1:].tolist() == pytest.approx([0.0025] * 3)


def test_inverse_cdf_one_hot_samples():
    probs = torch.tensor([[0.2, 0.5, 0.3]]).expand(4, 3)
    u = torch.tensor([0.0, 0.19, 0.21, 0.9999999])
    picked = onehot_from_uniform(probs, u).argmax(-1)
    assert picked.tolist() == [0, 0, 1, 2]
    assert (onehot_from_uniform(probs, u).sum(-1) == 1).all()


def test_categorical_kl_of_identical_distributions_is_zero():
    a = torch.log(torch.tensor([[0.1, 0.9]]))
    b = torch.log(torch.tensor([[0.5, 0.5]]))
    assert categorical_kl(a, a).item() == 0.0
    expected = 0.1 * math.log(0.1 / 0.5) + 0.9 * math.log(0.9 / 0.5)
    assert categorical_kl(a, b).item() == pytest.approx(expected, rel=1e-6)


def test_bounded_normal_ranges():
    mean, std = bounded_normal(torch.tensor([-100.0, 0.0]), torch.tensor([-100.0, 100.0]))
    torch.testing.assert_close(mean, torch.tensor([-1.0, 0.0]))
    torch.testing.assert_close(std, torch.tensor([0.1, 1.0]))


# --------------------------------------------------------------------------------- returns


def test_lambda_returns_by_hand():
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [3.0]])
    discounts = torch.tensor([[0.9], [0.8]])
    # R2 = 3; R1 = 2 + 0.8 (0.5*3 + 0.5*3) = 4.4; R0 = 1 + 0.9 (0.5*1 + 0.5*4.4) = 3.43
    returns = lambda_returns(rewards, values, discounts, lam=0.5)
    torch.testing.assert_close(returns, torch.tensor([[3.43], [4.4]]))
    # λ = 1: discounted Monte Carlo with the last value as bootstrap
    mc = lambda_returns(rewards, values, discounts, lam=1.0)
    torch.testing.assert_close(mc, torch.tensor([[1 + 0.9 * (2 + 0.8 * 3)], [2 + 0.8 * 3]]))


def test_percentile_normaliser_state():
    norm = PercentileNormaliser(decay=0.99, limit=1.0)
    returns = torch.arange(101, dtype=torch.float32)  # 5th percentile 5, 95th 95
    assert norm.update(returns).item() == pytest.approx(1.0)  # S = 0.9 < 1: limit
    assert norm.low.item() == pytest.approx(0.05) and norm.high.item() == pytest.approx(0.95)
    scale = norm.update(returns).item()
    assert norm.low.item() == pytest.approx(0.0995) and norm.high.item() == pytest.approx(1.8905)
    assert scale == pytest.approx(1.791)
    copy = PercentileNormaliser()
    copy.load_state_dict(norm.state_dict())
    assert copy.scale().item() == pytest.approx(1.791)


# ---------------------------------------------------------------------------------- replay


def _filled_replay(capacity=100):
    """One env, obs = step counter; games of 3 steps (terminal), then 2 steps (truncated)."""
    replay = SequenceReplay(capacity, 1, (1,), np.dtype(np.float32))
    t, obs = 0, np.zeros((1, 1), np.float32)
    script = [(False, False), (False, False), (True, False), (False, False), (False, True)]
    for terminated, truncated in script * 3:
        t += 1
        final = np.full((1, 1), t, np.float32)
        reset = np.array([terminated or truncated])
        nxt = np.full((1, 1), 100 + t, np.float32) if reset[0] else final
        replay.add(
            obs, np.array([t]), np.array([float(t)]), np.array([terminated]), reset, nxt, final
        )
        obs = nxt
    return replay


def test_sequence_replay_keeps_final_observations_and_flags():
    replay = _filled_replay()
    # rows: start, 1, 2, 3(terminal), reset 103 (first), 4, 5, reset 105 (first), 6, ...
    n = int(replay.count[0])
    obs = replay.obs[0, :n, 0].tolist()
    assert obs[:9] == [0, 1, 2, 3, 103, 4, 5, 105, 6]
    assert replay.first[0, :9].tolist() == [1, 0, 0, 0, 1, 0, 0, 1, 0]
    assert replay.terminal[0, :9].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert replay.action[0, :9].tolist() == [0, 1, 2, 3, 0, 4, 5, 0, 6]  # action that led here
    assert replay.reward[0, :9].tolist() == [0, 1, 2, 3, 0, 4, 5, 0, 6]


def test_sequence_windows_continue_and_fresh_ones_start_first():
    replay = _filled_replay()
    rng = np.random.default_rng(0)
    a = replay.sample(2, 4, rng)
    assert not a["continued"].any() and a["first"][:, 0].all()
    b = replay.sample(2, 4, rng)
    for i in range(2):  # the next window of each slot follows the previous one
        if b["continued"][i]:
            start = replay.cursor_row[i] - 4
            assert b["obs"][i, 0, 0] == replay.obs[0, start % replay.rows, 0]
            assert b["first"][i].tolist() == replay.first[0, start : start + 4].tolist()
    assert b["continued"].any()
    state = replay.state_dict()
    copy = SequenceReplay(100, 1, (1,), np.dtype(np.float32))
    copy.load_state_dict(state)
    c1, c2 = (
        replay.sample(2, 4, np.random.default_rng(5)),
        copy.sample(2, 4, np.random.default_rng(5)),
    )
    for key in c1:
        np.testing.assert_array_equal(c1[key], c2[key])


def test_sequence_replay_wraps_around():
    replay = _filled_replay(capacity=8)
    assert len(replay) == 8
    window = replay.sample(1, 8, np.random.default_rng(0))
    last = int(replay.count[0])
    assert window["obs"][0, -1, 0] == replay.obs[0, (last - 1) % 8, 0]


# ------------------------------------------------------------------------------------- RSSM


def _tiny_rssm():
    torch.manual_seed(0)
    return nets.RSSM(
        deter=16,
        units=16,
        stoch=4,
        classes=4,
        action_dim=2,
        embed_dim=8,
        unimix=0.01,
        clip_actions=False,
    )


def test_is_first_resets_the_state_inside_a_sequence():
    rssm = _tiny_rssm()
    t, b = 6, 3
    embed = torch.randn(t, b, 8)
    action = torch.randn(t, b, 2)
    u = torch.rand(t, b, 4)
    first = torch.zeros(t, b, dtype=torch.bool)
    first[3, 1] = True  # env 1 starts a new game at step 3
    stoch0, deter0 = torch.randn(b, 16), torch.randn(b, 16)
    stochs, deters, logits = rssm.observe(embed, action, first, stoch0, deter0, u)
    # the same steps 3.. run from scratch (first at step 0) give the same states for env 1
    fresh = torch.zeros(t - 3, b, dtype=torch.bool)
    fresh[0] = True
    s2, d2, l2 = rssm.observe(embed[3:], action[3:], fresh, stoch0, deter0, u[3:])
    torch.testing.assert_close(deters[3:, 1], d2[:, 1])
    torch.testing.assert_close(stochs[3:, 1], s2[:, 1])
    torch.testing.assert_close(logits[3:, 1], l2[:, 1])
    # ... and the reset ignores the carried state and the action given at the first step
    changed = action[3:].clone()
    changed[0] *= 5
    other = rssm.observe(embed[3:], changed, fresh, stoch0 * 0, deter0 * 3, u[3:])
    torch.testing.assert_close(other[1][:, 1], d2[:, 1])
    # without the reset env 1 would have gone on from its carried state
    assert not torch.allclose(deters[3:, 0], d2[:, 0])


def test_posterior_samples_are_one_hot_with_straight_through_gradients():
    rssm = _tiny_rssm()
    embed = torch.randn(2, 3, 8, requires_grad=True)
    stochs, _, _ = rssm.observe(
        embed,
        torch.zeros(2, 3, 2),
        torch.ones(2, 3, dtype=torch.bool),
        torch.zeros(3, 16),
        torch.zeros(3, 16),
        torch.rand(2, 3, 4),
    )
    values = stochs.detach().view(2, 3, 4, 4)
    # straight-through adds probs - probs (rounding only) to the one-hot sample
    torch.testing.assert_close(values, values.round(), atol=1e-6, rtol=0)
    assert (values.round().sum(-1) == 1).all()
    stochs.sum(-1).mul(torch.arange(2 * 3.0).view(2, 3)).sum().backward()
    assert embed.grad is not None


def test_reward_and_critic_outputs_start_at_zero():
    spec = EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 2)
    cfg = dreamer.Config(size="tiny", stoch=4, classes=4)
    agent = dreamer.Agent(cfg, spec, 1, torch.device("cpu"), seed=0)
    feat = torch.randn(5, agent.wm.feat_dim)
    assert (agent.wm.reward(feat) == 0).all() and (agent.critic(feat) == 0).all()


def test_model_sizes_follow_the_paper():
    assert dreamer.SIZES["S"] == dict(deter=512, units=512, cnn_depth=32, layers=2)
    assert dreamer.SIZES["M"] == dict(deter=1024, units=640, cnn_depth=48, layers=3)
    assert dreamer.SIZES["L"] == dict(deter=2048, units=768, cnn_depth=64, layers=4)
    assert dreamer.SIZES["XL"] == dict(deter=4096, units=1024, cnn_depth=96, layers=5)


def test_bad_settings_are_one_clear_error():
    spec = EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 2)
    cpu = torch.device("cpu")
    message = r"unknown DreamerV3 size 'XXL' \(did you mean XL.*\); valid: L, M, S, XL, XS, tiny"
    with pytest.raises(FrugalError, match=message):
        dreamer.Agent(dreamer.Config(size="XXL"), spec, 1, cpu, seed=0)
    bad = {
        "encoder": ("cnn", "agent.encoder=cnn needs pixel observations"),
        "actor_grad": ("backprop", "agent.actor_grad=backprop needs continuous actions"),
        "batch_length": (0, "agent.batch_length must be at least 1, got 0"),
        "replay_size": (10, "agent.replay_size=10 holds 10 steps per env, fewer than"),
        "discount": (1.5, r"agent.discount must be in \(0, 1\], got 1.5"),
        "actor_min_std": (2.0, "need 0 < min <= max"),
    }
    for key, (value, message) in bad.items():
        cfg = dreamer.Config(size="tiny", **{key: value})
        with pytest.raises(FrugalError, match=message):
            dreamer.Agent(cfg, spec, 1, cpu, seed=0)
    with pytest.raises(FrugalError, match="unknown agent.encoder 'rnn'"):
        dreamer.Agent(dreamer.Config(size="tiny", encoder="rnn"), spec, 1, cpu, seed=0)


@pytest.mark.parametrize("shape", [(3, 64, 64), (4, 10, 10)])
def test_pixel_decoders_mirror_the_encoders(shape):
    spec = EnvSpec(shape, np.dtype(np.uint8), True, 1, shape, True, 3, obs_high=255.0)
    cfg = dreamer.Config(size="tiny", stoch=4, classes=4)
    sizes = config.net_sizes(cfg)
    kind = config.encoder_kind(cfg, spec)
    wm = nets.WorldModel(shape, spec.obs_high, kind, sizes, 3, cfg.unimix, clip_actions=False)
    emb = wm.encoder(torch.zeros(2, *shape, dtype=torch.uint8))
    assert emb.shape == (2, wm.encoder.out_dim)
    assert wm.decoder(torch.zeros(2, wm.feat_dim)).shape == (2, *shape)


def test_updates_per_env_step_follow_the_train_ratio():
    spec = EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 2)
    cfg = dreamer.Config(size="tiny", stoch=4, classes=4, train_ratio=1024, learning_starts=100)
    agent = dreamer.Agent(cfg, spec, 1, torch.device("cpu"), seed=0)
    assert agent.updates_per_step() == 1.0
    assert agent.updates_due(99) == 0 and agent.updates_due(150) == 50


# ------------------------------------------------------------------------ evaluation video


def test_observation_image_draws_the_newest_frame_of_each_kind():
    u8 = np.dtype(np.uint8)
    rgb = EnvSpec((6, 1, 2), u8, True, 2, (3, 1, 2), True, 2, obs_high=255.0)
    x = np.zeros((6, 1, 2), np.float32)
    x[3:, 0, 1] = [1.0, 0.5, 0.0]  # newest frame, right pixel
    x[:3] = 1.0  # the older frame is ignored
    np.testing.assert_array_equal(observation_image(x, rgb)[0], [[0, 0, 0], [255, 127, 0]])
    grey = EnvSpec((1, 1, 1), u8, True, 1, (1, 1, 1), True, 2, obs_high=255.0)
    assert observation_image(np.full((1, 1, 1), 0.5, np.float32), grey).tolist() == [[[127] * 3]]
    grid = EnvSpec((4, 1, 1), u8, True, 1, (4, 1, 1), True, 3, palette=PALETTE)
    x = np.array([1.0, 0.0, 0.0, 0.0], np.float32).reshape(4, 1, 1)
    np.testing.assert_array_equal(observation_image(x, grid)[0, 0], grid.palette[0])


# the colour of each binary channel, as a MinAtar env gives it in its spec
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def _grid_agent() -> dreamer.Agent:
    spec = EnvSpec((4, 10, 10), np.dtype(np.uint8), True, 1, (4, 10, 10), True, 3,
                   palette=PALETTE)  # fmt: skip
    cfg = dreamer.Config(size="tiny", stoch=4, classes=4, video_open_loop=3)
    return dreamer.Agent(cfg, spec, 1, torch.device("cpu"), seed=0)


def test_open_loop_video_resyncs_to_the_posterior_and_otherwise_dreams():
    agent = _grid_agent()
    video = agent.video_panels()
    rng, state = np.random.default_rng(0), None

    def model_image(stoch, deter):
        with torch.no_grad():
            return observation_image(agent.wm.decoder(torch.cat([deter, stoch], -1))[0].numpy(),
                                     agent.spec)  # fmt: skip

    synced = []
    for t in range(7):
        obs = rng.integers(0, 2, (1, 4, 10, 10)).astype(np.uint8)
        first = np.array([t in (0, 5)])  # a new game at step 5
        last_action = None if state is None else state["action"]
        _, state = agent.act(obs, state, first, explore=False, rng=rng)
        dream = (video.stoch, video.deter)
        noise = torch.Generator().set_state(video.gen.get_state())
        panel = video.panel(obs[0], state, bool(first[0]))
        assert panel.shape == (10, 30, 3) and panel.dtype == np.uint8
        np.testing.assert_array_equal(panel[:, :10], observation_image(obs[0] / 1.0, agent.spec))
        synced.append(video.since_sync == 1)
        if synced[-1]:  # the decoded posterior
            expected = model_image(state["stoch"], state["deter"])
        else:  # the prior alone, one step on from the last image with the action really taken
            u = torch.rand((1, agent.cfg.stoch), generator=noise)
            with torch.no_grad():
                expected = model_image(*agent.wm.rssm.img_step(*dream, last_action, u))
        np.testing.assert_array_equal(panel[:, 10:20], expected)
    # horizon 3: synced at 0 and 3, and again at the game start at 5
    assert synced == [True, False, False, True, False, True, False]


def test_evaluation_video_shows_the_panel_beside_the_frame(tmp_path):
    import imageio.v2 as imageio

    from frugal.config import EnvConfig
    from frugal.evaluation import evaluate

    agent = _grid_agent()
    path = tmp_path / "eval.mp4"
    evaluate(agent, EnvConfig(id="minatar/breakout"), episodes=1, num_envs=1, seed=0, video=path)
    frame = imageio.get_reader(path).get_data(0)
    assert frame.shape == (160, 160 + 3 * 160, 3)  # MinAtar renders 160x160; panels 10 -> 160
    # vector observations have no picture to predict
    spec = EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 2)
    cartpole = dreamer.Agent(dreamer.Config(size="tiny", stoch=4, classes=4), spec, 1,
                             torch.device("cpu"), seed=0)  # fmt: skip
    assert cartpole.video_panels() is None


# --------------------------------------------------------------------------------- learning


def _fill(agent: dreamer.Agent, steps: int, continuous: bool) -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(1, 3)).astype(np.float32)
    for t in range(steps):
        nxt = rng.normal(size=(1, 3)).astype(np.float32)
        action = rng.uniform(-2, 2, (1, 1)).astype(np.float32) if continuous else np.array([1])
        done = np.array([t % 20 == 19])
        agent.observe(
            Transition(obs, action, rng.normal(size=1).astype(np.float32), done,
                               np.zeros(1, bool), done, nxt, nxt)
        )  # fmt: skip
        obs = nxt


def test_continuous_actor_learns_through_the_dynamics():
    """Backprop mode: with no entropy bonus the actor's only gradient comes through the
    imagined actions, the RSSM and the reward and critic heads."""
    spec = EnvSpec((3,), np.dtype(np.float32), False, 1, (3,), False, 1,
                           np.array([-2.0], np.float32), np.array([2.0], np.float32))  # fmt: skip
    cfg = dreamer.Config(size="tiny", stoch=4, classes=4, batch_size=4, batch_length=8,
                         actor_entropy=0.0, replay_size=1000)  # fmt: skip
    agent = dreamer.Agent(cfg, spec, 1, torch.device("cpu"), seed=0)
    assert agent.backprop
    _fill(agent, 64, continuous=True)
    torch.nn.init.normal_(agent.wm.reward[-1].weight)  # give rewards a slope to climb
    batch = agent._batch()
    _, feat, _, _ = losses.world_model_loss(agent, batch)
    actor_loss, _, _ = losses.behaviour_losses(agent, feat.detach(), batch["terminal"])
    grads = torch.autograd.grad(actor_loss, list(agent.actor.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # the replay keeps actions in [-1, 1] whatever the env's bounds
    assert np.abs(agent.replay.action[0, :64]).max() <= 1.0


def test_acting_draws_only_from_the_given_rng():
    spec = EnvSpec((3,), np.dtype(np.float32), False, 1, (3,), True, 4)
    agent = dreamer.Agent(dreamer.Config(size="tiny", stoch=4, classes=4), spec, 2,
                          torch.device("cpu"), seed=0)  # fmt: skip
    obs, first = np.ones((2, 3), np.float32), np.ones(2, bool)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    runs = []
    for _ in range(2):
        rng, state, actions = np.random.default_rng(7), None, []
        for _ in range(5):
            action, state = agent.act(obs, state, first, explore=True, rng=rng)
            actions.append(action.tolist())
            first = np.zeros(2, bool)
        runs.append(actions)
        first = np.ones(2, bool)
    assert runs[0] == runs[1]
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched


class _EndEarly:
    """A 10-step game: reward 1 per step, but action 1 ends it at once. Observations are noise,
    so only the world model's continue flag can tell the actor what action 1 does. A random
    policy scores about 2; the best policy 10."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.t = 0

    def obs(self) -> np.ndarray:
        return self.rng.normal(size=(1, 2)).astype(np.float32)

    def step(self, action: int):
        self.t += 1
        terminated = action == 1
        truncated = self.t >= 10 and not terminated
        if terminated or truncated:
            self.t = 0
        return 1.0, terminated, truncated


@pytest.mark.learning
def test_actor_learns_to_avoid_a_predicted_termination():
    """World model (continue head), critic and REINFORCE actor together, in well under a
    minute: the agent must learn to keep the game going."""
    torch.set_num_threads(1)
    spec = EnvSpec((2,), np.dtype(np.float32), False, 1, (2,), True, 2)
    cfg = dreamer.Config(size="tiny", stoch=4, classes=4, batch_size=8, batch_length=16,
                         train_ratio=32, learning_starts=256, replay_size=10_000,
                         model_lr=3e-4, actor_lr=3e-4, critic_lr=3e-4)  # fmt: skip
    agent = dreamer.Agent(cfg, spec, 1, torch.device("cpu"), seed=0)
    env, rng = _EndEarly(0), np.random.default_rng(1)
    obs, first, state = env.obs(), np.ones(1, bool), agent.initial_act_state(1)
    returns, episode = [], 0.0
    for step in range(1, 1_400):
        action, state = agent.act(obs, state, first, explore=True, rng=rng)
        reward, terminated, truncated = env.step(int(action[0]))
        episode += reward
        nxt, done = env.obs(), terminated or truncated
        agent.observe(
            Transition(obs, action, np.array([reward], np.float32), np.array([terminated]),
                               np.array([truncated]), np.array([done]), nxt, nxt)
        )  # fmt: skip
        obs, first = nxt, np.array([done])
        if done:
            returns.append(episode)
            episode = 0.0
        for _ in range(agent.updates_due(step) - agent.updates):
            agent.update()
    assert agent.updates > 100
    assert np.mean(returns[-20:]) >= 9.0, f"last returns {returns[-20:]} (random play scores ~2)"


@pytest.mark.learning
def test_cartpole_learns(tmp_path):
    """The whole agent on the runner, seed 0: 1,500 updates of 8x32 sequences (train ratio 256)
    with actor and critic lr 3e-4 and discount 0.99 (a 100-step horizon) lift greedy CartPole
    evaluation from ~15 to ~200 within 2,000 env steps (seeds 1 and 2 reach 64 and 105). About
    two CPU-minutes; fails if learning breaks."""
    import frugal

    torch.set_num_threads(1)
    run = frugal.train(
        "dreamerv3",
        "gym/CartPole-v1",
        steps=2_000,
        seed=0,
        run_dir=tmp_path / "r",
        overrides=[
            "run.progress=false",
            "run.eval_every=0",
            "run.eval_episodes=5",
            "run.checkpoint_every=0",
            "agent.batch_size=8",
            "agent.batch_length=32",
            "agent.imag_starts=64",
            "agent.train_ratio=256",
            "agent.learning_starts=500",
            "agent.actor_lr=3e-4",
            "agent.critic_lr=3e-4",
            "agent.discount=0.99",
        ],
    )
    final = [p["eval/return_mean"] for p in run.metrics if "eval/return_mean" in p][-1]
    assert final >= 100, f"DreamerV3 did not learn CartPole: eval return {final:.1f}"
