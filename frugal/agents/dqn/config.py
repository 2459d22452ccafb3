"""DQN's settings, its presets, the preset an env gets by default, and the checks a config must
pass before an agent is built."""

from __future__ import annotations

from dataclasses import dataclass

from frugal.config import Preset, mutable
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets.precision import check_precision


@dataclass
class Config:
    discount: float = 0.99
    n_step: int = 3
    lr: float = mutable(1e-4)
    adam_eps: float = 1.5e-4
    batch_size: int = mutable(32)
    buffer_size: int = 100_000  # transitions, summed over envs
    learning_starts: int = mutable(1_000)  # env steps before the first update
    replay_ratio: float = mutable(0.25)  # updates per env step (0.25 = one update every 4 steps)
    # updates between hard target copies (when tau = 1)
    target_update_interval: int = mutable(1_000)
    tau: float = mutable(1.0)  # 1 = hard copy every interval; < 1 = Polyak averaging every update
    eps_start: float = mutable(1.0)
    eps_end: float = mutable(0.01)
    eps_decay_steps: int = mutable(100_000)  # env steps of the linear decay
    eval_eps: float = mutable(0.0)
    double: bool = True
    dueling: bool = True
    prioritized: bool = False
    per_alpha: float = 0.6
    per_beta_start: float = mutable(0.4)  # importance-sampling exponent at the start
    per_beta_steps: int = mutable(1_000_000)  # env steps of its linear anneal to 1
    per_eps: float = 1e-6
    reward_clip: bool = False  # clip rewards to [-1, 1] in the learner
    grad_clip: float = mutable(10.0)  # max gradient norm
    torso: str = "auto"  # auto | nature | minatar | mlp
    hidden: tuple[int, ...] = (256, 256)  # MLP torso layers
    head_hidden: int = 512  # hidden units of each head stream
    # network passes: auto | fp32 | bf16 autocast (frugal.nets.precision)
    precision: str = mutable("auto")
    channels_last: bool = False  # NHWC memory format for convolutions (a CPU speed lever)


PRESETS = {
    "cartpole": Preset(
        doc="Classic control: MLP 256-256, 3-step double dueling DQN, one update per env step.",
        run=dict(steps=50_000, eval_every=2_500, eval_episodes=10, checkpoint_every=10_000),
        agent=dict(
            lr=5e-4,
            n_step=3,
            batch_size=64,
            buffer_size=50_000,
            learning_starts=1_000,
            replay_ratio=1.0,
            target_update_interval=500,
            eps_decay_steps=10_000,
            eps_end=0.02,
            per_beta_steps=100_000,
            hidden=(256, 256),
            head_hidden=128,
        ),
    ),
    "minatar": Preset(
        doc="MinAtar (Young & Tian 2019): 16@3x3 conv + 128 units, replay 100k, eps over 100k, "
        "one update per env step. Adds double/dueling/3-step/PER over their DQN (PER beta "
        "annealed from 0.4 to 1 over 1M steps).",
        run=dict(steps=1_000_000, eval_every=25_000, eval_episodes=20),
        agent=dict(
            lr=2.5e-4,
            adam_eps=3.125e-4,
            batch_size=32,
            buffer_size=100_000,
            learning_starts=5_000,
            replay_ratio=1.0,
            target_update_interval=1_000,
            eps_decay_steps=100_000,
            eps_end=0.01,
            head_hidden=128,
            prioritized=True,
            per_beta_steps=1_000_000,
        ),
    ),
    "atari": Preset(
        doc="CleanRL dqn_atari settings: Adam 1e-4, batch 32, replay 1M, learning starts 80k, "
        "an update every 4 steps, hard target copy every 1000 steps (250 updates), eps 1->0.01 "
        "over 1M steps, rewards clipped, Nature CNN, 84x84 gray 4-stack, FIRE reset, "
        "no-op starts, life loss ends training episodes. Adds double/dueling/3-step.",
        env=dict(protocol="atari100k", fire_reset=True, obs_size=84, grayscale=True),
        run=dict(steps=10_000_000, eval_every=250_000, eval_episodes=10, eval_envs=5),
        agent=dict(
            lr=1e-4,
            adam_eps=1e-8,
            batch_size=32,
            buffer_size=1_000_000,
            learning_starts=80_000,
            replay_ratio=0.25,
            target_update_interval=250,
            eps_decay_steps=1_000_000,
            eps_end=0.01,
            eval_eps=0.05,
            per_beta_steps=10_000_000,
            reward_clip=True,
            n_step=3,
        ),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return {"atari": "atari", "minatar": "minatar"}.get(spec.suite, "cartpole")


def check(cfg: Config, spec: EnvSpec) -> None:
    """One FrugalError line for the first setting that would crash or silently misbehave."""
    if not spec.discrete:
        raise FrugalError(
            "dqn needs a discrete action space; use ppo, efficientzero or dreamerv3 for "
            "continuous control"
        )
    check_precision(cfg.precision)
    at_least = {
        "n_step": 1,
        "batch_size": 1,
        "buffer_size": 1,
        "learning_starts": 0,
        "target_update_interval": 1,
        "head_hidden": 1,
        "eps_decay_steps": 0,
        "per_beta_steps": 0,
    }
    for key, low in at_least.items():
        if getattr(cfg, key) < low:
            raise FrugalError(f"agent.{key} must be at least {low}, got {getattr(cfg, key)}")
    unit = ("discount", "eps_start", "eps_end", "eval_eps", "per_beta_start")
    for key in unit:
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise FrugalError(f"agent.{key} must be in [0, 1], got {getattr(cfg, key)}")
    if not 0.0 < cfg.tau <= 1.0:
        raise FrugalError(f"agent.tau must be in (0, 1], got {cfg.tau}")
    if cfg.replay_ratio <= 0:
        raise FrugalError(f"agent.replay_ratio must be positive, got {cfg.replay_ratio}")
