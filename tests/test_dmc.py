"""DeepMind Control envs (`dmc/<domain>-<task>`): observation order, the protocol (action
repeat, frame-counted episodes and env steps), exact state, pixels and the one-line errors."""

from __future__ import annotations

import ctypes.util
import dataclasses
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import frugal
from frugal.config import EnvConfig
from frugal.envs import make_env
from frugal.errors import FrugalError

dmc_suite = pytest.importorskip("frugal.envs.dmc_suite")
pytest.importorskip("dm_control", reason="dm-control is not installed: pip install 'frugal[dmc]'")
from frugal.envs.dmc_suite import flatten_observation, load_suite  # noqa: E402

CARTPOLE = "dmc/cartpole-swingup"
PPO_FAST = ["agent.num_steps=32", "agent.num_minibatches=2", "agent.update_epochs=2"]


def _config(env_id: str = CARTPOLE, **settings) -> EnvConfig:
    return dataclasses.replace(EnvConfig(id=env_id), **settings)


def _renders() -> bool:
    """Whether this machine can render MuJoCo headless (the pixel tests skip where not)."""
    try:
        make_env(_config(obs="pixels", obs_size=8, frame_stack=1), 1).close()
    except FrugalError:
        return False
    return True


needs_renderer = pytest.mark.skipif(not _renders(), reason="no OpenGL backend renders here")


# ------------------------------------------------------------------------------- observations


def test_observations_flatten_in_the_task_order_then_sorted_for_plain_dicts():
    ordered = OrderedDict(
        [("velocity", np.array([1.0, 2.0])), ("position", np.array([[3, 4], [5, 6]])),
         ("height", np.float64(7.0))]
    )  # fmt: skip
    flat = flatten_observation(ordered)
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(flatten_observation(dict(ordered)), [7, 3, 4, 5, 6, 1, 2])


def test_cartpole_observation_is_position_then_velocity_as_dm_control_gives_them():
    env = make_env(_config(), 2)
    obs = env.reset(seed=5)
    suite = load_suite()
    for i in range(2):
        reference = suite.load("cartpole", "swingup", task_kwargs={"random": 5 + i}).reset()
        assert list(reference.observation) == ["position", "velocity"]
        expected = np.concatenate(
            [reference.observation["position"], reference.observation["velocity"]]
        ).astype(np.float32)
        np.testing.assert_array_equal(obs[i], expected)
    assert env.spec.obs_shape == (5,) and env.spec.suite == "dmc"
    assert env.spec.frames_per_step == 2 and not env.spec.discrete
    np.testing.assert_array_equal(env.spec.action_low, [-1.0])
    env.close()


# ----------------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("episode_frames, agent_steps", [(10, 5), (5, 3)])
def test_action_repeat_sums_frame_rewards_and_time_limit_truncates(episode_frames, agent_steps):
    env = make_env(_config(max_episode_frames=episode_frames), 1)
    env.reset(seed=1)
    reference = load_suite().load(
        "cartpole", "swingup", task_kwargs={"random": 1, "time_limit": float("inf")}
    )
    reference.reset()
    action = np.array([[0.7]], np.float32)
    for t in range(agent_steps):
        result = env.step(action)
        frames = [reference.step(action[0]) for _ in range(min(2, episode_frames - 2 * t))]
        assert result.reward[0] == np.float32(sum(f.reward for f in frames))  # summed, then f32
        last = t == agent_steps - 1
        assert result.truncated[0] == last and result.reset[0] == last
        assert not result.terminated[0], "a DMC episode ends by time limit: truncated"
        final = flatten_observation(frames[-1].observation)
        np.testing.assert_array_equal(result.final_obs[0], final)
    assert not np.array_equal(result.obs[0], result.final_obs[0]), "obs is the next episode's"


def test_actions_outside_unit_bounds_are_clipped():
    a, b = make_env(_config(), 1), make_env(_config(), 1)
    a.reset(seed=0), b.reset(seed=0)
    np.testing.assert_array_equal(a.step(np.array([[5.0]])).obs, b.step(np.array([[1.0]])).obs)


