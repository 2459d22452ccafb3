"""Scaling of acting on Ray: env steps/s of the whole training loop and updates/s, local against
`run.backend=ray` with 1, 2, ... actors (up to the core count), same schedule and settings.

    python benchmarks/ray_scaling.py --algo dqn --env minatar/breakout --steps 20000
    python benchmarks/ray_scaling.py --algo efficientzero --env minatar/breakout --steps 5000

Each configuration trains in a fresh process (`frugal train`, Ray started there with every
core); rates are measured between the first and the last log point, so start-up (Ray, the
actors' imports) is left out. Rows: `local` unchunked (one process, the newest weights every
step), `local` with the chunked schedule, and `ray` with N actors on that schedule, which logs
the same metrics as the chunked local row. Prints a Markdown table and the machine."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import describe  # benchmarks/machine.py


def measure(args, extra: list[str], root: Path, name: str) -> dict[str, float]:
    run_dir = root / name
    cmd = [
        sys.executable, "-m", "frugal", "train", args.algo, "--env", args.env,
        "--steps", str(args.steps), "--run-dir", str(run_dir), "run.progress=false",
        f"run.log_every={args.steps // 10}", "run.eval_every=0", "run.checkpoint_every=0",
        "run.eval_episodes=1", "run.device=cpu", *args.set, *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    points = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = points[0], points[-1]
    span = last["wall_s"] - first["wall_s"]
    return {
        "steps_per_s": (last["env_step"] - first["env_step"]) / span,
        "updates_per_s": (last["update"] - first["update"]) / span,
        "wall_s": last["wall_s"],
        "act_wait_s": sum(p.get("perf/act_wait_s", 0.0) for p in points[1:]),
        "span_s": span,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="dqn")
    parser.add_argument("--env", default="minatar/breakout")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=16, help="run.act_chunk")
    parser.add_argument("--lag", type=int, default=1, help="run.act_lag")
    parser.add_argument("--max-actors", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the learner")
    parser.add_argument("--set", nargs="*", default=[], help="more key=value settings")
    args = parser.parse_args()
    actors = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= min(args.max_actors, args.num_envs)]
    slices = max(actors)
    schedule = [
        f"env.num_envs={args.num_envs}", f"run.act_chunk={args.chunk}", f"run.act_lag={args.lag}",
        f"run.act_slices={slices}",
    ]  # fmt: skip
    rows = [("local, unchunked", [f"env.num_envs={args.num_envs}"]), ("local", schedule)]
    rows += [(f"ray, {n} actor{'s' if n > 1 else ''}", [*schedule, "run.backend=ray",
              f"run.actors={n}"]) for n in actors]  # fmt: skip
    print(f"{args.algo} on {args.env}, {args.steps:,} env steps, {args.num_envs} envs, "
          f"chunk {args.chunk}, lag {args.lag}, {slices} slices")  # fmt: skip
    print(describe())
    print(
        "\n| backend | env steps/s | updates/s | vs local unchunked | learner waiting on acting |"
    )
    print("|---|---:|---:|---:|---:|")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(rows):
            r = measure(args, extra, Path(tmp), f"run{i}")
            base = base or r["steps_per_s"]
            wait = f"{r['act_wait_s'] / r['span_s']:.0%}" if name != rows[0][0] else "-"
            print(f"| {name} | {r['steps_per_s']:,.0f} | {r['updates_per_s']:,.1f} | "
                  f"{r['steps_per_s'] / base:.2f}x | {wait} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
