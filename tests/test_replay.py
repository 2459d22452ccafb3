"""Replay streams: frame stacks rebuilt exactly, n-step returns across ends, priorities."""

from __future__ import annotations

import numpy as np
import pytest

from frugal.replay.streams import StreamReplay
from frugal.replay.sum_tree import SumTree

DISCOUNT = 0.5


def _vector_replay(n_step=3, capacity=100, num_envs=1, **kw):
    return StreamReplay(
        capacity, num_envs, (1,), np.dtype(np.float32), 1, n_step=n_step, discount=DISCOUNT, **kw
    )


def _add(replay, obs, reward, terminated=False, truncated=False, next_obs=None, final=None):
    """One step of a single-env stream with scalar observations."""
    reset = terminated or truncated
    next_obs = obs + 1 if next_obs is None else next_obs
    final = next_obs if final is None else final
    arr = lambda x, dt=np.float32: np.array([x], dtype=dt)  # noqa: E731
    replay.add(
        arr([obs]),
        arr(0, np.int64),
        arr(reward),
        arr(terminated, bool),
        arr(truncated, bool),
        arr(reset, bool),
        arr([next_obs]),
        arr([final]),
    )


def _batch_at(replay, row):
    return replay._gather(np.array([row]), np.array([0]), np.ones(1, np.float32), np.zeros(1))


def test_n_step_return_without_episode_end_bootstraps_after_n_steps():
    replay = _vector_replay()
    for t in range(6):
        _add(replay, obs=t, reward=t + 1)
    batch = _batch_at(replay, 1)
    assert batch.returns[0] == pytest.approx(2 + DISCOUNT * 3 + DISCOUNT**2 * 4)
    assert batch.discount[0] == pytest.approx(DISCOUNT**3)
    assert batch.obs[0, 0] == 1 and batch.next_obs[0, 0] == 4


def test_n_step_return_stops_at_terminal_without_bootstrap():
    replay = _vector_replay()
    _add(replay, 0, 1.0)
    _add(replay, 1, 2.0, terminated=True, next_obs=100.0, final=2.0)  # env resets to obs 100
    for t in range(4):
        _add(replay, 100 + t, 10.0)
    batch = _batch_at(replay, 0)
    assert batch.returns[0] == pytest.approx(1 + DISCOUNT * 2)
    assert batch.discount[0] == 0.0


def test_n_step_return_at_truncation_bootstraps_from_final_observation():
    replay = _vector_replay()
    _add(replay, 0, 1.0)
    _add(replay, 1, 2.0, truncated=True, next_obs=100.0, final=7.0)
    for t in range(4):
        _add(replay, 100 + t, 10.0)
    batch = _batch_at(replay, 0)
    assert batch.returns[0] == pytest.approx(1 + DISCOUNT * 2)
    assert batch.discount[0] == pytest.approx(DISCOUNT**2)
    assert batch.next_obs[0, 0] == 7.0, "bootstrap from the real last observation, not the reset"
    first_of_next_episode = _batch_at(replay, 2)
    assert first_of_next_episode.obs[0, 0] == 100.0


def test_frame_stacks_rebuilt_with_zeros_before_the_first_frame_of_a_game():
    replay = StreamReplay(100, 1, (1, 2, 2), np.dtype(np.uint8), 3, n_step=1, discount=DISCOUNT)

    def obs(latest):  # the replay reads only the newest frame of an observation
        o = np.zeros((1, 3, 2, 2), dtype=np.uint8)
        o[0, 2] = latest
        return o

    zero = np.zeros(1)
    # game 1 shows frames 1, 2 and ends; game 2 shows 3, 4, 5
    for frame, nxt, done in [(1, 2, False), (2, 3, True), (3, 4, False), (4, 5, False)]:
        flag = np.array([done])
        replay.add(
            obs(frame),
            zero.astype(np.int64),
            zero.astype(np.float32),
            flag,
            np.array([False]),
            flag,
            obs(nxt),
            obs(nxt),
        )
    stacks = replay.stack(np.arange(5), np.zeros(5, dtype=np.int64))[:, :, 0, 0]
    assert stacks.tolist() == [[0, 0, 1], [0, 1, 2], [0, 0, 3], [0, 3, 4], [3, 4, 5]]


def test_atari_sized_transition_costs_under_8_kb():
    replay = StreamReplay(100_000, 1, (1, 84, 84), np.dtype(np.uint8), 4, n_step=3)
    arrays = [
        replay.frames,
        replay.first,
        replay.actions,
        replay.rewards,
        replay.terminated,
        replay.truncated,
    ]
    per_transition = sum(a.nbytes for a in arrays) / 100_000
    assert per_transition <= 8 * 1024


def test_sum_tree_sampling_follows_masses():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([0.0, 1.0, 0.0, 3.0, 0.0]))
    assert tree.total == 4.0
    assert tree.find(np.array([0.0, 0.99, 1.0, 3.99])).tolist() == [1, 1, 3, 3]
    draws = tree.find(np.random.default_rng(0).random(40_000) * tree.total)
    assert np.mean(draws == 3) == pytest.approx(0.75, abs=0.01)
    restored = SumTree(5)
    restored.load_state_dict(tree.state_dict())
    np.testing.assert_array_equal(restored.tree, tree.tree)


def test_prioritized_replay_weights_and_new_samples_at_max_priority():
    replay = _vector_replay(n_step=1, prioritized=True, alpha=1.0)
    for t in range(5):
        _add(replay, t, 0.0)
    lo, hi = replay.sampleable_rows()
    assert (lo, hi) == (0, 4)
    masses = replay.tree.get(np.arange(5))
    assert masses.tolist() == [1.0] * 5, "new transitions enter at the max priority"
    replay.update_priorities(np.array([0, 1]), np.array([3.0, 0.0]))
    assert replay.max_priority == pytest.approx(3.0 + 1e-6)
    batch = replay.sample(2000, np.random.default_rng(0), beta=1.0)
    share = np.mean(batch.index == 0)
    assert share == pytest.approx(3 / (3 + 1e-6 + 3), abs=0.03)
    # IS weights (N P(i))^-beta normalised by the batch max: lowest for the most likely row
    assert batch.weights[batch.index == 0].max() < batch.weights.max()


def test_replay_state_round_trip_is_exact():
    replay = _vector_replay(prioritized=True)
    for t in range(7):
        _add(replay, t, float(t), truncated=(t == 3), next_obs=50.0 if t == 3 else None)
    copy = _vector_replay(prioritized=True)
    copy.load_state_dict(replay.state_dict())
    a = replay.sample(16, np.random.default_rng(1))
    b = copy.sample(16, np.random.default_rng(1))
    for name in ("obs", "returns", "discount", "next_obs", "index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
