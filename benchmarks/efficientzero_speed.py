"""EfficientZero throughput: env steps/s while acting (one batched search over all envs per
step), training updates/s at a given batch, time per reanalysis batch, and where the time goes
(tree search kernels vs network calls).

    python benchmarks/efficientzero_speed.py --env atari/Breakout --preset atari100k
    python benchmarks/efficientzero_speed.py --env gym/CartPole-v1 --batch 256
    python benchmarks/efficientzero_speed.py --env minatar/breakout --preset minatar \
        --batch 128 --compare 0d7e697 --rounds 3

Prints one table and the machine it ran on. The replay is filled by acting, so the figures
include real env stepping; `--threads` sets torch's intra-op threads (1 by default).

`--compare REV` times the landed revision REV (a git worktree of it in /tmp, made once) against
this working tree on the same machine: each round runs REV with its defaults, this tree at
agent.precision=fp32 and this tree at agent.precision=auto, one after the other in fresh
processes (alternating, the order rotating, so a change of load on a shared machine hits all
three alike), and the
table gives the median of the rounds and the speed-ups over REV.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def precision_of(agent: Agent) -> str:
    """The resolved precision (revisions before agent.precision had the bool agent.amp)."""
    if hasattr(agent, "precision"):
        return agent.precision
    return "bf16" if getattr(agent.cfg, "amp", False) else "fp32"


def measure(args: argparse.Namespace) -> dict[str, float | str]:
    """One agent: fill the replay by acting, time acting, then time updates."""
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
    env.close()
    n = args.updates
    share = (timer.search_seconds - timer.seconds) / max(totals["reanalysis"], 1e-9)
    return {
        "machine": f"{describe()}; torch threads {args.threads}, device {device}",
        "setup": f"env {args.env} preset {config.preset} version {agent.cfg.version} "
        f"net {agent.net_config.kind} envs {num_envs} sims {agent.cfg.num_simulations} "
        f"precision {precision_of(agent)}",
        "act_steps_per_s": num_envs * args.act_steps / act_s,
        "act_tree_share": act_tree / act_s,
        "updates_per_s": n / wall,
        "update_s": wall / n,
        "reanalysis_s": totals["reanalysis"] / n,
        "reanalysis_tree_share": share,
        "bootstrap_s": totals["bootstrap"] / n,
        "network_s": totals["network"] / n,
        "batch": agent.cfg.batch_size,
        "roots": agent.cfg.batch_size * (agent.cfg.unroll_steps + 1),
    }


ROWS = [  # key, label, format
    ("act_steps_per_s", "acting: env steps/s (all envs)", "{:.1f}"),
    ("act_tree_share", "acting: share of time in tree search", "{:.1%}"),
    ("updates_per_s", "training: updates/s at batch {batch}", "{:.3f}"),
    ("update_s", "training: s per update", "{:.3f}"),
    ("reanalysis_s", "reanalysis search: s per batch ({roots} roots)", "{:.3f}"),
    ("reanalysis_tree_share", "reanalysis: share in tree search", "{:.1%}"),
    ("bootstrap_s", "target-model passes: s per batch", "{:.3f}"),
    ("network_s", "learner forward/backward: s per update", "{:.3f}"),
]


def print_table(columns: dict[str, dict]) -> None:
    """One column per variant; with several, the speed-ups of the later ones over the first."""
    first = next(iter(columns.values()))
    print(f"machine: {first['machine']}")
    for name, fig in columns.items():
        print(f"{name}: {fig['setup']}")
    print(f"{'':<48}" + "".join(f"{name:>14}" for name in columns))
    for key, label, fmt in ROWS:
        cells = "".join(f"{fmt.format(fig[key]):>14}" for fig in columns.values())
        print(f"{label.format(**first):<48}{cells}")
    if len(columns) > 1:
        base, base_name = first, next(iter(columns))
        for name, fig in list(columns.items())[1:]:
            print(
                f"{name} over {base_name}: update {base['update_s'] / fig['update_s']:.2f}x"
                f" faster, acting {fig['act_steps_per_s'] / base['act_steps_per_s']:.2f}x"
            )


def worktree(rev: str) -> Path:
    """A git worktree of `rev` in /tmp (made once; its frugal package is imported from there)."""
    repo = Path(__file__).resolve().parents[1]
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", rev],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    path = Path("/tmp") / f"frugal-{sha}"
    if not (path / "frugal").is_dir():
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", str(path), sha],
            check=True, capture_output=True,
        )  # fmt: skip
    return path


def compare(args: argparse.Namespace, argv: list[str]) -> None:
    old = worktree(args.compare)
    passed, skip = [], False  # argv less --compare REV and --rounds N
    for a in argv:
        if skip:
            skip = False
        elif a in ("--compare", "--rounds"):
            skip = True
        elif not a.startswith(("--compare=", "--rounds=")):
            passed.append(a)
    variants = {
        args.compare: (old, []),
        "fp32": (None, ["agent.precision=fp32"]),
        "auto": (None, ["agent.precision=auto"]),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % 3 :] + names[: r % 3]:  # the order rotates from round to round
            tree, extra = variants[name]
            env = dict(os.environ)
            if tree is not None:
                env["PYTHONPATH"] = str(tree)
            cmd = [sys.executable, __file__, *passed, "--json", *extra]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            fig = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(fig)
            print(f"round {r + 1} {name}: {fig['update_s']:.3f} s/update, "
                  f"{fig['act_steps_per_s']:.0f} env steps/s", file=sys.stderr)  # fmt: skip
    columns = {}
    for name, figs in runs.items():
        med = {k: statistics.median(f[k] for f in figs) for k, _, _ in ROWS}
        columns[name] = {**figs[0], **med}
    print_table(columns)
    print(f"medians of {args.rounds} rounds; load average {os.getloadavg()[0]:.2f} at the end")


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
    parser.add_argument("--compare", metavar="REV", help="time REV against this tree")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --compare")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    if args.compare:
        compare(args, sys.argv[1:])
        return
    figures = measure(args)
    if args.json:
        print(json.dumps(figures))
    else:
        print_table({"this tree": figures})


if __name__ == "__main__":
    main()
