"""frugal PPO against Stable-Baselines3 PPO on this machine, same settings, same invocation.

    python benchmarks/ppo_vs_sb3.py                       # both parts, 3 repetitions
    python benchmarks/ppo_vs_sb3.py --part atari --reps 5 --rollouts 4
    python benchmarks/ppo_vs_sb3.py --part cartpole --reps 3
    python benchmarks/ppo_vs_sb3.py --part ceiling       # the CNN's own floor for one update

CartPole-v1 (the `cartpole` preset, SB3 given the same hyperparameters and network): env steps
and training wall time (evaluation excluded) until the first evaluation with a mean return of
475 or more. Both are evaluated by the same function (`frugal.evaluation.evaluate`: 10 greedy
episodes on frugal's env, seeded alike) every 5,120 env steps, after that rollout's update.

Atari Breakout (the `atari` preset: 8 envs x 128 steps, 4 epochs of 4 minibatches, Nature CNN):
env steps per second of the whole training loop (collection + updates) on the CPU, per rollout
of 1,024 env steps, the first rollout of each run left out as warm-up. SB3 runs its standard
Atari wrappers (`make_atari_env`, the same protocol: no sticky actions, 30 no-ops, frame skip 4
with max-pool, life loss as episode end, FIRE reset, rewards clipped, 84x84 gray, 4-stack) on
DummyVecEnv and SubprocVecEnv; frugal on ale-py's C++ vector env.

Ceiling: the forward and backward passes of frugal's Atari network alone on one minibatch of 256
frames (NHWC, fp32, best of 10), times the 16 minibatches of an update: no implementation's
update can take less on this core. A 2048x2048 fp32 matmul gives the core's dense rate.

The machine is shared and noisy: the implementations alternate within each repetition (the order
rotating) and medians are reported. Torch uses one thread in both (torch.set_num_threads(1)).
Requires `pip install stable-baselines3 opencv-python-headless` (not frugal dependencies).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

from frugal.api import build_config
from frugal.config import EnvConfig
from frugal.evaluation import evaluate
from frugal.runner import Runner
from frugal.runs import read_metrics

CARTPOLE_STEPS = 99_840  # 390 rollouts of 8 x 32
EVAL_EVERY = 5_120
EVAL_EPISODES = 10
TARGET = 475.0
ROLLOUT = 1024  # Breakout: 8 envs x 128 steps


def eval_seed(seed: int, env_step: int) -> int:
    """The runner's per-point evaluation seed, so both libraries play the same episodes."""
    return int(np.random.default_rng([seed, 2, env_step]).integers(2**31))


