"""Scaling on Ray: env steps/s of the whole training loop and updates/s, local against
`run.backend=ray` with 1, 2, ... actors (up to the core count), same schedule and settings; for
EfficientZero with `--prefetch L`, also reanalysis workers (`run.reanalysers`) beside the actors.

    python benchmarks/ray_scaling.py --algo dqn --env minatar/breakout --steps 20000
    python benchmarks/ray_scaling.py --algo efficientzero --env minatar/breakout --steps 5000
    python benchmarks/ray_scaling.py --algo efficientzero --env minatar/breakout --steps 5000 \
        --prefetch 2 --rows unchunked ray

Each configuration trains in a fresh process (`frugal train`, Ray started there with every
core); rates are measured between the first and the last log point, so start-up (Ray, the
actors' imports) is left out. Rows: `local` unchunked (one process, the newest weights every
step), `local` with the chunked schedule, and `ray` with N actors on that schedule, which logs
the same metrics as the chunked local row. With `--prefetch L` the chunked rows draw batches L
updates ahead, and the `ray` rows add M reanalysis workers for every split of the cores into N
actors and M reanalysers. Prints a Markdown table, the machine and its load (`os.getloadavg`)
before and after, which matters where the machine is shared."""

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
        "prefetch_wait_s": sum(
            p.get("perf/prefetch_wait_s", 0.0) * (p["update"] - q["update"])
            for q, p in zip(points, points[1:], strict=False)
        ),
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
    parser.add_argument("--prefetch", type=int, default=0, help="agent.prefetch (EfficientZero)")
    parser.add_argument("--rows", nargs="*", default=["unchunked", "local", "ray"],
                        help="which rows: unchunked, local, ray")  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], help="more key=value settings")
    args = parser.parse_args()
    cores = min(args.max_actors, os.cpu_count() or 1)
    actors = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= min(cores, args.num_envs)]
    slices = max(actors)
    schedule = [
        f"env.num_envs={args.num_envs}", f"run.act_chunk={args.chunk}", f"run.act_lag={args.lag}",
        f"run.act_slices={slices}",
    ]  # fmt: skip
    if args.prefetch:
        schedule.append(f"agent.prefetch={args.prefetch}")
    rows = [("local, unchunked", [f"env.num_envs={args.num_envs}"])] * ("unchunked" in args.rows)
    rows += [(f"local{', prefetch' * bool(args.prefetch)}", schedule)] * ("local" in args.rows)
    # with prefetch, every split of the cores into actors and reanalysers (one of each at least)
    splits = [(n, cores - n) for n in actors if n < cores] if args.prefetch else []
    splits = splits or [(n, 0) for n in actors]
    rows += [(f"ray, {n} actor{'s' * (n > 1)}" + (f" + {m} reanalyser{'s' * (m > 1)}" if m else ""),
              [*schedule, "run.backend=ray", f"run.actors={n}", f"run.reanalysers={m}"])
             for n, m in splits] * ("ray" in args.rows)  # fmt: skip
    print(f"{args.algo} on {args.env}, {args.steps:,} env steps, {args.num_envs} envs, "
          f"chunk {args.chunk}, lag {args.lag}, {slices} slices, "
          f"prefetch {args.prefetch}")  # fmt: skip
    print(describe())
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        "\n| backend | env steps/s | updates/s | s per 10k env steps | vs first row | "
        "learner waiting on acting | on reanalysis |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(rows):
            r = measure(args, extra, Path(tmp), f"run{i}")
            base = base or r["steps_per_s"]
            wait = f"{r['act_wait_s'] / r['span_s']:.0%}" if name != "local, unchunked" else "-"
            reanalysis = f"{r['prefetch_wait_s'] / r['span_s']:.0%}" if "ray" in name else "-"
            print(f"| {name} | {r['steps_per_s']:,.0f} | {r['updates_per_s']:,.1f} | "
                  f"{10_000 / r['steps_per_s']:,.0f} | {r['steps_per_s'] / base:.2f}x | {wait} | "
                  f"{reanalysis} |", flush=True)  # fmt: skip
    print("load average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
