"""DreamerV3 training speed: updates per second of one agent on synthetic replay (wall clock,
and CPU time of the process, the fairer figure on a shared machine).

    python benchmarks/dreamer_speed.py --obs atari --size S        # 64x64 RGB, batch 16 x 64
    python benchmarks/dreamer_speed.py --obs vector --size tiny    # CartPole-sized vectors

The replay is filled with random observations (the speed of an update does not depend on the
data); the first updates are warm-up and not timed. Prints the machine and the figures."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from frugal.agents import dreamer
from frugal.agents.base import Transition
from frugal.envs.base import EnvSpec

SPECS = {
    "atari": EnvSpec((3, 64, 64), np.dtype(np.uint8), True, 1, (3, 64, 64), True, 18,
                     obs_high=255.0),
    "minatar": EnvSpec((4, 10, 10), np.dtype(np.uint8), True, 1, (4, 10, 10), True, 3),
    "vector": EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 2),
}  # fmt: skip


def fill(agent: dreamer.Agent, spec: EnvSpec, steps: int, rng: np.random.Generator) -> None:
    def obs() -> np.ndarray:
        if spec.pixels:
            return rng.integers(0, 256 if spec.obs_high > 1 else 2, (1, *spec.obs_shape)).astype(
                np.uint8
            )
        return rng.normal(size=(1, *spec.obs_shape)).astype(np.float32)

    current = obs()
    for t in range(steps):
        nxt = obs()
        done = np.array([t % 200 == 199])
        agent.observe(
            Transition(current, rng.integers(0, spec.num_actions, 1), rng.normal(size=1),
                       done, np.zeros(1, bool), done, nxt, nxt)
        )  # fmt: skip
        current = nxt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--obs", choices=sorted(SPECS), default="atari")
    p.add_argument("--size", default="S", choices=list(dreamer.SIZES))
    p.add_argument("--stoch", type=int, default=32)
    p.add_argument("--classes", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batch-length", type=int, default=64)
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision", default="fp32", help="agent.precision, or several (fp32,bf16): rounds of "
        "each in turn, one agent per precision, and the speed-up of the later over the first"
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, help="rounds of every precision")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = SPECS[args.obs]
    device = torch.device(args.device)
    agents = {}
    for name in args.precision.split(","):
        cfg = dreamer.Config(
            size=args.size,
            stoch=args.stoch,
            classes=args.classes,
            batch_size=args.batch_size,
            batch_length=args.batch_length,
            replay_size=10_000,
            compile=args.compile,
            precision=name,
        )
        torch.manual_seed(0)
        agent = dreamer.Agent(cfg, spec, 1, device, seed=0)
        fill(agent, spec, 4 * args.batch_length, np.random.default_rng(0))
        for _ in range(args.warmup):
            agent.update()
        agents[name] = agent
    params = sum(p.numel() for m in (agent.wm, agent.actor, agent.critic) for p in m.parameters())

    def timed(agent: dreamer.Agent) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(args.updates):
            agent.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / args.updates
        return wall, (time.process_time() - cpu_start) / args.updates

    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in agents}
    for _ in range(args.rounds):  # alternating, so a change of load hits every precision alike
        for name, agent in agents.items():
            rounds[name].append(timed(agent))
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s), device {device}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"obs {args.obs}, size {args.size}, latents {args.stoch}x{args.classes}, "
        f"batch {args.batch_size}x{args.batch_length}, {params / 1e6:.2f}M parameters, "
        f"compile {args.compile}"
    )
    first = None
    for name, figs in rounds.items():
        seconds = statistics.median(f[0] for f in figs)
        cpu_seconds = statistics.median(f[1] for f in figs)
        first = first or cpu_seconds
        print(f"precision {name} ({agents[name].precision}), median of {len(figs)} round(s):")
        print(f"  wall: {1.0 / seconds:.3f} updates/s ({seconds * 1000:.0f} ms per update)")
        # on a shared machine the process's CPU time is the fairer figure (1 thread: ~ an idle
        # core)
        print(
            f"  cpu:  {1.0 / cpu_seconds:.3f} updates/s ({cpu_seconds * 1000:.0f} ms CPU per "
            f"update), {first / cpu_seconds:.2f}x the first"
        )


if __name__ == "__main__":
    main()