def test_dmc_presets_fit_dmc_tasks():
    """dmc is the default preset of these agents on dmc tasks; each resolves and passes its
    agent's checks against a dmc spec; PPO's also
    acts (EfficientZero and DreamerV3 at these sizes take minutes on a CPU: their short runs
    are recorded in BENCHMARKS.md)."""
    from frugal.agents.dreamer.config import validate as dreamer_checks
    from frugal.agents.efficientzero.config import validate as efficientzero_checks
    from frugal.agents.ppo.config import check as ppo_checks
    from frugal.api import build_config
    from frugal.runner import build_agent

    env = make_env(_config(), 2)
    checks = {
        "efficientzero": lambda cfg: efficientzero_checks(cfg, env.spec),
        "dreamerv3": lambda cfg: dreamer_checks(cfg, env.spec, 2),
        "ppo": lambda cfg: ppo_checks(cfg, env.spec, 2),
    }
    for algo, check in checks.items():
        config = build_config(algo, CARTPOLE)
        assert config.preset == "dmc" and config.env.frame_skip == 2
        check(config.agent)
    agent = build_agent(build_config("ppo", CARTPOLE), env.spec, 2)
    actions, _ = agent.act(
        env.reset(seed=0), None, np.ones(2, bool), explore=True, rng=np.random.default_rng(0)
    )
    assert actions.shape == (2, 1)
    with pytest.raises(FrugalError, match="another env suite"):
        build_config("ppo", "gym/Pendulum-v1", preset="dmc")
    env.close()


# ------------------------------------------------------------------------------ exact state


