"""EfficientZero V1 (Ye et al. 2021) and V2 (Wang et al. 2024): MuZero with a self-supervised
consistency loss, learned in a latent model and acted with batched tree search.

One agent, two versions (`version`):
  v1: pUCT search with Dirichlet root noise, actions sampled from the visit distribution with a
      temperature that decays with training; value-prefix LSTM; n-step TD value targets whose
      horizon shrinks with the age of the data (off-policy correction); policy targets from
      re-running the search with the target model on 99% of sampled positions.
  v2: Gumbel search (Gumbel-top-m + sequential halving at the root), acting with the Gumbel
      action; per-step reward head; mixed value targets (search-based value estimation, SVE):
      root values of a fresh search for old data, n-step TD for recent data; improved-policy
      targets; sampled search for Box actions (K candidates per node: the policy mean, draws from
      the policy and from a widened policy, with prior logits log pi - log beta).

Every update: sample positions by priority from the game segments, rebuild their unroll windows,
reanalyse (target-model values for the bootstraps, a batched search over every position of the
unroll for the policy targets and SVE values), then unroll the model K steps with the dynamics
gradient halved at every step and minimise reward (or value-prefix), value and policy
cross-entropies plus the negative cosine between the predicted and the (stop-gradient) observed
next latent's SimSiam projections. Priorities are the value error at the sampled position.
Collection and training never race: the runner runs exactly `replay_ratio` updates per env step,
then `final_update_ratio * steps` in all (EfficientZero's 120k updates for 100k steps).

Deviations from the papers' code, on purpose:
- Acting uses the latest online network (no separate self-play copy refreshed every 100 steps);
  reanalysis and bootstrap values use the target network refreshed every 200 updates, as there.
- Actions enter the dynamics as one-hot planes (V1: one plane a/A; V2: a learned embedding).
- Game ends: a truncated game bootstraps from its true final observation, and positions after a
  truncation are masked; after a terminal, values and rewards are trained towards 0. Unroll
  steps past a game's end replay the stored actions of the next game (the papers: random ones).
- V2's policy mask for positions whose improved-policy argmax differs from the search's chosen
  action is not applied. Sampled search puts the policy mean in slot 0 of the candidates.
- The atari100k (V2) preset keeps the per-step reward head; V2's released Atari config uses the
  value-prefix LSTM (set agent.value_prefix=true for that).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from frugal.agents.base import ActState, EnvSpec, Transition, preset_by_suite, ratio_updates_due
from frugal.config import Preset, mutable
from frugal.errors import FrugalError, unknown
from frugal.nets.muzero import MuZeroNet, NetConfig, scale_gradient
from frugal.nets.support import Support
from frugal.replay.segments import (
    SegmentReplay,
    alive_mask,
    off_policy_td_steps,
    reward_targets,
    search_value_mask,
    td_targets,
)
from frugal.search import Root, Step, search
from frugal.search.mcts import RESCALES

VERSIONS = ("v2", "v1")


@dataclass
class Config:
    version: str = "v2"  # v2 (Gumbel, reward, SVE, sampled actions) | v1 (pUCT, value prefix)
    # ---- networks
    net: str = "auto"  # auto | resnet (Atari) | conv (MinAtar) | mlp (vectors)
    channels: int = 64  # conv bodies
    blocks: int = 1  # residual blocks in representation, dynamics and prediction
    reduced_channels: int = 16  # 1x1 conv before the heads
    fc: tuple[int, ...] = (32,)  # head hidden layers (conv bodies)
    hidden: int = 128  # MLP body width
    latent: int = 64  # MLP latent size
    value_prefix: bool | None = None  # value-prefix LSTM; None: v1 yes, v2 no
    lstm_hidden: int = 512
    lstm_horizon: int = 5  # the value-prefix LSTM is reset every this many unroll steps
    proj_hidden: int = 1024  # SimSiam projection hidden / output / predictor hidden
    proj_out: int = 1024
    pred_hidden: int = 512
    latent_norm: bool = True  # min-max normalise latents
    value_support: tuple[float, ...] = (-300.0, 300.0, 601.0)  # low, high, bins in h-space
    reward_support: tuple[float, ...] = (-300.0, 300.0, 601.0)
    # ---- search
    num_simulations: int = mutable(16)
    discount: float = 0.997  # per agent step
    max_considered_actions: int = 16  # Gumbel m
    c_visit: float = 50.0
    c_scale: float = 0.1
    gumbel_rescale: str = mutable(
        "node"
    )  # node (mctx) | tree (EZ V2's released search): see frugal.search
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    value_delta_max: float = 0.01
    temperature_updates: tuple[int, ...] = mutable((50_000, 75_000))  # v1: T 1 -> 0.5 -> 0.25
    num_sampled_actions: int = 16  # continuous: candidates per node
    policy_sampled_actions: int = 4  # ... of which the mean and draws from the policy
    std_magnification: float = 3.0  # the others come from the policy with its std scaled
    min_std: float = 0.05
    # ---- targets and losses
    batch_size: int = mutable(256)
    unroll_steps: int = 5
    td_steps: int = 5
    auto_td_steps: int = 30_000  # v1: TD horizon shrinks by 1 per this many transitions of age
    reanalyze_ratio: float = mutable(1.0)  # share of sampled positions whose policy is re-searched
    mixed_value_start: int = mutable(30_000)  # v2 SVE: updates before search values are used
    mixed_value_threshold: int = mutable(5_000)  # v2 SVE: the newest transitions keep TD targets
    reward_coef: float = mutable(1.0)
    value_coef: float = mutable(0.25)
    policy_coef: float = mutable(1.0)
    consistency_coef: float = mutable(2.0)
    entropy_coef: float = mutable(0.0)
    reward_clip: bool = False  # clip rewards to [-1, 1] in the learner
    augment: bool | None = None  # random shift + intensity; None: for Atari-sized pixels
    # ---- replay and schedule
    buffer_size: int = 100_000
    learning_starts: int = mutable(2_000)  # env steps before the first update
    replay_ratio: float = mutable(1.0)  # updates per env step while collecting
    final_update_ratio: float = mutable(
        0.0
    )  # total updates at the end, per env step (1.2: 120k @ 100k)
    per_alpha: float = 0.6
    per_beta: float = 0.4  # annealed linearly to 1 over `per_beta_updates`
    per_beta_updates: int = mutable(120_000)
    per_eps: float = 1e-6
    # ---- optimisation
    optimizer: str = "sgd"  # sgd (with momentum) | adam (AdamW: decoupled weight decay)
    lr: float = mutable(0.2)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_warmup_updates: int = mutable(1_000)
    lr_decay_updates: int = mutable(
        100_000
    )  # lr *= lr_decay_rate after this many updates (0 = never)
    lr_decay_rate: float = 0.1
    grad_clip: float = mutable(5.0)
    target_update_interval: int = mutable(200)  # updates between target-model refreshes
    amp: bool = mutable(False)  # mixed precision (bf16 on CPU, fp16 + grad scaler on CUDA)


_ATARI_ENV = dict(protocol="atari100k", obs_size=96, grayscale=False, frame_stack=4)
_ATARI_COMMON = dict(
    net="resnet",
    channels=64,
    blocks=1,
    reduced_channels=16,
    fc=(32,),
    batch_size=256,
    unroll_steps=5,
    td_steps=5,
    buffer_size=100_000,  # every transition of a 100k run
    learning_starts=2_000,
    replay_ratio=1.0,
    final_update_ratio=1.2,
    optimizer="sgd",
    lr=0.2,
    momentum=0.9,
    weight_decay=1e-4,
    lr_warmup_updates=1_000,
    grad_clip=5.0,
    target_update_interval=200,
    reward_clip=True,
    augment=True,
    per_beta_updates=120_000,
)

# What the CPU-sized presets (minatar, cartpole, pendulum) share.
_CPU_COMMON = dict(
    version="v2",
    blocks=1,
    latent=64,
    proj_hidden=128,
    proj_out=128,
    pred_hidden=64,
    discount=0.99,
    batch_size=128,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    lr_decay_updates=0,
    value_coef=0.5,
    consistency_coef=2.0,
)

PRESETS = {
    "atari100k": Preset(
        doc="EfficientZero V2 on Atari 100k (its released config): 96x96 RGB x4, ResNet 64ch, "
        "Gumbel 16 sims with 4 considered actions, per-step reward, SVE after 30k updates for "
        "data older than 5k transitions, supports [-300,300] in 51 bins, losses r1 v0.5 p1 "
        "c5 ent5e-3, SGD 0.2 (1k warm-up, no decay), PER a1 b1, 4 envs, 120k updates for 100k "
        "steps. Deviations: see the module docstring (one-hot action planes, per-step reward).",
        env=dict(_ATARI_ENV, num_envs=4),
        run=dict(steps=100_000, eval_every=10_000, eval_episodes=32, eval_envs=8),
        agent=dict(
            _ATARI_COMMON,
            version="v2",
            value_support=(-300.0, 300.0, 51.0),
            reward_support=(-300.0, 300.0, 51.0),
            num_simulations=16,
            max_considered_actions=4,
            discount=0.997,
            pred_hidden=256,
            value_coef=0.5,
            consistency_coef=5.0,
            entropy_coef=5e-3,
            reanalyze_ratio=1.0,
            mixed_value_start=30_000,
            mixed_value_threshold=5_000,
            lr_decay_updates=0,
            per_alpha=1.0,
            per_beta=1.0,
        ),
    ),
    "atari100k-v1": Preset(
        doc="EfficientZero V1 on Atari 100k (the paper's config): 96x96 RGB x4, ResNet 64ch, "
        "value-prefix LSTM 512 (horizon 5), pUCT 50 sims with Dirichlet 0.3/0.25, discount "
        "0.997^4 per agent step, supports [-300,300] in 601 bins, losses r1 v0.25 p1 c2, "
        "TD 5 with off-policy horizon, 99% policy reanalysis, SGD 0.2 (1k warm-up, x0.1 at "
        "100k), PER a0.6 b0.4, 120k updates for 100k steps, temperature 1/0.5/0.25.",
        env=_ATARI_ENV,
        run=dict(steps=100_000, eval_every=10_000, eval_episodes=32, eval_envs=8),
        agent=dict(
            _ATARI_COMMON,
            version="v1",
            num_simulations=50,
            discount=0.997**4,
            value_coef=0.25,
            consistency_coef=2.0,
            reanalyze_ratio=0.99,
            auto_td_steps=30_000,  # 0.3 x the 100k training steps before the last 20k
            temperature_updates=(50_000, 75_000),  # 50% and 75% of the 100k training steps
            lr_decay_updates=100_000,
            per_alpha=0.6,
            per_beta=0.4,
        ),
    ),
    "minatar": Preset(
        doc="CPU-sized EfficientZero V2 for MinAtar (not in the papers): a 16-channel conv "
        "torso with one residual block flattened into an MLP latent of 64 (dynamics and heads "
        "are MLPs of 128), no augmentation, projection 128, Gumbel 16 sims, Adam 1e-3, 8 envs, "
        "batch 128, an update every 4 env steps (24.5k updates in 100k steps, where the papers "
        "do 1.2 per step at batch 256: ~2 core-hours per run), SVE after 3k updates for data "
        "older than 5k transitions.",
        env=dict(num_envs=8),
        run=dict(steps=100_000, eval_every=10_000, eval_episodes=20),
        agent=dict(
            _CPU_COMMON,
            net="conv",
            channels=16,
            hidden=128,
            fc=(128,),
            lstm_hidden=128,
            value_support=(-20.0, 20.0, 41.0),
            reward_support=(-5.0, 5.0, 11.0),
            num_simulations=16,
            buffer_size=100_000,
            learning_starts=2_000,
            replay_ratio=0.25,
            lr_warmup_updates=500,
            entropy_coef=5e-3,
            mixed_value_start=3_000,
            mixed_value_threshold=5_000,
            per_beta_updates=25_000,
            target_update_interval=200,
            augment=False,
        ),
    ),
    "cartpole": Preset(
        doc="CPU-sized EfficientZero V2 for classic control (agent.version=v1 for V1): MLP "
        "64, latent 64, discount 0.99, supports [-15,15]/[-5,5], 8 simulations (Gumbel, or "
        "pUCT for v1), Adam 1e-3, batch 128, an update every 2 env steps, SVE after 3k updates.",
        run=dict(steps=30_000, eval_every=2_500, eval_episodes=10, checkpoint_every=10_000),
        env=dict(num_envs=4),
        agent=dict(
            _CPU_COMMON,
            net="mlp",
            hidden=64,
            fc=(64,),
            lstm_hidden=64,
            value_support=(-15.0, 15.0, 31.0),
            reward_support=(-5.0, 5.0, 11.0),
            num_simulations=8,
            buffer_size=50_000,
            learning_starts=1_000,
            replay_ratio=0.5,
            lr_warmup_updates=200,
            entropy_coef=0.0,
            auto_td_steps=10_000,
            reanalyze_ratio=1.0,
            mixed_value_start=3_000,
            mixed_value_threshold=2_000,
            temperature_updates=(7_000, 11_000),
            per_beta_updates=15_000,
            target_update_interval=100,
        ),
    ),
    "pendulum": Preset(
        doc="CPU-sized EfficientZero V2 sampled search for Box actions (Pendulum): MLP 128, "
        "16 candidates per node (mean + 3 policy draws + 12 with std x3), Gumbel 16 sims over "
        "16 considered, squashed Gaussian policy, entropy 5e-3, Adam 1e-3, discount 0.99.",
        run=dict(steps=50_000, eval_every=5_000, eval_episodes=10),
        env=dict(num_envs=4),
        agent=dict(
            _CPU_COMMON,
            net="mlp",
            hidden=128,
            fc=(128,),
            value_support=(-60.0, 60.0, 121.0),
            reward_support=(-5.0, 5.0, 21.0),
            num_simulations=16,
            max_considered_actions=16,
            num_sampled_actions=16,
            policy_sampled_actions=4,
            buffer_size=50_000,
            learning_starts=1_000,
            replay_ratio=0.5,
            lr_warmup_updates=200,
            entropy_coef=5e-3,
            mixed_value_start=5_000,
            mixed_value_threshold=4_000,
            per_beta_updates=25_000,
            target_update_interval=100,
        ),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return preset_by_suite(spec, atari="atari100k")


# -------------------------------------------------------------------------- pure functions


def consistency_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SimSiam negative cosine similarity, [N, D] x [N, D] -> [N]; the target branch is
    detached (stop-gradient), so only the online branch receives gradient."""
    return -F.cosine_similarity(predicted, target.detach(), dim=-1)


