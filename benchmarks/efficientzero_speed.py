"""EfficientZero throughput: env steps/s while acting (one batched search over all envs per
step), training updates/s at a given batch, time per reanalysis batch, and where the time goes
(tree search kernels vs network calls).

    python benchmarks/efficientzero_speed.py --env atari/Breakout --preset atari100k
    python benchmarks/efficientzero_speed.py --env gym/CartPole-v1 --batch 256

Prints one table and the machine it ran on. The replay is filled by acting, so the figures
include real env stepping; `--threads` sets torch's intra-op threads (1 by default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from machine import describe  # benchmarks/machine.py

from frugal.agents.base import Transition
from frugal.agents.efficientzero import Agent, v1, v2
from frugal.api import build_config
from frugal.envs import make_env
from frugal.runner import resolve_device


class NetTimer:
    """Times the search calls (`frugal.search.puct` for V1, `gumbel` for V2) and the network
    calls inside them (the agent's recurrent_fn): tree work = search time - recurrent time;
    network = the rest of the time."""

    def __init__(self, agent: Agent):
        self.seconds = 0.0
        self.calls = 0
        self.search_seconds = 0.0
        model = agent.version.model
        make = model.recurrent_fn

        def timed_search(inner_search):
            def timed(*a, **kw):
                t0 = time.perf_counter()
                out = inner_search(*a, **kw)
                self.search_seconds += time.perf_counter() - t0
                return out

            return timed

        v1.puct = timed_search(v1.puct)
        v2.gumbel = timed_search(v2.gumbel)

        def timed_factory(net, generator, batch):
            inner = make(net, generator, batch)

            def timed(emb, action):
                t0 = time.perf_counter()
                out = inner(emb, action)
                if agent.device.type == "cuda":
                    torch.cuda.synchronize()
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                return out

            return timed

        model.recurrent_fn = timed_factory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gym/CartPole-v1")
    parser.add_argument("--preset")
    parser.add_argument("--num-envs", type=int)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--act-steps", type=int, default=200, help="vectorised steps to time")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = [f"agent.batch_size={args.batch}", *args.overrides]
    if args.num_envs:
        overrides.append(f"env.num_envs={args.num_envs}")
    config = build_config("efficientzero", args.env, args.preset, overrides=overrides)
    env = make_env(config.env, config.env.num_envs)
    device = resolve_device(args.device)
    agent = Agent(config.agent, env.spec, config.env.num_envs, device, seed=0)
    timer = NetTimer(agent)
    rng = np.random.default_rng(0)
    num_envs = config.env.num_envs

    # fill the replay until an update can run, then time acting
    obs, first = env.reset(0), np.ones(num_envs, dtype=bool)
    needed = agent.cfg.unroll_steps + agent.cfg.td_steps + 2

    def step(o):
        actions, _ = agent.act(o, None, first, explore=True, rng=rng)
        result = env.step(actions)
        agent.observe(
            Transition(o, actions, result.reward, result.terminated, result.truncated,
                       result.reset, result.obs, result.final_obs)
        )  # fmt: skip
        return result.obs

    for _ in range(needed):
        obs = step(obs)
    timer.seconds, timer.calls, timer.search_seconds = 0.0, 0, 0.0
    t0 = time.perf_counter()
    for _ in range(args.act_steps):
        obs = step(obs)
    act_s = time.perf_counter() - t0
    act_tree = timer.search_seconds - timer.seconds

    agent.update()  # warm-up (numba, allocator)
    timer.seconds, timer.search_seconds = 0.0, 0.0
    totals = {"update": 0.0, "reanalysis": 0.0, "bootstrap": 0.0, "network": 0.0}
    t0 = time.perf_counter()
    for _ in range(args.updates):
        m = agent.update()
        totals["update"] += m["perf/update_s"]
        totals["reanalysis"] += m["perf/reanalysis_s"]
        totals["bootstrap"] += m["perf/bootstrap_s"]
        totals["network"] += m["perf/network_s"]
    wall = time.perf_counter() - t0
    reanalysis_tree = timer.search_seconds - timer.seconds
    n = args.updates
    roots = agent.cfg.batch_size * (agent.cfg.unroll_steps + 1)

    print(f"machine: {describe()}; torch threads {args.threads}, device {device}")
    print(
        f"env {args.env} preset {config.preset} version {agent.cfg.version} "
        f"net {agent.net_config.kind} envs {num_envs} sims {agent.cfg.num_simulations}"
    )
    print(f"{'acting: env steps/s (all envs)':<48}{num_envs * args.act_steps / act_s:>10.1f}")
    print(f"{'acting: share of time in tree search':<48}{act_tree / act_s:>10.1%}")
    print(f"{'training: updates/s at batch ' + str(agent.cfg.batch_size):<48}{n / wall:>10.3f}")
    print(f"{'training: s per update':<48}{wall / n:>10.3f}")
    print(f"{'reanalysis: s per batch (' + str(roots) + ' roots)':<48}"
          f"{totals['reanalysis'] / n:>10.3f}")  # fmt: skip
    share = reanalysis_tree / max(totals["reanalysis"], 1e-9)
    print(f"{'reanalysis: share in tree search':<48}{share:>10.1%}")
    print(f"{'reanalysis: share in network calls':<48}{1 - share:>10.1%}")
    print(f"{'bootstrap values: s per batch':<48}{totals['bootstrap'] / n:>10.3f}")
    print(f"{'learner forward/backward: s per update':<48}{totals['network'] / n:>10.3f}")
    env.close()


if __name__ == "__main__":
    main()
