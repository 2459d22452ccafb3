r"""Learning benchmark: train seeds of one algorithm on one env and report the curve, the first
evaluation at or above a target, and the wall time to get there.

    python benchmarks/learning.py dqn gym/CartPole-v1 --steps 50000 --seeds 0 1 2 --target 475
    python benchmarks/learning.py dqn minatar/breakout --steps 100000 --seeds 0 1 2 \
        --final-episodes 100

Runs go to --out (default runs/bench/<algo>-<env>); `frugal compare` on that folder draws them.
Extra key=value settings are passed to every run. --final-episodes N evaluates each run's last
checkpoint on N episodes (the in-run evaluations use the preset's few) and reports the mean
over seeds with its 95% seed-bootstrap interval, as `frugal compare` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from machine import describe

import frugal
from frugal.report.stats import bootstrap_ci


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("algo")
    parser.add_argument("env")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--preset")
    parser.add_argument("--target", type=float)
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--final-episodes", type=int)
    args, overrides = parser.parse_known_args()
    name = f"{args.algo}-{args.env.replace('/', '-')}"
    print(describe())
    finals = []
    for seed in args.seeds:
        run_dir = Path(args.out) / name / f"seed{seed}"
        if (run_dir / "config.yaml").exists():
            run = frugal.resume(run_dir, steps=args.steps)
        else:
            run = frugal.train(
                args.algo,
                args.env,
                args.preset,
                args.steps,
                seed,
                run_dir,
                ["run.progress=false", *overrides],
            )
        evals = [p for p in run.metrics if "eval/return_mean" in p]
        curve = "  ".join(f"{p['env_step']}:{p['eval/return_mean']:.1f}" for p in evals)
        print(f"{name} seed {seed}: {curve}")
        if args.target is not None:
            hit = next((p for p in evals if p["eval/return_mean"] >= args.target), None)
            if hit:
                print(
                    f"  reached {args.target} at {hit['env_step']:,} env steps, "
                    f"{hit['wall_s']:.0f} s wall, {hit['update']:,} updates"
                )
            else:
                print(f"  did not reach {args.target} within {args.steps:,} env steps")
        print(f"  total wall {evals[-1]['wall_s']:.0f} s", flush=True)
        if args.final_episodes:
            final = run.evaluate(episodes=args.final_episodes)
            finals.append(final["eval/return_mean"])
            print(
                f"  final evaluation at {final['env_step']:,} env steps: "
                f"{final['eval/return_mean']:.2f} over {args.final_episodes} episodes",
                flush=True,
            )
    if finals:
        low, high = bootstrap_ci(finals)
        print(
            f"{name} final evaluation, mean over {len(finals)} seeds: "
            f"{sum(finals) / len(finals):.2f} [{low:.2f}, {high:.2f}]"
        )


if __name__ == "__main__":
    main()
