"""`frugal train | resume | eval | watch | compare | list`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap

from frugal import __version__
from frugal.errors import Diverged, FrugalError, Interrupted


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise FrugalError(f"{message} (see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="frugal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"frugal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train an agent from scratch")
    p.add_argument("algo", help="algorithm (see 'frugal list')")
    p.add_argument(
        "--env", required=True, help="atari/<Game>, minatar/<game>, gym/<id> or dmc/<domain>-<task>"
    )
    p.add_argument("--preset", help="named settings (default: chosen from the env)")
    p.add_argument("--steps", type=int, help="env steps summed over the envs (dmc: frames)")
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", help="where the run is written (default: runs/<algo>-<env>-...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. agent.lr=1e-4")

    p = sub.add_parser("resume", help="continue a run from its latest checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, help="new total of env steps")
    p.add_argument("overrides", nargs="*", metavar="key=value")

    p = sub.add_parser("eval", help="evaluate a run's latest checkpoint on full games")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int)
    p.add_argument("--video", action="store_true", help="write a video of the best episode")
    p.add_argument("--format", choices=["mp4", "gif"], help="the video's format (default mp4)")
    p.add_argument("--viewer", action="store_true", help="write an HTML page per episode (viewer/)")

    p = sub.add_parser("watch", help="play a run's latest checkpoint greedily in a window")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--speed", type=float, default=1.0, help="times real time (default 1)")

    p = sub.add_parser("compare", help="learning curves and score tables of several runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--metric", default="eval/return_mean")
    p.add_argument("--x", default="env_step", choices=["env_step", "update", "wall_s"])
    p.add_argument("--out", help="output directory (default: ./compare)")

    p = sub.add_parser("list", help="algorithms, presets and env suites")
    p.add_argument("algo", nargs="?", help="show this algorithm's presets in full")
    return parser


def _list(only: str | None) -> None:
    """One line per preset; with an algorithm, each preset's whole description."""
    from frugal.agents import ALGORITHMS, agent_module
    from frugal.envs.protocols import PROTOCOLS

    print("algorithms and presets:")
    for algo in [only] if only else ALGORITHMS:
        package = agent_module(algo)
        print(f"  {algo}")
        for name, preset in package.PRESETS.items():
            if only:
                print(f"    --preset {name}")
                print(
                    textwrap.fill(preset.doc, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
                )
                continue
            doc = (
                preset.doc if len(preset.doc) <= 64 else preset.doc[:61].rsplit(" ", 1)[0] + " ..."
            )
            print(f"    --preset {name:<12} {doc}")
    if not only:
        print("  ('frugal list ALGO' shows each preset's full description and deviations)")
    print("env suites (--env) and protocols (env.protocol=...):")
    examples = {
        "atari": "atari/Breakout", "minatar": "minatar/breakout", "gym": "gym/CartPole-v1",
        "dmc": "dmc/cartpole-swingup",
    }  # fmt: skip
    for suite, protocols in PROTOCOLS.items():
        print(
            f"  {suite + '/...':<12} e.g. {examples[suite]:<20} protocols: {', '.join(protocols)}"
        )
    print(
        textwrap.fill(
            dmc_tasks(), 96, initial_indent="  ", subsequent_indent=" " * 4, break_on_hyphens=False
        )
    )


def dmc_tasks() -> str:
    """The DeepMind Control tasks, or what to install to get them."""
    from frugal.envs.dmc_suite import load_suite
    from frugal.errors import FrugalError

    try:
        suite = load_suite()
    except FrugalError as e:
        return f"dmc tasks: {e}"
    return "dmc tasks (dmc/DOMAIN-TASK): " + ", ".join(f"{d}-{t}" for d, t in suite.ALL_TASKS)


def run(argv: list[str]) -> int:
    args, extra = _parser().parse_known_args(argv)
    # key=value pairs may follow options (argparse stops collecting positionals at an option)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and not hasattr(args, "overrides")):
        raise FrugalError(
            f"unrecognized arguments: {' '.join(stray or extra)} (see 'frugal --help')"
        )
    if extra:
        args.overrides = list(args.overrides) + extra
    from frugal import api

    if args.command == "list":
        _list(args.algo)
        return 0
    if args.command == "train":
        result = api.train(
            args.algo, args.env, args.preset, args.steps, args.seed, args.run_dir, args.overrides
        )
        _report_run(result)
    elif args.command == "resume":
        _report_run(api.resume(args.run_dir, args.steps, args.overrides))
    elif args.command == "eval":
        if args.episodes is not None and args.episodes < 1:
            raise FrugalError(f"--episodes must be at least 1, got {args.episodes}")
        if args.format and not args.video:
            raise FrugalError(f"--format {args.format} is the video's format; add --video")
        result = api.evaluate(
            args.run_dir, args.episodes, args.video, args.format or "mp4", args.viewer
        )
        print(json.dumps(result, indent=2))
    elif args.command == "watch":
        if args.episodes < 1:
            raise FrugalError(f"--episodes must be at least 1, got {args.episodes}")
        print(json.dumps(api.watch(args.run_dir, args.episodes, args.speed), indent=2))
    elif args.command == "compare":
        from frugal.report import compare

        result = compare(args.runs, metric=args.metric, x=args.x, out=args.out)
        print(result.summary() if hasattr(result, "summary") else result)
    return 0


def _report_run(result) -> None:
    evals = [p for p in result.metrics if "eval/return_mean" in p]
    last = evals[-1] if evals else {}
    print(f"run directory: {result.dir}")
    if last:
        print(
            f"final evaluation at {last['env_step']:,} env steps: "
            f"return {last['eval/return_mean']:.1f} ± {last['eval/return_std']:.1f} "
            f"over {last['eval/episodes']} episodes"
        )


def _interrupted(signum, frame) -> None:
    """Ctrl-C outside the training loop (start-up, evaluation, reports): leave at once. Raising
    KeyboardInterrupt instead could surface inside a C++ extension's import and abort the
    process; nothing here needs saving (the loop checkpoints on a signal by itself)."""
    os.write(2, b"frugal: interrupted\n")
    os._exit(128 + signal.SIGINT)


def main(argv: list[str] | None = None) -> None:
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except FrugalError as e:
        print(f"frugal: error: {e}", file=sys.stderr)
        code = 2
    except Diverged as e:
        print(f"frugal: error: {e}", file=sys.stderr)
        code = 3
    except Interrupted as e:
        print(f"frugal: {e}; checkpoint saved, continue with 'frugal resume'", file=sys.stderr)
        code = 128 + e.signum
    finally:
        signal.signal(signal.SIGINT, previous)
    sys.exit(code)
