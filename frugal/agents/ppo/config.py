"""PPO's settings, its presets, the preset an env gets by default, and the checks a config must
pass before an agent is built."""

from __future__ import annotations

from dataclasses import dataclass

from frugal.agents.base import preset_by_suite
from frugal.config import Preset, mutable
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets.precision import check_precision
from frugal.nets.torsos import TORSOS


@dataclass
class Config:
    num_steps: int = 128  # rollout length per env; one update per num_envs * num_steps env steps
    num_minibatches: int = mutable(4)
    update_epochs: int = mutable(4)
    discount: float = 0.99
    gae_lambda: float = 0.95
    lr: float = mutable(2.5e-4)
    adam_eps: float = 1e-5
    # Linear annealing horizon in env steps: lr (and the clip range with clip_anneal) decays
    # from its value to 0 over this many env steps, then stays at 0; 0 = no annealing. A field of
    # its own rather than run.steps: the agent never sees the runner's clock, and extending a run
    # with `frugal resume --steps` must not silently rescale a schedule already half followed
    # (to keep learning past it, resume with a larger agent.anneal_steps: a mutable key).
    anneal_steps: int = mutable(0)
    clip_range: float = mutable(0.2)
    clip_anneal: bool = mutable(False)
    # clip the value update to +-clip_range around the rollout's values
    clip_value: bool = mutable(True)
    ent_coef: float = mutable(0.01)
    vf_coef: float = mutable(0.5)
    grad_clip: float = mutable(0.5)  # max gradient norm
    norm_adv: bool = mutable(True)  # normalise advantages per minibatch
    target_kl: float | None = mutable(None)  # stop the epochs early once approx KL exceeds this
    reward_clip: bool = False  # clip raw rewards to [-1, 1] (Atari)
    norm_obs: bool = False  # running mean/std observation normalisation (vector obs)
    norm_reward: bool = False  # divide rewards by the running std of the discounted return
    clip_obs: float = 10.0
    clip_reward: float = 10.0  # bound on normalised rewards
    torso: str = "auto"  # auto | nature | minatar (pixels) | mlp (vectors)
    hidden: tuple[int, ...] = (64, 64)  # tanh MLP layers of actor and critic (vector obs)
    features: int = 512  # ReLU layer after a pixel torso, shared by both heads; 0 = none
    init_log_std: float = 0.0  # Gaussian policies: initial log standard deviation
    channels_last: bool = False  # NHWC memory format for the pixel torso (a CPU speed lever)
    # the update's network passes: auto | fp32 | bf16 autocast (frugal.nets.precision); acting
    # runs fp32 (a pass over a few envs)
    precision: str = mutable("auto")