class TimedRunner(Runner):
    """The frugal runner, timing its evaluations so they can be taken out of the wall time (or
    skipped altogether, for throughput runs)."""

    def __init__(self, *args, skip_eval: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_eval = skip_eval
        self.eval_s = 0.0
        self.points: list[tuple[int, float, float]] = []  # (env_step, train wall s, return)
        self.update_s: list[float] = []  # wall time of each agent.update()
        update = self.agent.update

        def timed_update():
            t = time.perf_counter()
            result = update()
            self.update_s.append(time.perf_counter() - t)
            return result

        self.agent.update = timed_update

    def run(self) -> None:
        self._start = time.perf_counter()
        super().run()

    def evaluate(self, video=None, episodes=None):
        if self.skip_eval:
            return {}
        train_s = time.perf_counter() - self._start - self.eval_s
        t = time.perf_counter()
        result = super().evaluate(video, episodes)
        self.eval_s += time.perf_counter() - t
        self.points.append((self.env_step, train_s, result["eval/return_mean"]))
        return result


def frugal_run(env: str, steps: int, seed: int, overrides: list[str], skip_eval: bool):
    config = build_config("ppo", env, None, steps, seed, ["run.progress=false", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        runner = TimedRunner(config, Path(tmp), skip_eval=skip_eval)
        runner.run()
        return runner, read_metrics(Path(tmp) / "metrics.jsonl")[0]


class SB3Actor:
    """An SB3 model behind frugal's act() so frugal's evaluator can play it."""

    def __init__(self, model):
        self.model = model

    def initial_act_state(self, num_envs):
        return None

    def act(self, obs, state, first, *, explore, rng):
        return self.model.predict(obs, deterministic=not explore)[0], state


def linear(start: float):
    return lambda progress_remaining: progress_remaining * start


# ------------------------------------------------------------------------------------- CartPole


def first_hit(points: list[tuple[int, float, float]]):
    return next(((s, w) for s, w, r in points if r >= TARGET), (None, None))


def cartpole_frugal(seed: int) -> dict:
    runner, _ = frugal_run(
        "gym/CartPole-v1",
        CARTPOLE_STEPS,
        seed,
        [
            f"run.eval_every={EVAL_EVERY}",
            f"run.eval_episodes={EVAL_EPISODES}",
            "run.checkpoint_every=0",
            "run.log_every=0",
        ],
        skip_eval=False,
    )
    step, wall = first_hit(runner.points)
    return dict(
        step=step,
        wall=wall,
        final=runner.points[-1][2],
        total=runner.points[-1][1],
        curve=runner.points,
    )


def cartpole_sb3(seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    cfg = build_config("ppo", "gym/CartPole-v1").agent
    env_config = EnvConfig(id="gym/CartPole-v1")

    class Eval(BaseCallback):
        def __init__(self):
            super().__init__()
            self.points: list[tuple[int, float, float]] = []
            self.eval_s = 0.0
            self.next_eval = EVAL_EVERY

        def _on_training_start(self):
            self.start = time.perf_counter()

        def _check(self, final: bool = False):
            # after the update of the rollout that crossed the eval step, as frugal's runner
            if self.num_timesteps >= self.next_eval or final:
                train_s = time.perf_counter() - self.start - self.eval_s
                t = time.perf_counter()
                result = evaluate(
                    SB3Actor(self.model),
                    env_config,
                    EVAL_EPISODES,
                    5,
                    eval_seed(seed, self.num_timesteps),
                )
                self.eval_s += time.perf_counter() - t
                self.points.append((self.num_timesteps, train_s, result["eval/return_mean"]))
                self.next_eval += EVAL_EVERY

        def _on_rollout_start(self):
            self._check()

        def _on_training_end(self):
            self._check(final=True)

        def _on_step(self):
            return True

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=cfg.num_steps,
        batch_size=cfg.num_steps * 8 // cfg.num_minibatches,
        n_epochs=cfg.update_epochs,
        gamma=cfg.discount,
        gae_lambda=cfg.gae_lambda,
        learning_rate=linear(cfg.lr),
        clip_range=linear(cfg.clip_range),
        clip_range_vf=None,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.grad_clip,
        policy_kwargs=dict(net_arch=dict(pi=list(cfg.hidden), vf=list(cfg.hidden))),
        device="cpu",
        seed=seed,
    )
    callback = Eval()
    model.learn(CARTPOLE_STEPS, callback=callback)
    step, wall = first_hit(callback.points)
    return dict(
        step=step,
        wall=wall,
        final=callback.points[-1][2],
        total=callback.points[-1][1],
        curve=callback.points,
    )


# ---------------------------------------------------------------------------------------- Atari


def breakout_v4(**kwargs):
    """`gym.make("BreakoutNoFrameskip-v4")` as SB3's make_atari_env makes it, importable by
    SubprocVecEnv's worker processes (which have not registered ale-py's envs)."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return gym.make("BreakoutNoFrameskip-v4", **{"render_mode": "rgb_array", **kwargs})


def atari_frugal(
    seed: int, rollouts: int, extra: tuple[str, ...] = ()
) -> tuple[list[float], list[float]]:
    """Env steps/s of each rollout after the first, and the update's share of each (s)."""
    runner, metrics = frugal_run(
        "atari/Breakout",
        rollouts * ROLLOUT,
        seed,
        [f"run.log_every={ROLLOUT}", "run.eval_every=0", "run.checkpoint_every=0", *extra],
        skip_eval=True,
    )
    walls = [p["wall_s"] for p in metrics]
    rates = [ROLLOUT / (b - a) for a, b in zip(walls, walls[1:], strict=False)]
    return rates, runner.update_s[1:]


def atari_sb3(seed: int, rollouts: int, subproc: bool) -> tuple[list[float], list[float]]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack

    cfg = build_config("ppo", "atari/Breakout").agent

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.starts: list[float] = []
            self.ends: list[float] = []

        def _on_rollout_start(self):
            self.starts.append(time.perf_counter())

        def _on_rollout_end(self):
            self.ends.append(time.perf_counter())

        def _on_training_end(self):
            self.starts.append(time.perf_counter())

        def _on_step(self):
            return True

    vec_cls = SubprocVecEnv if subproc else DummyVecEnv
    env = VecFrameStack(make_atari_env(breakout_v4, n_envs=8, seed=seed, vec_env_cls=vec_cls), 4)
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=cfg.num_steps,
        batch_size=ROLLOUT // cfg.num_minibatches,
        n_epochs=cfg.update_epochs,
        gamma=cfg.discount,
        gae_lambda=cfg.gae_lambda,
        learning_rate=cfg.lr,
        clip_range=cfg.clip_range,
        clip_range_vf=cfg.clip_range,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.grad_clip,
        device="cpu",
        seed=seed,
    )
    clock = Clock()
    model.learn(rollouts * ROLLOUT, callback=clock)
    env.close()
    t = clock.starts  # rollout starts, then the end of training; the first rollout is warm-up
    rates = [ROLLOUT / (b - a) for a, b in zip(t[1:], t[2:], strict=False)]
    update_s = [b - a for a, b in zip(clock.ends[1:], t[2:], strict=False)]
    return rates, update_s


def ceiling() -> None:
    from frugal.agents import ppo
    from frugal.envs import make_env

    def best_of(fn, reps):
        fn()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul = 2 * 2048**3 / best_of(lambda: a @ b, 5) / 1e9
    config = build_config("ppo", "atari/Breakout")
    env = make_env(config.env, 1)
    spec = env.spec
    env.close()
    agent = ppo.Agent(config.agent, spec, 8, torch.device("cpu"), seed=0)
    frames = torch.randint(0, 256, (256, *spec.obs_shape), dtype=torch.uint8)
    x = agent._layout(agent._prepare(frames.numpy()))

    def step():
        logits, value = agent.net(x)
        (logits.sum() + value.sum()).backward()

    pass_s = best_of(step, 10)
    cfg = config.agent
    passes = cfg.update_epochs * cfg.num_minibatches
    per_update = pass_s * passes
    print(
        f"CEILING: fp32 2048 matmul {matmul:.1f} GFLOP/s; network forward+backward on 256 frames "
        f"{pass_s * 1000:.0f} ms, x {passes} minibatches = "
        f"{per_update:.2f} s per update (one rollout of {ROLLOUT} env steps)",
        flush=True,
    )


# ----------------------------------------------------------------------------------------- main


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "cartpole", "atari", "ceiling"], default="all")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=4, help="Breakout rollouts per run")
    parser.add_argument(
        "--precision", default="auto", help="frugal's agent.precision on Breakout; several "
        "(auto,fp32) run one frugal variant each"
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", help="frugal's run.device on Breakout")
    parser.add_argument("--frugal-only", action="store_true", help="Breakout: no SB3 runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(describe())
    print(f"torch threads 1; load average at start {os.getloadavg()}", flush=True)
    if args.part == "ceiling":
        ceiling()
        return

    if args.part in ("all", "cartpole"):
        results: dict[str, list[dict]] = {"frugal": [], "sb3": []}
        for rep in range(args.reps):
            order = ["frugal", "sb3"] if rep % 2 == 0 else ["sb3", "frugal"]
            for name in order:
                r = cartpole_frugal(rep) if name == "frugal" else cartpole_sb3(rep)
                results[name].append(r)
                curve = " ".join(f"{s // 1000}k:{ret:.0f}" for s, _, ret in r["curve"])
                print(
                    f"cartpole {name} seed {rep}: first >= {TARGET:.0f} at {r['step']} steps, "
                    f"{r['wall']} s train wall; final {r['final']:.1f}; "
                    f"total train wall {r['total']:.1f} s | {curve}",
                    flush=True,
                )
        for name, rs in results.items():
            hits = sum(r["step"] is not None for r in rs)
            print(
                f"CARTPOLE {name}: reached {TARGET:.0f} in {hits}/{len(rs)} seeds; median "
                f"steps {median([r['step'] for r in rs])}, median train wall to it "
                f"{median([r['wall'] for r in rs])} s, median total train wall "
                f"{median([r['total'] for r in rs]):.1f} s for {CARTPOLE_STEPS} steps",
                flush=True,
            )

    if args.part in ("all", "atari"):
        precisions = args.precision.split(",")
        frugals = {f"frugal-{p}": (f"agent.precision={p}", f"run.device={args.device}")
                   for p in precisions}  # fmt: skip
        names = [*frugals] + ([] if args.frugal_only else ["sb3-dummy", "sb3-subproc"])
        rates: dict[str, list[float]] = {n: [] for n in names}
        updates: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.reps):
            order = names[rep % 3 :] + names[: rep % 3]
            for name in order:
                if name in frugals:
                    r, u = atari_frugal(rep, args.rollouts, frugals[name])
                else:
                    r, u = atari_sb3(rep, args.rollouts, subproc=name == "sb3-subproc")
                rates[name].extend(r)
                updates[name].extend(u)
                print(
                    f"breakout {name} rep {rep}: env steps/s per rollout "
                    + ", ".join(f"{x:.1f}" for x in r)
                    + "; update s per rollout "
                    + ", ".join(f"{x:.1f}" for x in u),
                    flush=True,
                )
        for name in names:
            rollout_s = ROLLOUT / median(rates[name])
            update_s = median(updates[name])
            print(
                f"BREAKOUT {name}: median {median(rates[name]):.1f} env steps/s over "
                f"{len(rates[name])} rollouts; per 1024-step rollout {rollout_s:.1f} s = update "
                f"{update_s:.1f} s + collection {rollout_s - update_s:.1f} s",
                flush=True,
            )
        if args.frugal_only:
            return
        best_sb3 = max(median(rates["sb3-dummy"]), median(rates["sb3-subproc"]))
        for name in frugals:
            print(f"BREAKOUT {name} / best SB3: {median(rates[name]) / best_sb3:.2f}x", flush=True)


if __name__ == "__main__":
    main()
