"""DQN updates/s (on the CPU, or --device cuda) for the Atari network (Nature CNN, dueling,
84x84x4), batch 32.

    python benchmarks/dqn_update_speed.py [--updates 200] [--rounds 3] [--variants fp32,bf16]

Each update samples from a replay of 20k stored Atari frames (stacks rebuilt at sample time),
runs double-DQN targets and one Adam step. Variants: fp32, channels_last, bf16 autocast, both;
measured in alternation, medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from machine import describe

from frugal.agents import dqn
from frugal.agents.base import Transition
from frugal.envs.base import EnvSpec

SPEC = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 4, (1, 84, 84), True, 4, obs_high=255.0)
VARIANTS = {
    "fp32": dict(precision="fp32"),
    "channels_last": dict(precision="fp32", channels_last=True),
    "bf16": dict(precision="bf16"),
    "bf16 + channels_last": dict(precision="bf16", channels_last=True),
}


def make_agent(device: torch.device, **kw) -> dqn.Agent:
    cfg = dqn.Config(**{**dqn.PRESETS["atari"].agent, "buffer_size": 20_000, **kw})
    agent = dqn.Agent(cfg, SPEC, 1, device, seed=0)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    zeros = np.zeros(1)
    for t in range(20_000):
        nxt = np.roll(obs, -1, axis=1)
        nxt[:, -1] = rng.integers(0, 256, (1, 84, 84), dtype=np.uint8)
        done = np.array([t % 500 == 499])
        agent.observe(
            Transition(
                obs,
                rng.integers(0, 4, 1),
                zeros.astype(np.float32),
                done,
                zeros.astype(bool),
                done,
                nxt,
                nxt,
            )
        )
        obs = nxt
    return agent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = args.variants.split(",")
    agents = {name: make_agent(device, **VARIANTS[name]) for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    for agent in agents.values():  # warm-up
        for _ in range(10):
            agent.update()
    for _ in range(args.rounds):
        for name, agent in agents.items():
            start = time.perf_counter()
            for _ in range(args.updates):
                agent.update()
            rates[name].append(args.updates / (time.perf_counter() - start))
    sample = next(iter(agents.values())).replay
    start = time.perf_counter()
    for _ in range(args.updates):
        sample.sample(32, np.random.default_rng(0))
    sample_ms = (time.perf_counter() - start) / args.updates * 1e3
    print(describe(), f"torch threads {torch.get_num_threads()}")
    print(
        "Atari DQN (Nature CNN, dueling, double, 3-step), batch 32, "
        f"{args.updates} updates x {args.rounds} rounds"
    )
    for name, values in rates.items():
        print(f"{name:<22} {statistics.median(values):8.1f} updates/s")
    print(f"replay sample (batch 32, stacks rebuilt) {sample_ms:.2f} ms")


if __name__ == "__main__":
    main()
