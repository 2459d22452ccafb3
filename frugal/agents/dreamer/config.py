"""DreamerV3's settings: the config, the paper's model sizes, the presets and their checks.

`train_ratio` is the paper's: replayed steps per env step, i.e. batch_size * batch_length *
(updates per env step). It is not the `replay_ratio` of DQN and EfficientZero (updates per env
step): DreamerV3 runs train_ratio / (batch_size * batch_length) updates per env step.
"""

from __future__ import annotations

from dataclasses import dataclass

from frugal.agents.base import preset_by_suite
from frugal.config import Preset, mutable
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError, unknown
from frugal.nets.dreamer import ENCODERS, Sizes
from frugal.nets.precision import check_precision

# The paper's model sizes (2023, Table of hyperparameters): GRU units, hidden units of every
# dense layer, CNN channel multiplier, layers of every MLP. "tiny" is for tests only.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(deter=64, units=64, cnn_depth=8, layers=1),
    "XS": dict(deter=256, units=256, cnn_depth=24, layers=1),
    "S": dict(deter=512, units=512, cnn_depth=32, layers=2),
    "M": dict(deter=1024, units=640, cnn_depth=48, layers=3),
    "L": dict(deter=2048, units=768, cnn_depth=64, layers=4),
    "XL": dict(deter=4096, units=1024, cnn_depth=96, layers=5),
}
ACTOR_GRADS = ("auto", "reinforce", "backprop")


@dataclass
class Config:
    size: str = "S"  # tiny | XS | S | M | L | XL (see SIZES)
    stoch: int = 32  # categorical latents
    classes: int = 32  # classes per latent
    unimix: float = 0.01  # uniform mix of latent and actor categoricals
    free_nats: float = mutable(1.0)  # free bits of the dynamics and representation losses
    dyn_scale: float = mutable(0.5)
    rep_scale: float = mutable(0.1)
    batch_size: int = 16
    batch_length: int = 64
    # replayed steps per env step (batch_size * batch_length * updates per env step)
    train_ratio: float = mutable(512.0)
    learning_starts: int = mutable(1_024)  # env steps before the first update
    replay_size: int = 1_000_000  # rows (steps) summed over envs
    model_lr: float = mutable(1e-4)
    model_eps: float = 1e-8
    model_clip: float = mutable(1_000.0)  # global gradient-norm clip
    actor_lr: float = mutable(3e-5)
    actor_eps: float = 1e-5
    actor_clip: float = mutable(100.0)
    critic_lr: float = mutable(3e-5)
    critic_eps: float = 1e-5
    critic_clip: float = mutable(100.0)
    discount: float = 1.0 - 1.0 / 333.0  # the paper's horizon of 333 steps
    imag_horizon: int = 15
    # 0: imagine from every posterior state (paper); else from this many drawn at random
    imag_starts: int = mutable(0)
    return_lambda: float = 0.95
    actor_entropy: float = mutable(3e-4)
    slow_critic_fraction: float = 0.02  # EMA mix per update
    slow_reg: float = mutable(1.0)  # weight of the regulariser towards the slow critic
    retnorm_decay: float = 0.99
    retnorm_limit: float = 1.0
    actor_min_std: float = 0.1
    actor_max_std: float = 1.0
    actor_grad: str = "auto"  # auto (reinforce if discrete, else backprop) | reinforce | backprop
    # evaluation samples the actor (as the paper) instead of taking its mode
    eval_sample: bool = mutable(True)
    encoder: str = "auto"  # auto | cnn (64x64-style pixels) | grid (MinAtar-size pixels) | mlp
    compile: bool = False  # torch.compile the recurrent steps
    # the world model's encoder, decoder and heads: auto | fp32 | bf16 autocast
    # (frugal.nets.precision); the recurrent state and the actor-critic stay fp32
    precision: str = mutable("auto")
    # pixel envs: videos show open-loop predictions re-synced this often (0: no model panel)
    video_open_loop: int = mutable(50)


def _cpu_budget(latents: int, **agent: float) -> dict[str, float | int | str]:
    """What the CPU presets share: size tiny, latents x latents categoricals, imagination from
    256 random posterior states, model lr 3e-4, actor and critic lr 1e-4."""
    return dict(
        size="tiny",
        stoch=latents,
        classes=latents,
        imag_starts=256,
        model_lr=3e-4,
        actor_lr=1e-4,
        critic_lr=1e-4,
        **agent,
    )


# the run settings of the classic-control presets
CLASSIC_RUN = dict(steps=50_000, eval_every=5_000, eval_episodes=10, checkpoint_every=10_000)

