"""DeepMind Control env frames/s through frugal's env vs dm-control stepped directly.

    python benchmarks/dmc_env_speed.py [--tasks cartpole-swingup walker-walk] [--envs 4]
                                       [--steps 500] [--rounds 3] [--pixels]

Both play the same uniform random actions under the dmc protocol (action repeat 2); frugal's env
also flattens observations, sums rewards and resets at the 1,000-frame time limit. Rates are
env frames (physics control steps) per second, summed over the envs; measurements alternate and
the medians are reported. `--pixels` adds frugal's 64x64 rendered observations (no raw
counterpart: the renderer dominates).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
from machine import describe

from frugal.config import EnvConfig
from frugal.envs import make_env
from frugal.envs.dmc_suite import load_suite

REPEAT = 2


def frugal_rate(env, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return actions.size // actions.shape[-1] * REPEAT / (time.perf_counter() - start)


def raw_rate(envs: list, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        for env, action in zip(envs, a, strict=True):
            for _ in range(REPEAT):
                if env.step(action).last():
                    env.reset()
    return actions.size // actions.shape[-1] * REPEAT / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["cartpole-swingup", "walker-walk"])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500, help="agent steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pixels", action="store_true")
    args = parser.parse_args()
    suite = load_suite()
    print(describe())
    print(f"{args.envs} envs, {args.steps} agent steps x {args.rounds} rounds, repeat {REPEAT}")
    for task in args.tasks:
        config = EnvConfig(id=f"dmc/{task}", num_envs=args.envs)
        ours = make_env(config, args.envs)
        ours.reset(seed=0)
        domain, name = task.split("-", 1)
        raw = [suite.load(domain, name, task_kwargs={"random": i}) for i in range(args.envs)]
        for env in raw:
            env.reset()
        dims = ours.spec.num_actions
        actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, args.envs, dims))
        ours_fps, raw_fps = [], []
        for _ in range(args.rounds):
            ours_fps.append(frugal_rate(ours, actions))
            raw_fps.append(raw_rate(raw, actions))
        f, r = statistics.median(ours_fps), statistics.median(raw_fps)
        print(f"{task:<20} frugal {f:9,.0f} frames/s   dm-control {r:9,.0f} frames/s   "
              f"ratio {f / r:.3f}")  # fmt: skip
        ours.close()
        if args.pixels:
            pixels = make_env(dataclasses.replace(config, obs="pixels", obs_size=64), args.envs)
            pixels.reset(seed=0)
            rate = statistics.median(frugal_rate(pixels, actions) for _ in range(args.rounds))
            print(f"{task:<20} frugal pixels 64x64 {rate:9,.0f} frames/s")
            pixels.close()


if __name__ == "__main__":
    main()
