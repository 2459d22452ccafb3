"""Speed of frugal.search: microseconds per simulation per root, and searches per second.

Zero-cost model: recurrent_fn returns precomputed tensors (reward [B], logits [B, A], value [B],
next embedding [B, 64] float32), so the timing is everything but the network: tree kernels,
embedding storage and gathers, index and output transfers, Python glue.
Small real network: a 2-layer MLP dynamics/prediction model (latent 64, hidden 64) on the CPU.

    python benchmarks/search_speed.py                    # print the tables
    python benchmarks/search_speed.py --out benchmarks/search_speed.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numba
import numpy as np
import torch

from frugal.search import Root, Step, search

LATENT = 64


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numba "
        f"{numba.__version__}, numpy {np.__version__}"
    )


def zero_cost(num_roots: int, num_actions: int):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(num_roots, num_actions, generator=g)
    value = torch.randn(num_roots, generator=g)
    reward = torch.randn(num_roots, generator=g)
    emb = torch.randn(num_roots, LATENT, generator=g)
    step = Step(reward, logits, value)

    def recurrent_fn(embedding, action):
        return step, emb

    return Root(logits, value, emb), recurrent_fn


class MLP(torch.nn.Module):
    """Dynamics (latent, one-hot action) -> latent, and prediction latent -> (logits, value)."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.num_actions = num_actions
        self.dynamics = torch.nn.Sequential(
            torch.nn.Linear(LATENT + num_actions, LATENT), torch.nn.ReLU(),
            torch.nn.Linear(LATENT, LATENT + 1),
        )  # fmt: skip
        self.prediction = torch.nn.Sequential(
            torch.nn.Linear(LATENT, LATENT), torch.nn.ReLU(),
            torch.nn.Linear(LATENT, num_actions + 1),
        )  # fmt: skip

    def predict(self, latent):
        out = self.prediction(latent)
        return out[:, : self.num_actions], out[:, self.num_actions]

    def recurrent_fn(self, latent, action):
        onehot = torch.nn.functional.one_hot(action, self.num_actions).float()
        out = self.dynamics(torch.cat((latent, onehot), 1))
        nxt, reward = torch.tanh(out[:, :LATENT]), out[:, LATENT]
        logits, value = self.predict(nxt)
        return Step(reward, logits, value), nxt


def timed(fn, min_time: float) -> float:
    """Seconds per call: one warm-up call, then repeat until min_time has passed."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the markdown report here")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per cell")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    lines = [
        "# frugal.search speed",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Machine: {machine()}",
        "",
        "## Zero-cost model: microseconds per simulation per root",
        "",
        "recurrent_fn returns precomputed tensors (embedding [B, 64] float32), so this is",
        "everything but the network. Lower is better.",
        "",
        "| B | S | A | puct µs | gumbel µs |",
        "|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for num_roots in (8, 64, 256, 1024):
        for num_sims in (16, 50):
            for num_actions in (4, 18):
                root, fn = zero_cost(num_roots, num_actions)
                cell = []
                for method in ("puct", "gumbel"):
                    sec = timed(
                        lambda m=method, r=root, f=fn, s=num_sims: search(
                            r, f, s, method=m, generator=gen
                        ),
                        args.min_time,
                    )
                    cell.append(sec / (num_sims * num_roots) * 1e6)
                line = (
                    f"| {num_roots} | {num_sims} | {num_actions} | {cell[0]:.2f} | {cell[1]:.2f} |"
                )
                lines.append(line)
                print(line, flush=True)

    head = [
        "",
        f"## 2-layer MLP (latent {LATENT}, hidden {LATENT}) on the CPU: searches per second",
        "",
        "Whole searches (root batch of B) per second, network time included. Higher is better.",
        "",
        "| B | S | A | puct searches/s | gumbel searches/s | puct root-sims/s "
        "| gumbel root-sims/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += head
    print("\n".join(head), flush=True)
    torch.manual_seed(0)
    for num_actions in (4, 18):
        net = MLP(num_actions).eval()
        for num_roots in (8, 64, 256):
            num_sims = 50
            with torch.no_grad():
                latent = torch.randn(num_roots, LATENT)
                logits, value = net.predict(latent)
            root = Root(logits, value, latent)
            rates = []
            for method in ("puct", "gumbel"):
                sec = timed(
                    lambda m=method, r=root, f=net.recurrent_fn, s=num_sims: search(
                        r, f, s, method=m, generator=gen
                    ),
                    args.min_time,
                )
                rates.append(1.0 / sec)
            line = (
                f"| {num_roots} | {num_sims} | {num_actions} | {rates[0]:.1f} | {rates[1]:.1f} | "
                f"{rates[0] * num_roots * num_sims:,.0f} | {rates[1] * num_roots * num_sims:,.0f} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
