"""Replay bytes per stored Atari transition at 100k transitions.

    python benchmarks/replay_memory.py [--transitions 100000] [--envs 1]

Fills frugal's replay with 84x84 uint8 frames (4-stack rebuilt at sample time) and reports the
bytes held by its arrays per transition, and the process's resident-memory growth, next to the
float32 stacked-state design (state and next state stored per transition).
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
from machine import describe

from frugal.replay.streams import StreamReplay


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--envs", type=int, default=1)
    args = parser.parse_args()
    n, envs = args.transitions, args.envs
    before = rss_mib()
    replay = StreamReplay(n, envs, (1, 84, 84), np.dtype(np.uint8), 4, n_step=3, prioritized=True)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (envs, 4, 84, 84), dtype=np.uint8)
    zeros = np.zeros(envs)
    for t in range(n // envs):
        nxt = np.roll(obs, -1, axis=1)
        nxt[:, -1] = rng.integers(0, 256, (envs, 84, 84), dtype=np.uint8)
        done = np.full(envs, t % 1000 == 999)
        replay.add(
            obs,
            zeros.astype(np.int64),
            zeros.astype(np.float32),
            done,
            zeros.astype(bool),
            done,
            nxt,
            nxt,
        )
        obs = nxt
    arrays = [
        replay.frames,
        replay.first,
        replay.actions,
        replay.rewards,
        replay.terminated,
        replay.truncated,
        replay.tree.tree,
    ]
    held = sum(a.nbytes for a in arrays)
    grown = (rss_mib() - before) * 2**20
    stacked = 2 * 6 * 84 * 84 * 4  # the reference write-up: float32 6-frame state + next state
    print(describe())
    print(f"{n:,} transitions in {envs} stream(s), 84x84 gray, 4-stack, prioritized")
    print(f"replay arrays       {held / n:8,.0f} bytes/transition ({held / 2**20:,.0f} MiB)")
    print(f"RSS growth          {grown / n:8,.0f} bytes/transition")
    print(f"float32 6-stacks    {stacked:8,.0f} bytes/transition ({stacked * n / 2**30:,.1f} GiB)")
    print(
        f"peak RSS            {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