@pytest.mark.parametrize("task", ["walker-walk", "reacher-easy"])
def test_state_restored_into_a_fresh_env_continues_exactly(task):
    """walker has contacts (the solver's warm start matters); reacher moves its target in the
    model at each episode start (a fresh env's target is elsewhere)."""
    config = _config(f"dmc/{task}", max_episode_frames=30)
    rng = np.random.default_rng(0)
    original = make_env(config, 2)
    original.reset(seed=3)
    dims = original.spec.num_actions
    for _ in range(4):
        original.step(rng.uniform(-1, 1, (2, dims)))
    state = json.loads(json.dumps(original.get_state()))  # JSON values only
    restored = make_env(config, 2)
    restored.reset(seed=99)
    restored.set_state(state)
    for _ in range(20):  # across the end of the 30-frame episode
        actions = rng.uniform(-1, 1, (2, dims))
        a, b = original.step(actions), restored.step(actions)
        for field in ("obs", "reward", "terminated", "truncated", "final_obs"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_ppo_on_dmc_counts_frames_and_resumes_exactly(tmp_path):
    """--steps counts env frames (agent steps x action repeat) in training, logs and updates;
    a run checkpointed halfway and resumed logs what the uninterrupted run logs."""
    torch.set_num_threads(1)
    overrides = [
        "run.progress=false", "env.num_envs=2", "env.max_episode_frames=40",
        "run.eval_episodes=2", "run.eval_envs=2", "run.eval_every=256", "run.log_every=128",
        "run.checkpoint_every=256", *PPO_FAST,
    ]  # fmt: skip
    kwargs = dict(seed=2, overrides=overrides)
    straight = frugal.train("ppo", CARTPOLE, steps=512, run_dir=tmp_path / "a", **kwargs)
    first = frugal.train("ppo", CARTPOLE, steps=256, run_dir=tmp_path / "b", **kwargs)
    resumed = frugal.resume(first.dir, steps=512)
    volatile = ("wall_s",)
    a = [{k: v for k, v in p.items() if k not in volatile and "perf/" not in k}
         for p in straight.metrics]  # fmt: skip
    b = [{k: v for k, v in p.items() if k not in volatile and "perf/" not in k}
         for p in resumed.metrics]  # fmt: skip
    assert a == b, "a resumed dmc run must log exactly what the uninterrupted run logs"
    assert [p["env_step"] for p in a] == [128, 256, 384, 512]
    # 512 frames = 256 agent steps = 128 per env: 4 rollouts of 32 agent steps
    assert a[-1]["update"] == 4
    assert a[-1]["train/episode_length"] == 40, "episode lengths are counted in frames"
    assert a[-1]["eval/length_mean"] == 40


# -------------------------------------------------------------------------- pixels and errors


@needs_renderer
def test_pixel_observations_stack_rgb_frames_with_zeros_before_the_first():
    env = make_env(_config(obs="pixels", obs_size=32, frame_stack=2), 1)
    assert env.spec.obs_shape == (6, 32, 32) and env.spec.frame_shape == (3, 32, 32)
    assert env.spec.pixels and env.spec.obs_dtype == np.uint8 and env.spec.frame_stack == 2
    first = env.reset(seed=0)
    assert not first[0, :3].any() and first[0, 3:].any()
    step = env.step(np.zeros((1, 1)))
    np.testing.assert_array_equal(step.obs[0, :3], first[0, 3:])
    env.close()


@needs_renderer
def test_pixel_state_restores_the_terrain_a_renderer_already_holds():
    config = _config("dmc/quadruped-escape", obs="pixels", obs_size=32, frame_stack=1)
    original, restored = make_env(config, 1), make_env(config, 1)
    original.reset(seed=0)
    restored.reset(seed=1)  # another random terrain, already uploaded to its renderer
    restored.set_state(json.loads(json.dumps(original.get_state())))
    action = np.zeros((1, original.spec.num_actions))
    np.testing.assert_array_equal(original.step(action).obs, restored.step(action).obs)


@needs_renderer
def test_pixel_run_trains_and_writes_an_eval_video(tmp_path):
    import imageio.v2 as imageio

    torch.set_num_threads(1)
    run = frugal.train(
        "ppo",
        CARTPOLE,
        steps=32,
        run_dir=tmp_path / "r",
        overrides=[
            "env.obs=pixels", "env.max_episode_frames=16", "run.progress=false",
            "run.eval_every=0", "run.eval_episodes=1", "agent.num_steps=16",
            "agent.num_minibatches=2", "agent.update_epochs=1", "agent.norm_obs=false",
        ],
    )  # fmt: skip
    assert run.config.env.obs_size == 64 and run.config.env.frame_stack == 3  # the dmc preset
    result = run.evaluate(episodes=1, video=True)
    frames = imageio.mimread(Path(result["video"]), memtest=False)
    assert len(frames) >= 8 and frames[0].shape[:2] == (256, 256)


def _train_pixels(gl: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "frugal", "train", "ppo", "--env", CARTPOLE, "--steps", "64",
           "env.obs=pixels"]  # fmt: skip
    env = {**os.environ, "MUJOCO_GL": gl}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_pixels_without_a_renderer_end_in_one_line_naming_what_to_install(tmp_path):
    proc = _train_pixels("disable")  # dm-control's own "no renderer"
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "libosmesa6" in lines[0] and "EGL" in lines[0], proc.stderr


def test_a_named_gl_backend_that_is_absent_ends_in_one_line():
    absent = [b for b, lib in (("osmesa", "OSMesa"), ("egl", "EGL"))
              if not ctypes.util.find_library(lib)]  # fmt: skip
    if not absent:
        pytest.skip("both OSMesa and EGL are installed here")
    proc = _train_pixels(absent[0])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"MUJOCO_GL={absent[0]}" in lines[0], proc.stderr


def test_missing_dm_control_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)  # as if not installed
    with pytest.raises(FrugalError, match=r"pip install 'frugal\[dmc\]'"):
        load_suite()


def test_pixel_settings_of_dmc_are_refused_elsewhere():
    with pytest.raises(FrugalError, match="env.obs and env.camera"):
        make_env(_config("gym/Pendulum-v1", obs="pixels"), 1)


def test_unknown_task_lists_the_tasks():
    with pytest.raises(FrugalError, match="cartpole-swingup"):
        make_env(_config("dmc/cartpole-swingupp"), 1)