PRESETS = {
    "atari": Preset(
        doc="CleanRL ppo_atari (Huang et al. 2022): 8 envs x 128 steps, 4 minibatches, 4 epochs, "
        "clip 0.1, lr 2.5e-4 annealed to 0 over 10M steps, Adam eps 1e-5, entropy 0.01, value "
        "coef 0.5, grad norm 0.5, GAE 0.99/0.95, rewards clipped, Nature CNN + 512 shared by "
        "both heads (NHWC memory format: faster convolutions on CPU), 84x84 gray 4-stack. Env "
        "protocol atari100k with FIRE reset: no sticky actions, up to 30 no-ops, life loss ends "
        "training episodes -- the NoFrameskip-v4 setup behind the published PPO Breakout scores "
        "(CleanRL 414.7, SB3 zoo 398), which machado's sticky actions and full-game training "
        "would make incomparable. Deviations from the paper (Schulman et al. 2017, Atari table): "
        "4 epochs (paper 3), value coef 0.5 (paper 1), clip range held at 0.1 (paper anneals it "
        "with the lr); value clipping, grad-norm clipping and per-minibatch advantage "
        "normalisation come from OpenAI baselines' PPO2, not the paper.",
        env=dict(
            protocol="atari100k",
            fire_reset=True,
            obs_size=84,
            grayscale=True,
            frame_stack=4,
            num_envs=8,
        ),
        run=dict(
            steps=10_000_000,
            eval_every=250_880,  # multiples of the 1024-step rollout
            eval_episodes=10,
            eval_envs=5,
            log_every=10_240,
            checkpoint_every=102_400,  # rollout boundaries: a resume restarts no rollout
        ),
        agent=dict(
            num_steps=128,
            num_minibatches=4,
            update_epochs=4,
            clip_range=0.1,
            lr=2.5e-4,
            anneal_steps=10_000_000,
            ent_coef=0.01,
            vf_coef=0.5,
            grad_clip=0.5,
            discount=0.99,
            gae_lambda=0.95,
            reward_clip=True,
            channels_last=True,
        ),
    ),
    "minatar": Preset(
        doc="MinAtar: the atari preset's algorithm on the 10x10 grids (16@3x3 conv + 512), "
        "clip 0.2, 5M steps. Not benchmarked; a starting point, not a tuned recipe.",
        env=dict(num_envs=8),
        run=dict(steps=5_000_000, eval_every=102_400, eval_episodes=20, checkpoint_every=102_400),
        agent=dict(
            num_steps=128,
            num_minibatches=4,
            update_epochs=4,
            clip_range=0.2,
            lr=2.5e-4,
            anneal_steps=5_000_000,
            ent_coef=0.01,
        ),
    ),
    "cartpole": Preset(
        doc="Classic control with discrete actions, the RL Zoo's CartPole-v1 PPO: 8 envs x 32 "
        "steps, one minibatch of 256, 20 epochs, lr 1e-3 and clip 0.2 annealed to 0 over 100k "
        "steps, GAE 0.98/0.8, no entropy bonus, no value clipping, separate tanh 64-64 actor and "
        "critic. Solves CartPole (eval 500) in well under 100k steps. Deviations from the "
        "paper: the short-horizon discount and lambda, one large minibatch, many epochs, "
        "no value clipping (clipping unscaled returns of ~50 to +-0.2 steps stalls the critic).",
        env=dict(num_envs=8),
        run=dict(
            steps=100_000,
            eval_every=5_120,
            eval_episodes=10,
            log_every=2_560,
            checkpoint_every=10_240,
        ),
        agent=dict(
            num_steps=32,
            num_minibatches=1,
            update_epochs=20,
            discount=0.98,
            gae_lambda=0.8,
            lr=1e-3,
            anneal_steps=100_000,
            clip_range=0.2,
            clip_anneal=True,
            clip_value=False,
            ent_coef=0.0,
        ),
    ),
    "pendulum": Preset(
        doc="Continuous control (Pendulum-v1 and similar Box-action tasks): diagonal Gaussian "
        "with state-independent log-std, separate tanh 64-64 actor and critic, running "
        "observation and return normalisation, 4 envs x 512 steps, 32 minibatches of 64, 10 "
        "epochs, lr 1e-3 annealed over 300k steps, GAE 0.9/0.95, no entropy bonus. Deviations "
        "from the paper's MuJoCo settings (1 env x 2048, lr 3e-4, discount 0.99): Pendulum's "
        "dense reward learns faster with discount 0.9 (as in the RL Zoo) and a larger learning "
        "rate; with discount 0.95 one seed in three sat at -550 for 150k steps.",
        env=dict(num_envs=4),
        run=dict(
            steps=300_000,
            eval_every=10_240,
            eval_episodes=10,
            log_every=2_048,
            checkpoint_every=20_480,
        ),
        agent=dict(
            num_steps=512,
            num_minibatches=32,
            update_epochs=10,
            discount=0.9,
            gae_lambda=0.95,
            lr=1e-3,
            anneal_steps=300_000,
            clip_range=0.2,
            ent_coef=0.0,
            norm_obs=True,
            norm_reward=True,
        ),
    ),
    "dmc": Preset(
        doc="DeepMind Control with the paper's MuJoCo settings (Schulman et al. 2017): 1 env x "
        "2048 agent steps, 32 minibatches of 64, 10 epochs, lr 3e-4 annealed to 0 over 500k "
        "agent steps (1M env frames at action repeat 2), clip 0.2, GAE 0.99/0.95, no entropy "
        "bonus, separate tanh 64-64 actor and critic with state-independent log-std, running "
        "observation and return normalisation. Not in the paper: the DMC tasks and the "
        "normalisation (from OpenAI baselines); env.obs=pixels (with agent.norm_obs=false) gives "
        "64x64 RGB x3 (as DrQ) to the Nature CNN. Not benchmarked; a baseline, not a tuned "
        "recipe.",
        env=dict(protocol="dmc", num_envs=1, obs_size=64, grayscale=False, frame_stack=3),
        run=dict(
            steps=1_000_000,
            eval_every=40_960,  # multiples of the 2048-step rollout (4096 frames)
            eval_episodes=10,
            log_every=4_096,
            checkpoint_every=40_960,
        ),
        agent=dict(
            num_steps=2048,
            num_minibatches=32,
            update_epochs=10,
            discount=0.99,
            gae_lambda=0.95,
            lr=3e-4,
            anneal_steps=500_000,
            clip_range=0.2,
            ent_coef=0.0,
            norm_obs=True,
            norm_reward=True,
        ),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return preset_by_suite(spec, atari="atari", dmc="dmc")


def check(cfg: Config, spec: EnvSpec, num_envs: int) -> None:
    """One FrugalError line for the first setting that would crash or silently misbehave."""
    if cfg.torso not in TORSOS:
        raise FrugalError(f"agent.torso must be one of {', '.join(TORSOS)}, got '{cfg.torso}'")
    if spec.pixels and cfg.torso == "mlp":
        raise FrugalError("agent.torso=mlp needs vector observations; use auto, nature or minatar")
    if not spec.pixels and cfg.torso not in ("auto", "mlp"):
        raise FrugalError(f"agent.torso={cfg.torso} needs pixel observations; use auto or mlp")
    if cfg.norm_obs and spec.pixels:
        raise FrugalError("agent.norm_obs is for vector observations (pixels are scaled by 1/255)")
    if cfg.num_steps < 1:
        raise FrugalError(f"agent.num_steps must be at least 1, got {cfg.num_steps}")
    if not 1 <= cfg.num_minibatches <= cfg.num_steps * num_envs:
        raise FrugalError(
            f"agent.num_minibatches must be between 1 and num_steps * num_envs = "
            f"{cfg.num_steps * num_envs}, got {cfg.num_minibatches}"
        )
    if cfg.update_epochs < 1:
        raise FrugalError(f"agent.update_epochs must be at least 1, got {cfg.update_epochs}")
    check_precision(cfg.precision)
    for key in ("discount", "gae_lambda"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise FrugalError(f"agent.{key} must be in [0, 1], got {getattr(cfg, key)}")
    for key in ("clip_range", "clip_obs", "clip_reward"):
        if getattr(cfg, key) <= 0:
            raise FrugalError(f"agent.{key} must be positive, got {getattr(cfg, key)}")
    if cfg.target_kl is not None and cfg.target_kl <= 0:
        raise FrugalError(f"agent.target_kl must be positive or none, got {cfg.target_kl}")
    if cfg.features < 0:
        raise FrugalError(f"agent.features must be 0 (none) or more, got {cfg.features}")