PRESETS = {
    "atari100k": Preset(
        doc="Atari 100k as in the paper: size S, 64x64 RGB, action repeat 4, no sticky actions, "
        "no life-loss terminals, train ratio 1024 replayed steps per env step (one 16x64 update "
        "per env step).",
        env=dict(
            protocol="atari100k", obs_size=64, grayscale=False, frame_stack=1, episodic_life=False
        ),
        run=dict(
            steps=100_000, eval_every=10_000, eval_episodes=10, eval_envs=5, checkpoint_every=10_000
        ),
        agent=dict(size="S", train_ratio=1024.0, learning_starts=1_024, replay_size=200_000),
    ),
    "minatar": Preset(
        doc="MinAtar 10x10 grids on a CPU budget (the paper has no MinAtar setting): size tiny "
        "with the small grid CNN, 16x16 latents, train ratio 64 replayed steps per env step (one "
        "16x64 update every 16 env steps), imagination from 256 random posterior states, model "
        "lr 3e-4, actor and critic lr 1e-4.",
        run=dict(
            steps=100_000, eval_every=10_000, eval_episodes=10, eval_envs=5, checkpoint_every=10_000
        ),
        agent=_cpu_budget(latents=16, train_ratio=64.0, learning_starts=2_048, replay_size=200_000),
    ),
    "cartpole": Preset(
        doc="Classic control, discrete actions, on a CPU budget: size tiny (64 units), 8x8 "
        "latents, the paper's proprioceptive train ratio of 512 replayed steps per env step (one "
        "16x64 update every 2 env steps), imagination from 256 random posterior states, model lr "
        "3e-4, actor and critic lr 1e-4.",
        run=CLASSIC_RUN,
        agent=_cpu_budget(latents=8, train_ratio=512.0, learning_starts=1_024, replay_size=100_000),
    ),
    "pendulum": Preset(
        doc="Classic control, continuous actions (dynamics backprop), on a CPU budget: size tiny, "
        "8x8 latents, train ratio 128 replayed steps per env step (one 16x64 update every 8 env "
        "steps), imagination from 256 random posterior states, model lr 3e-4, actor and critic "
        "lr 1e-4.",
        run=CLASSIC_RUN,
        agent=_cpu_budget(latents=8, train_ratio=128.0, learning_starts=1_024, replay_size=100_000),
    ),
    "dmc": Preset(
        doc="DeepMind Control as in the paper (2023) and its first release's dmc_proprio and "
        "dmc_vision configs: size S (deter 512, units 512, CNN depth 32, 2 layers), train ratio "
        "512 replayed steps per agent step (one 16x64 update every 2 agent steps, every 4 env "
        "frames at action repeat 2), 4 envs, 500k env frames; env.obs=pixels gives 64x64 RGB, "
        "one frame per step (no stack). The 2024 release uses a 12M-parameter size that the "
        "size table here does not have. On a CPU, override agent.size (XS) and --steps, and say "
        "so where you report it.",
        env=dict(protocol="dmc", num_envs=4, obs_size=64, grayscale=False, frame_stack=1),
        run=dict(
            steps=500_000, eval_every=10_000, eval_episodes=10, eval_envs=5, checkpoint_every=10_000
        ),
        agent=dict(size="S", train_ratio=512.0, learning_starts=1_024, replay_size=1_000_000),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return preset_by_suite(spec, atari="atari100k", dmc="dmc")


def encoder_kind(cfg: Config, spec: EnvSpec) -> str:
    """The encoder `cfg.encoder` names for this env: auto is mlp for vectors, grid for pixels of
    at most 16x16, cnn for larger ones."""
    if cfg.encoder == "auto":
        if not spec.pixels:
            return "mlp"
        return "grid" if spec.obs_shape[-1] <= 16 else "cnn"
    if cfg.encoder not in ENCODERS:
        raise unknown("agent.encoder", cfg.encoder, ("auto", *ENCODERS))
    if cfg.encoder != "mlp" and not spec.pixels:
        raise FrugalError(
            f"agent.encoder={cfg.encoder} needs pixel observations; use agent.encoder=mlp"
        )
    return cfg.encoder


def net_sizes(cfg: Config) -> Sizes:
    """The networks' sizes: `cfg.size` from the table, with the config's latents."""
    if cfg.size not in SIZES:
        raise unknown("DreamerV3 size", cfg.size, SIZES)
    return Sizes(**SIZES[cfg.size], stoch=cfg.stoch, classes=cfg.classes)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise FrugalError(message)


def validate(cfg: Config, spec: EnvSpec, num_envs: int) -> None:
    """One clear error for a setting that would otherwise fail later or silently misbehave."""
    net_sizes(cfg)
    encoder_kind(cfg, spec)
    check_precision(cfg.precision)
    if cfg.actor_grad not in ACTOR_GRADS:
        raise unknown("agent.actor_grad", cfg.actor_grad, ACTOR_GRADS)
    _check(
        not (cfg.actor_grad == "backprop" and spec.discrete),
        "agent.actor_grad=backprop needs continuous actions; use auto or reinforce",
    )
    for key in ("stoch", "classes", "batch_size", "batch_length", "imag_horizon"):
        value = getattr(cfg, key)
        _check(value >= 1, f"agent.{key} must be at least 1, got {value}")
    for key in ("learning_starts", "imag_starts", "video_open_loop"):
        value = getattr(cfg, key)
        _check(value >= 0, f"agent.{key} must be at least 0, got {value}")
    rows = cfg.replay_size // num_envs
    _check(
        rows >= cfg.batch_length,
        f"agent.replay_size={cfg.replay_size} holds {rows} steps per env, fewer than "
        f"agent.batch_length={cfg.batch_length}",
    )
    _check(cfg.train_ratio >= 0, f"agent.train_ratio must be at least 0, got {cfg.train_ratio}")
    for key in ("model_lr", "actor_lr", "critic_lr", "model_eps", "actor_eps", "critic_eps"):
        value = getattr(cfg, key)
        _check(value > 0, f"agent.{key} must be positive, got {value}")
    _check(cfg.retnorm_limit > 0, f"agent.retnorm_limit must be positive, got {cfg.retnorm_limit}")
    for key in ("discount", "slow_critic_fraction"):
        value = getattr(cfg, key)
        _check(0 < value <= 1, f"agent.{key} must be in (0, 1], got {value}")
    for key in ("unimix", "retnorm_decay"):
        value = getattr(cfg, key)
        _check(0 <= value < 1, f"agent.{key} must be in [0, 1), got {value}")
    _check(
        0 <= cfg.return_lambda <= 1,
        f"agent.return_lambda must be in [0, 1], got {cfg.return_lambda}",
    )
    _check(
        0 < cfg.actor_min_std <= cfg.actor_max_std,
        f"agent.actor_min_std and actor_max_std need 0 < min <= max, got {cfg.actor_min_std} "
        f"and {cfg.actor_max_std}",
    )