def visit_temperature(updates: int, thresholds: tuple[int, ...]) -> float:
    """EfficientZero V1's schedule: 1, then halved after each threshold (1, 0.5, 0.25)."""
    return 0.5 ** sum(updates >= t for t in thresholds)


def squashed_gaussian(out: torch.Tensor, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy head [N, 2D] -> (mean [N, D], std [N, D]) of the pre-tanh Gaussian."""
    mean, raw = out.float().chunk(2, dim=-1)
    return mean, F.softplus(raw) + min_std


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log density summed over the last dim: u [..., D] -> [...]."""
    z = (u - mean) / std
    return (-0.5 * z * z - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def sample_candidates(
    mean: torch.Tensor,
    std: torch.Tensor,
    num: int,
    num_policy: int,
    magnification: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K candidate actions per node for sampled search: slot 0 the policy mean, slots
    1..num_policy-1 draws from the policy, the rest from the policy with its std magnified.

    mean, std [N, D] (pre-tanh) -> (actions [N, K, D] in (-1, 1), prior logits [N, K] =
    log pi(u) - log beta(u), beta the mixture the slots were drawn from)."""
    n, d = mean.shape
    eps = torch.randn((n, num, d), generator=generator, device=generator.device).to(mean.device)
    eps[:, 0] = 0.0
    scale = torch.ones(num, device=mean.device)
    scale[num_policy:] = magnification
    u = mean[:, None] + std[:, None] * scale[None, :, None] * eps
    log_pi = gaussian_log_prob(u, mean[:, None], std[:, None])
    log_wide = gaussian_log_prob(u, mean[:, None], magnification * std[:, None])
    frac = num_policy / num
    log_beta = torch.logaddexp(log_pi + math.log(frac), log_wide + math.log(max(1 - frac, 1e-12)))
    return torch.tanh(u).clamp(-1 + 1e-6, 1 - 1e-6), log_pi - log_beta


def augment_pixels(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """DrQ-style random shift (replicate-pad by `pad`, random crop back) and intensity
    (x * (1 + 0.05 clip(N(0,1), -2, 2))) per sample: uint8/float [N, C, H, W] -> float."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=generator.device)
    shifts = shifts.to(dev)
    rows = shifts[:, 0, None] + torch.arange(h, device=dev)[None]  # [N, H]
    cols = shifts[:, 1, None] + torch.arange(w, device=dev)[None]  # [N, W]
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    noise = torch.randn((n, 1, 1, 1), generator=generator, device=generator.device).to(dev)
    return out.permute(0, 3, 1, 2) * (1.0 + 0.05 * noise.clamp(-2.0, 2.0))


# ---------------------------------------------------------------------------------- agent


class Agent:
    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        if cfg.version not in VERSIONS:
            raise unknown("agent.version", cfg.version, VERSIONS)
        if cfg.version == "v1" and not spec.discrete:
            raise FrugalError(
                "EfficientZero V1 (pUCT) needs discrete actions; use agent.version=v2"
            )
        if cfg.gumbel_rescale not in RESCALES:
            raise unknown("agent.gumbel_rescale", cfg.gumbel_rescale, RESCALES)
        if cfg.optimizer not in ("sgd", "adam"):
            raise unknown("agent.optimizer", cfg.optimizer, ("sgd", "adam"))
        if cfg.net not in ("auto", "resnet", "conv", "mlp"):
            raise unknown("agent.net", cfg.net, ("auto", "resnet", "conv", "mlp"))
        if not 1 <= cfg.policy_sampled_actions <= cfg.num_sampled_actions:
            raise FrugalError("agent.policy_sampled_actions must be in [1, num_sampled_actions]")
        self.cfg, self.spec, self.device, self.num_envs = cfg, spec, device, num_envs
        self.v1 = cfg.version == "v1"
        self.discrete = spec.discrete
        self.value_prefix = self.v1 if cfg.value_prefix is None else cfg.value_prefix
        self.value_support = Support(*cfg.value_support[:2], int(cfg.value_support[2]))
        self.reward_support = Support(*cfg.reward_support[:2], int(cfg.reward_support[2]))
        kind = cfg.net
        if kind == "auto":
            kind = ("conv" if spec.obs_shape[-1] <= 16 else "resnet") if spec.pixels else "mlp"
        self.augment = (kind == "resnet") if cfg.augment is None else cfg.augment
        self.net_config = NetConfig(
            obs_shape=tuple(spec.obs_shape),
            num_actions=spec.num_actions,
            discrete=spec.discrete,
            kind=kind,
            obs_scale=float(spec.obs_high) if spec.pixels else 1.0,
            channels=cfg.channels,
            blocks=cfg.blocks,
            reduced_channels=cfg.reduced_channels,
            fc=tuple(cfg.fc),
            hidden=cfg.hidden,
            latent=cfg.latent,
            value_bins=self.value_support.bins,
            reward_bins=self.reward_support.bins,
            value_prefix=self.value_prefix,
            lstm_hidden=cfg.lstm_hidden,
            proj_hidden=cfg.proj_hidden,
            proj_out=cfg.proj_out,
            pred_hidden=cfg.pred_hidden,
            latent_norm=cfg.latent_norm,
        )
        self.net = MuZeroNet(self.net_config).to(device)
        self.target = copy.deepcopy(self.net).requires_grad_(False).eval()
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                weight_decay=cfg.weight_decay, foreach=True,
            )  # fmt: skip
        else:  # adam (validated above)
            self.optimizer = torch.optim.AdamW(
                self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
            )
        self.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
        k = cfg.num_sampled_actions
        self.policy_size = spec.num_actions if spec.discrete else k
        self.replay = SegmentReplay(
            cfg.buffer_size,
            num_envs,
            spec.frame_shape,
            spec.obs_dtype,
            spec.frame_stack,
            policy_size=self.policy_size,
            window=cfg.unroll_steps + cfg.td_steps,
            action_shape=() if spec.discrete else (spec.num_actions,),
            action_dtype=np.int64 if spec.discrete else np.float32,
            sampled_shape=None if spec.discrete else (k, spec.num_actions),
            alpha=cfg.per_alpha,
            priority_eps=cfg.per_eps,
        )
        self.rng = np.random.default_rng([seed, 11])  # replay sampling, reanalysis choice
        self.gen = torch.Generator().manual_seed(
            int(np.random.default_rng([seed, 12]).integers(2**62))
        )
        self.env_steps = 0
        self.updates = 0
        self._pending: dict[str, np.ndarray] | None = None

    # -------------------------------------------------------------------------- search

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.cfg.amp)

    def _recurrent_fn(self, net: MuZeroNet, generator: torch.Generator):
        """recurrent_fn for frugal.search over dict embeddings: s (latent), and for a value
        prefix h, c, prefix, depth; for sampled search cand (the node's candidate actions).
        A latent-only embedding travels as a bare tensor (the search's fastest path)."""
        cfg, vs, rs = self.cfg, self.value_support, self.reward_support

        def recurrent(emb: dict[str, torch.Tensor] | torch.Tensor, action: torch.Tensor):
            if isinstance(emb, torch.Tensor):  # the latent alone (search's fast path)
                emb = {"s": emb}
            s = emb["s"]
            if self.discrete:
                act = action
            else:
                act = emb["cand"][torch.arange(len(action), device=s.device), action]
            nxt_emb: dict[str, torch.Tensor] = {}
            with self._autocast():
                if self.value_prefix:
                    nxt, rlog, (h, c) = net.dynamics(s, act, (emb["h"], emb["c"]))
                else:
                    nxt, rlog, _ = net.dynamics(s, act)
                policy, vlog = net.predict(nxt)
            nxt_emb["s"] = nxt.float()  # same key order as the root's embedding
            if self.value_prefix:
                prefix = rs.decode(rlog)
                reward = prefix - emb["prefix"]
                depth = emb["depth"] + 1
                reset = (torch.remainder(depth, cfg.lstm_horizon) == 0)[:, None]
                nxt_emb.update(
                    h=torch.where(reset, 0.0, h.float()),
                    c=torch.where(reset, 0.0, c.float()),
                    prefix=torch.where(reset[:, 0], 0.0, prefix),
                    depth=depth,
                )
            else:
                reward = rs.decode(rlog)
            logits = self._prior(policy, nxt_emb, generator)
            step = Step(reward=reward, prior_logits=logits, value=vs.decode(vlog))
            return step, (nxt_emb["s"] if len(nxt_emb) == 1 else nxt_emb)

        return recurrent

    def _prior(self, policy: torch.Tensor, emb: dict, generator: torch.Generator) -> torch.Tensor:
        """Prior logits for the search; sampled search also draws the node's candidates."""
        if self.discrete:
            return policy.float()
        mean, std = squashed_gaussian(policy, self.cfg.min_std)
        cand, logits = sample_candidates(
            mean, std, self.cfg.num_sampled_actions, self.cfg.policy_sampled_actions,
            self.cfg.std_magnification, generator,
        )  # fmt: skip
        emb["cand"] = cand
        return logits

    @torch.no_grad()
    def _search(self, net: MuZeroNet, obs: torch.Tensor, generator: torch.Generator, explore: bool):
        """Batched search from N observations: (SearchOutput, candidates [N, K, D] or None)."""
        cfg = self.cfg
        with self._autocast():
            s = net.represent(obs)
            policy, vlog = net.predict(s)
        emb: dict[str, torch.Tensor] = {"s": s.float()}
        if self.value_prefix:
            n = len(s)
            emb.update(
                h=torch.zeros(n, cfg.lstm_hidden, device=s.device),
                c=torch.zeros(n, cfg.lstm_hidden, device=s.device),
                prefix=torch.zeros(n, device=s.device),
                depth=torch.zeros(n, device=s.device),
            )
        logits = self._prior(policy, emb, generator)
        root = Root(
            prior_logits=logits,
            value=self.value_support.decode(vlog),
            embedding=emb["s"] if len(emb) == 1 else emb,
        )
        common = dict(discount=cfg.discount, generator=generator)
        if self.v1:
            out = search(
                root, self._recurrent_fn(net, generator), cfg.num_simulations, method="puct",
                pb_c_init=cfg.pb_c_init, pb_c_base=cfg.pb_c_base,
                dirichlet_alpha=cfg.dirichlet_alpha,
                dirichlet_fraction=cfg.dirichlet_fraction if explore else 0.0,
                value_delta_max=cfg.value_delta_max, **common,
            )  # fmt: skip
        else:
            out = search(
                root, self._recurrent_fn(net, generator), cfg.num_simulations, method="gumbel",
                gumbel_scale=1.0 if explore else 0.0,
                max_considered_actions=cfg.max_considered_actions,
                c_visit=cfg.c_visit, c_scale=cfg.c_scale, rescale=cfg.gumbel_rescale,
                value_delta_max=cfg.value_delta_max, **common,
            )  # fmt: skip
        return out, emb.get("cand")

    # ----------------------------------------------------------------------------- act

    def initial_act_state(self, num_envs: int) -> ActState:
        return None

    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.net.eval()
        obs_t = torch.as_tensor(obs, device=self.device)
        out, cand = self._search(self.net, obs_t, generator, explore)
        if self.v1 and explore:
            temperature = visit_temperature(self.updates, self.cfg.temperature_updates)
            visits = out.visit_counts.double().cpu()
            probs = visits ** (1.0 / temperature)
            slot = torch.multinomial(probs / probs.sum(1, keepdim=True), 1, generator=generator)
            slot = slot[:, 0]
        else:
            slot = out.action.cpu()
        if self.discrete:
            action = slot.numpy().astype(np.int64)
            stored = action
        else:
            stored = cand.cpu()[torch.arange(len(slot)), slot].numpy().astype(np.float32)
            low, high = self.spec.action_low, self.spec.action_high
            action = (low + (stored + 1.0) * 0.5 * (high - low)).astype(np.float32)
        if explore:
            self._pending = {
                "action": stored,
                "policy": out.action_weights.float().cpu().numpy(),
                "root_value": out.root_value.float().cpu().numpy(),
            }
            if cand is not None:
                self._pending["sampled"] = cand.float().cpu().numpy()
        return action, state

    def observe(self, t: Transition) -> None:
        pending = self._pending
        self._pending = None
        n = len(t.reward)
        if pending is None:  # not produced by act(explore=True): no search statistics
            action = t.action
            if not self.discrete:
                low, high = self.spec.action_low, self.spec.action_high
                action = (2.0 * (t.action - low) / (high - low) - 1.0).astype(np.float32)
            pending = {
                "action": action,
                "policy": np.full((n, self.policy_size), 1.0 / self.policy_size, np.float32),
                "root_value": np.zeros(n, np.float32),
            }
            if not self.discrete:
                pending["sampled"] = np.repeat(action[:, None], self.policy_size, 1)
        reward = np.clip(t.reward, -1, 1) if self.cfg.reward_clip else t.reward
        self.replay.add(
            t.obs, pending["action"], reward, t.terminated, t.truncated, t.reset, t.next_obs,
            t.final_obs, pending["policy"], pending["root_value"], pending.get("sampled"),
        )  # fmt: skip
        self.env_steps += n

    def restart(self, obs: np.ndarray) -> None:
        self.replay.restart(obs)

    # -------------------------------------------------------------------------- schedule

    def updates_due(self, env_step: int) -> int:
        window = self.cfg.unroll_steps + self.cfg.td_steps + 1
        start = max(self.cfg.learning_starts, window * self.num_envs)
        return ratio_updates_due(env_step, self.cfg.replay_ratio, start)

    def final_updates_due(self, total_env_steps: int) -> int:
        extra = int(self.cfg.final_update_ratio * total_env_steps)
        return max(self.updates_due(total_env_steps), extra)

    def learning_rate(self) -> float:
        cfg = self.cfg
        lr = cfg.lr
        if cfg.lr_warmup_updates > 0 and self.updates < cfg.lr_warmup_updates:
            lr *= (self.updates + 1) / cfg.lr_warmup_updates
        if cfg.lr_decay_updates > 0 and self.updates >= cfg.lr_decay_updates:
            lr *= cfg.lr_decay_rate
        return lr

    def per_beta(self) -> float:
        frac = min(1.0, self.updates / max(1, self.cfg.per_beta_updates))
        return self.cfg.per_beta + frac * (1.0 - self.cfg.per_beta)

    # ----------------------------------------------------------------------- reanalysis

    @torch.no_grad()
    def _values(self, net: MuZeroNet, obs: np.ndarray) -> np.ndarray:
        """Target-model value predictions for observations [N, ...] -> float64 [N]."""
        if len(obs) == 0:
            return np.zeros(0)
        with self._autocast():
            _, vlog = net.predict(net.represent(torch.as_tensor(obs, device=self.device)))
        return self.value_support.decode(vlog).double().cpu().numpy()

    def make_targets(self, rows: np.ndarray, envs: np.ndarray) -> dict[str, Any]:
        """Reanalyse B sampled positions: observations, actions and every target of the unroll.

        Returns numpy arrays: obs [B, K+1, ...], actions [B, K, ...], value [B, K+1],
        value_mask [B, K+1], reward [B, K], reward_mask [B, K], policy [B, K+1, P],
        policy_mask [B, K+1], sampled [B, K+1, K', D] (sampled search), td_steps [B],
        search_value_used [B], and timings."""
        cfg, replay = self.cfg, self.replay
        K, P = cfg.unroll_steps, cfg.unroll_steps + 1
        timings: dict[str, float] = {}
        age = replay.age(rows)
        if self.v1:
            n = off_policy_td_steps(age, cfg.td_steps, cfg.auto_td_steps)
        else:
            n = np.full(len(rows), cfg.td_steps, dtype=np.int64)
        win = replay.window_of(rows, envs, K + cfg.td_steps)
        term, trunc = win["terminated"], win["truncated"]
        alive = alive_mask(term, trunc, P)
        td = td_targets(win["rewards"], term, trunc, n, cfg.discount, P)
        reward, reward_mask = reward_targets(
            win["rewards"], term, trunc, K, self.value_prefix, cfg.lstm_horizon
        )
        pos_rows = rows[:, None] + np.arange(P)[None]
        obs = replay.observations(pos_rows, envs[:, None])

        # bootstrap values from the target model
        t0 = time.perf_counter()
        need = td.discount > 0
        b_idx, k_idx = np.nonzero(need)
        final = td.from_final[b_idx, k_idx]
        boot_rows = rows[b_idx] + td.boot_row[b_idx, k_idx]
        boot_obs = np.empty((len(b_idx), *self.spec.obs_shape), dtype=self.spec.obs_dtype)
        if (~final).any():
            boot_obs[~final] = replay.observations(boot_rows[~final], envs[b_idx][~final])
        if final.any():
            boot_obs[final] = replay.final_observations(boot_rows[final], envs[b_idx][final])
        value = td.partial.copy()
        value[b_idx, k_idx] += td.discount[b_idx, k_idx] * self._values(self.target, boot_obs)
        timings["perf/bootstrap_s"] = time.perf_counter() - t0

        # policy (and SVE value) reanalysis: one batched search over the chosen positions
        stored = replay.search_stats(pos_rows, envs[:, None])
        policy = stored["policy"].copy()
        sampled = stored.get("sampled")
        chosen = alive & (self.rng.random(len(rows)) < cfg.reanalyze_ratio)[:, None]
        use_search = np.zeros(len(rows), dtype=bool)
        t0 = time.perf_counter()
        if chosen.any():
            roots = torch.as_tensor(obs[chosen], device=self.device)
            out, cand = self._search(self.target, roots, self.gen, explore=True)
            policy[chosen] = out.action_weights.float().cpu().numpy()
            if sampled is not None:
                sampled = sampled.copy()
                sampled[chosen] = cand.float().cpu().numpy()
            if not self.v1:
                use_search = search_value_mask(
                    age, self.updates, cfg.mixed_value_start, cfg.mixed_value_threshold
                )
                root_value = np.zeros(chosen.shape)
                root_value[chosen] = out.root_value.double().cpu().numpy()
                sve = use_search[:, None] & chosen
                value[sve] = root_value[sve]
        timings["perf/reanalysis_s"] = time.perf_counter() - t0
        out_dict = {
            "obs": obs,
            "actions": win["actions"][:, :K],
            "value": value.astype(np.float32),
            "value_mask": td.valid,
            "reward": reward,
            "reward_mask": reward_mask,
            "policy": policy,
            "policy_mask": alive,
            "td_steps": n,
            "search_value_used": use_search,
            "timings": timings,
        }
        if sampled is not None:
            out_dict["sampled"] = sampled
        return out_dict

    # --------------------------------------------------------------------------- update

    def update(self) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        K = cfg.unroll_steps
        t_start = time.perf_counter()
        sample = self.replay.sample(cfg.batch_size, self.rng, beta=self.per_beta())
        tg = self.make_targets(sample.rows, sample.envs)
        B = len(sample.rows)

        def tensor(x, dtype=None):
            return torch.as_tensor(x, device=dev, dtype=dtype)

        obs = tensor(tg["obs"])  # [B, K+1, ...]
        actions = tensor(tg["actions"])
        value_t, value_m = tensor(tg["value"]), tensor(tg["value_mask"], torch.float32)
        reward_t, reward_m = tensor(tg["reward"]), tensor(tg["reward_mask"], torch.float32)
        policy_t, policy_m = tensor(tg["policy"]), tensor(tg["policy_mask"], torch.float32)
        weights = tensor(sample.weights)

        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t_net = time.perf_counter()
        self.net.train()
        first = obs[:, 0]
        next_obs = obs[:, 1:].transpose(0, 1).flatten(0, 1)  # [K*B], step-major like latents
        if self.augment:
            first = augment_pixels(first, self.gen)
            next_obs = augment_pixels(next_obs, self.gen)
        with self._autocast():
            with torch.no_grad():  # consistency targets: the online model, stop-gradient
                target_proj = self.net.project(self.net.represent(next_obs), with_predictor=False)
            s = self.net.represent(first)
            policy, vlog = self.net.predict(s)
            policies, vlogs, rlogs, latents = [policy], [vlog], [], []
            reward_state = self.net.initial_reward_state(B, dev)
            for k in range(1, K + 1):
                s = scale_gradient(s, 0.5)
                s, rlog, reward_state = self.net.dynamics(s, actions[:, k - 1], reward_state)
                if self.value_prefix and k % cfg.lstm_horizon == 0:
                    reward_state = self.net.initial_reward_state(B, dev)
                policy, vlog = self.net.predict(s)
                policies.append(policy)
                vlogs.append(vlog)
                rlogs.append(rlog)
                latents.append(s)
            predicted_proj = self.net.project(torch.cat(latents), with_predictor=True)
        vlogs_t = torch.stack(vlogs, 1).float()  # [B, K+1, bins]
        value_loss = (self.value_support.cross_entropy(vlogs_t, value_t) * value_m).sum(1)
        rlogs_t = torch.stack(rlogs, 1).float()
        reward_loss = (self.reward_support.cross_entropy(rlogs_t, reward_t) * reward_m).sum(1)
        policy_out = torch.stack(policies, 1).float()  # [B, K+1, A or 2D]
        policy_loss, entropy = self._policy_loss(policy_out, policy_t, tg.get("sampled"))
        policy_loss = (policy_loss * policy_m).sum(1)
        entropy = (entropy * policy_m).sum(1)
        cons = consistency_loss(predicted_proj.float(), target_proj.float()).view(K, B).T
        consistency = (cons * policy_m[:, 1:]).sum(1)
        per_sample = (
            cfg.reward_coef * reward_loss
            + cfg.value_coef * value_loss
            + cfg.policy_coef * policy_loss
            + cfg.consistency_coef * consistency
            - cfg.entropy_coef * entropy
        )
        loss = (weights * per_sample).mean() / K  # EfficientZero scales the gradient by 1/K

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        t_end = time.perf_counter()

        with torch.no_grad():
            predicted_value = self.value_support.decode(vlogs_t[:, 0])
            errors = (predicted_value - value_t[:, 0]).abs().double().cpu().numpy()
        self.replay.update_priorities(sample.index, errors)
        self.updates += 1
        if self.updates % cfg.target_update_interval == 0:
            self.target.load_state_dict(self.net.state_dict())
        timings = tg["timings"]
        return {
            "train/loss": loss.item(),
            "train/value_loss": value_loss.mean().item(),
            "train/reward_loss": reward_loss.mean().item(),
            "train/policy_loss": policy_loss.mean().item(),
            "train/consistency": consistency.mean().item() / K,
            "train/entropy": entropy.mean().item() / (K + 1),
            "train/value_target": value_t[:, 0].mean().item(),
            "train/value_pred": predicted_value.mean().item(),
            "train/grad_norm": grad_norm.item(),
            "train/lr": lr,
            "train/td_steps": float(tg["td_steps"].mean()),
            "train/search_value_share": float(tg["search_value_used"].mean()),
            "perf/update_s": t_end - t_start,
            "perf/network_s": t_end - t_net,
            **timings,
        }

    def _policy_loss(self, policy_out, target, sampled) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy to the search policy and the policy entropy, both [B, K+1].

        Discrete: -sum_a target(a) log softmax(logits)(a). Sampled search: -sum_k target_k
        log pi(u_k) over the node's candidates (the Gaussian density before tanh), entropy of
        the Gaussian."""
        if self.discrete:
            log_p = F.log_softmax(policy_out, -1)
            return -(target * log_p).sum(-1), -(log_p.exp() * log_p).sum(-1)
        mean, std = squashed_gaussian(policy_out, self.cfg.min_std)
        cand = torch.as_tensor(sampled, device=policy_out.device)  # [B, K+1, K', D]
        u = torch.atanh(cand.clamp(-1 + 1e-6, 1 - 1e-6))
        log_pi = gaussian_log_prob(u, mean[:, :, None], std[:, :, None])  # [B, K+1, K']
        entropy = (std.log() + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return -(target * log_pi).sum(-1), entropy

    # ---------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
