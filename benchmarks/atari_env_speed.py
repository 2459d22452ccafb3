"""Atari env steps/s through frugal's env vs ale-py's AtariVectorEnv with the same settings.

    python benchmarks/atari_env_speed.py [--envs 8] [--steps 2000] [--rounds 5]

Both play random actions on Breakout under the atari100k protocol (84x84 gray, 4-stack, frame
skip 4, same-step autoreset, raw rewards); measurements alternate and the medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from machine import describe

from frugal.config import EnvConfig
from frugal.envs import make_env, resolve


def raw_env(config: EnvConfig, num_envs: int):
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        "breakout",
        num_envs,
        num_threads=num_envs,
        autoreset_mode="SameStep",
        max_num_frames_per_episode=config.max_episode_frames,
        repeat_action_probability=config.sticky_actions,
        img_height=84,
        img_width=84,
        grayscale=True,
        stack_num=4,
        frameskip=config.frame_skip,
        maxpool=True,
        noop_max=config.noop_max,
        reward_clipping=False,
        use_fire_reset=config.fire_reset,
    )


def steps_per_second(step, num_envs: int, steps: int, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for t in range(steps):
        step(actions[t])
    return steps * num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    config = resolve(EnvConfig(id="atari/Breakout", num_envs=args.envs))
    ours, raw = make_env(config, args.envs), raw_env(config, args.envs)
    ours.reset(seed=0)
    raw.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 4, (args.steps, args.envs))
    frugal_sps, raw_sps = [], []
    for _ in range(args.rounds):
        frugal_sps.append(steps_per_second(ours.step, args.envs, args.steps, actions))
        raw_sps.append(
            steps_per_second(lambda a: raw.step(a.astype(np.int32)), args.envs, args.steps, actions)
        )
    f, r = statistics.median(frugal_sps), statistics.median(raw_sps)
    print(describe())
    print(f"Breakout, {args.envs} envs, {args.steps} steps x {args.rounds} rounds (medians)")
    print(f"frugal env      {f:10,.0f} env steps/s")
    print(f"AtariVectorEnv  {r:10,.0f} env steps/s")
    print(f"ratio           {f / r:10.3f}")


if __name__ == "__main__":
    main()
