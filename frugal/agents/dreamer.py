"""DreamerV3 (Hafner et al. 2023, arXiv:2301.04104v1): a world model learned from replayed
sequences, and an actor-critic trained only on trajectories imagined inside it.

World model: an encoder (CNN for pixels, MLP over symlog inputs for vectors), an RSSM with a GRU
state and 32 categorical latents of 32 classes (1% unimix, straight-through samples), and heads
that decode the observation, the reward (twohot over 255 symlog buckets) and the continue flag.
Loss = 1.0 (decoder + reward + continue) + 0.5 max(1, KL[sg(post) || prior])
                                          + 0.1 max(1, KL[post || sg(prior)]).
Behaviour: from every posterior state of the batch, imagine 15 steps with the actor; the critic
(twohot, regularised towards its slow EMA copy) learns λ-returns, and the actor maximises returns
scaled by max(1, S), S the EMA of their 95th - 5th percentile range, plus an entropy bonus:
REINFORCE for discrete actions, gradients through the dynamics for continuous ones.

Time runs in env steps: `train_ratio` replayed steps per env step, i.e. train_ratio /
(batch_size * batch_length) updates per env step, enforced by the runner.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from frugal.agents.base import ActState, Transition, preset_by_suite, ratio_updates_due
from frugal.agents.dreamer_video import OpenLoopVideo
from frugal.config import Preset, mutable
from frugal.envs.base import EnvSpec
from frugal.nets.distributions import (
    bounded_normal,
    categorical_entropy,
    categorical_kl,
    free_bits,
    normal_entropy,
    normal_log_prob,
    onehot_from_uniform,
    sample_onehot,
    straight_through,
    symlog,
    symlog_buckets,
    twohot,
    twohot_loss,
    twohot_mean,
    unimix_logits,
    unimix_probs,
)
from frugal.nets.returns import PercentileNormaliser, lambda_returns
from frugal.replay.sequences import SequenceReplay

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
    train_ratio: float = mutable(512.0)  # replayed steps per env step
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
    horizon: float = 333.0  # discount = 1 - 1 / horizon
    imag_horizon: int = 15
    imag_starts: int = mutable(
        0
    )  # 0: imagine from every posterior state (paper); else a random subset
    return_lambda: float = 0.95
    actor_entropy: float = mutable(3e-4)
    slow_critic_fraction: float = 0.02  # EMA mix per update
    slow_reg: float = mutable(1.0)  # weight of the regulariser towards the slow critic
    retnorm_decay: float = 0.99
    retnorm_limit: float = 1.0
    actor_min_std: float = 0.1
    actor_max_std: float = 1.0
    actor_grad: str = "auto"  # auto (reinforce if discrete, else backprop) | reinforce | backprop
    eval_sample: bool = mutable(
        True
    )  # evaluation samples the actor (as the paper) instead of its mode
    encoder: str = "auto"  # auto | cnn (64x64-style pixels) | grid (MinAtar-size pixels) | mlp
    compile: bool = False  # torch.compile the recurrent steps
    video_open_loop: int = mutable(
        50
    )  # pixel envs: videos show open-loop predictions re-synced this often


# hyperparameters a resumed run may change (the rest shape the networks or the replay)

PRESETS = {
    "atari100k": Preset(
        doc="Atari 100k as in the paper: size S, 64x64 RGB, action repeat 4, no sticky actions, "
        "no life-loss terminals, train ratio 1024 (one 16x64 update per env step).",
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
        "with the small grid CNN, 16x16 latents, train ratio 64 (one 16x64 update every 16 env "
        "steps), imagination from 256 random posterior states, model lr 3e-4, actor and critic "
        "lr 1e-4.",
        run=dict(
            steps=100_000, eval_every=10_000, eval_episodes=10, eval_envs=5, checkpoint_every=10_000
        ),
        agent=dict(
            size="tiny",
            stoch=16,
            classes=16,
            train_ratio=64.0,
            imag_starts=256,
            learning_starts=2_048,
            replay_size=200_000,
            model_lr=3e-4,
            actor_lr=1e-4,
            critic_lr=1e-4,
        ),
    ),
    "cartpole": Preset(
        doc="Classic control, discrete actions, on a CPU budget: size tiny (64 units), 8x8 "
        "latents, the paper's proprioceptive train ratio 512 (one 16x64 update every 2 env "
        "steps), imagination from 256 random posterior states, model lr 3e-4, actor and critic "
        "lr 1e-4.",
        run=dict(steps=50_000, eval_every=5_000, eval_episodes=10, checkpoint_every=10_000),
        agent=dict(
            size="tiny",
            stoch=8,
            classes=8,
            train_ratio=512.0,
            imag_starts=256,
            learning_starts=1_024,
            replay_size=100_000,
            model_lr=3e-4,
            actor_lr=1e-4,
            critic_lr=1e-4,
        ),
    ),
    "pendulum": Preset(
        doc="Classic control, continuous actions (dynamics backprop), on a CPU budget: size tiny, "
        "8x8 latents, train ratio 128 (one 16x64 update every 8 env steps), imagination from 256 "
        "random posterior states, model lr 3e-4, actor and critic lr 1e-4.",
        run=dict(steps=50_000, eval_every=5_000, eval_episodes=10, checkpoint_every=10_000),
        agent=dict(
            size="tiny",
            stoch=8,
            classes=8,
            train_ratio=128.0,
            imag_starts=256,
            learning_starts=1_024,
            replay_size=100_000,
            model_lr=3e-4,
            actor_lr=1e-4,
            critic_lr=1e-4,
        ),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return preset_by_suite(spec, atari="atari100k")


# ------------------------------------------------------------------------------------ networks


def _init_weights(module: nn.Module) -> None:
    """Truncated normal with variance 2 / (fan_in + fan_out) (the paper's 'normal, fan avg')."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _zero_out(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of [N, C, H, W] feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def dense(inputs: int, units: int) -> list[nn.Module]:
    return [nn.Linear(inputs, units, bias=False), nn.LayerNorm(units, eps=1e-3), nn.SiLU()]


def mlp(inputs: int, units: int, layers: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += dense(inputs if i == 0 else units, units)
    return nn.Sequential(*blocks)


def conv_block(cin: int, cout: int, kernel: int, stride: int, transpose=False, out_pad=0):
    if transpose:
        conv = nn.ConvTranspose2d(cin, cout, kernel, stride, 1, output_padding=out_pad, bias=False)
    else:
        conv = nn.Conv2d(cin, cout, kernel, stride, 1, bias=False)
    return [conv, ChannelNorm(cout, eps=1e-3), nn.SiLU()]


class Encoder(nn.Module):
    """Observations [N, *obs_shape] -> embeddings [N, out_dim].

    cnn: stride-2 4x4 convolutions (channels d, 2d, 4d, ...) down to 4x4 (64 -> 32 -> 16 -> 8 -> 4).
    grid: for MinAtar-size grids, 3x3/1, 4x4/2, 3x3/2 convolutions (10 -> 10 -> 5 -> 3).
    mlp: symlog inputs, then the MLP."""

    def __init__(self, spec: EnvSpec, kind: str, depth: int, units: int, layers: int):
        super().__init__()
        self.kind, self.scale = kind, 1.0 / spec.obs_high
        if kind == "mlp":
            self.net = mlp(int(np.prod(spec.obs_shape)), units, layers)
            self.out_dim = units
            return
        channels, size = spec.obs_shape[0], spec.obs_shape[-1]
        blocks: list[nn.Module] = []
        if kind == "cnn":
            stages = max(1, int(math.log2(size / 4)))
            cin = channels
            for i in range(stages):
                blocks += conv_block(cin, depth * 2**i, 4, 2)
                cin = depth * 2**i
        else:
            blocks += conv_block(channels, depth, 3, 1)
            blocks += conv_block(depth, 2 * depth, 4, 2)
            blocks += conv_block(2 * depth, 4 * depth, 3, 2)
        self.net = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            self.out_dim = self.net(torch.zeros(1, *spec.obs_shape)).shape[1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.net(symlog(obs.flatten(1).float()))
        return self.net(obs.float() * self.scale - 0.5)


class Decoder(nn.Module):
    """Features [N, F] -> predicted observations [N, *obs_shape] (pixels in [0, 1] around
    0.5 + output; vectors in symlog space). Transposed convolutions mirror the encoder."""

    def __init__(self, spec: EnvSpec, kind: str, feat: int, depth: int, units: int, layers: int):
        super().__init__()
        self.kind, self.shape = kind, spec.obs_shape
        if kind == "mlp":
            size = int(np.prod(spec.obs_shape))
            self.net = nn.Sequential(mlp(feat, units, layers), nn.Linear(units, size))
            return
        channels, size = spec.obs_shape[0], spec.obs_shape[-1]
        if kind == "cnn":
            stages = max(1, int(math.log2(size / 4)))
            res = math.ceil(size / 2**stages)
            widths = [depth * 2 ** (stages - 1 - i) for i in range(stages)] + [channels]
            blocks: list[nn.Module] = []
            for i in range(stages):
                if i < stages - 1:
                    blocks += conv_block(widths[i], widths[i + 1], 4, 2, transpose=True)
                else:
                    blocks.append(nn.ConvTranspose2d(widths[i], channels, 4, 2, 1))
        else:
            mid = (size + 2 - 4) // 2 + 1
            res = (mid + 2 - 3) // 2 + 1
            widths = [4 * depth]
            pad1 = mid - ((res - 1) * 2 - 2 + 3)
            pad2 = size - ((mid - 1) * 2 - 2 + 4)
            blocks = [
                *conv_block(4 * depth, 2 * depth, 3, 2, transpose=True, out_pad=pad1),
                *conv_block(2 * depth, depth, 4, 2, transpose=True, out_pad=pad2),
                nn.Conv2d(depth, channels, 3, 1, 1),
            ]
        self.start = (widths[0], res, res)
        self.proj = nn.Linear(feat, int(np.prod(self.start)))
        self.net = nn.Sequential(*blocks)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.net(feat).view(-1, *self.shape)
        x = self.net(self.proj(feat).view(-1, *self.start)) + 0.5
        h, w = self.shape[-2:]
        if x.shape[-2] != h or x.shape[-1] != w:  # sizes that are not a power of two
            top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
            x = x[..., top : top + h, left : left + w]
        return x


def head(feat: int, units: int, layers: int, out: int, zero: bool = False) -> nn.Sequential:
    last = nn.Linear(units if layers else feat, out)
    return nn.Sequential(mlp(feat, units, layers), _zero_out(last) if zero else last)


class RSSM(nn.Module):
    """Recurrent state-space model: deterministic state h (GRU, `deter` units) and stochastic
    state z (`stoch` one-hot categoricals of `classes`, flattened to stoch * classes).

    prior:     h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1});  z_t ~ p(z | h_t)
    posterior: z_t ~ q(z | h_t, embed_t)
    The state resets to the learned initial one (and the action to zeros) where `first`."""

    def __init__(
        self,
        deter: int,
        units: int,
        stoch: int,
        classes: int,
        action_dim: int,
        embed_dim: int,
        unimix: float,
        clip_actions: bool,
    ):
        super().__init__()
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.clip_actions = clip_actions
        latent = stoch * classes
        self.img_in = nn.Linear(latent + action_dim, units, bias=False)
        self.img_in_norm = nn.LayerNorm(units, eps=1e-3)
        self.gru = nn.Linear(deter + units, 3 * deter, bias=False)
        self.gru_norm = nn.LayerNorm(3 * deter, eps=1e-3)
        self.prior_net = nn.Sequential(*dense(deter, units), nn.Linear(units, latent))
        self.obs_in = nn.Linear(deter + embed_dim, units, bias=False)
        self.obs_in_norm = nn.LayerNorm(units, eps=1e-3)
        self.post_out = nn.Linear(units, latent)
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs [..., stoch * classes] -> unimixed log-probabilities [..., stoch,
        classes]."""
        return unimix_logits(x.unflatten(-1, (self.stoch, self.classes)), self.unimix)

    def prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        return self.logits(self.prior_net(deter))

    def initial(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Learned initial state: h = tanh(w), z = the mode of the prior at h."""
        deter = torch.tanh(self.initial_deter).expand(n, -1)
        logits = self.prior_logits(deter[:1])
        stoch = F.one_hot(logits.argmax(-1), self.classes).to(deter.dtype).flatten(-2)
        return deter, stoch.expand(n, -1)

    def _action(self, action: torch.Tensor) -> torch.Tensor:
        if self.clip_actions:  # scale actions into [-1, 1] without cutting their gradient
            return action / action.detach().abs().clamp(min=1.0)
        return action

    def _sample(self, probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One-hot samples [..., stoch * classes] with straight-through gradients."""
        sample = onehot_from_uniform(probs, u)
        if probs.requires_grad:
            sample = straight_through(sample, probs)
        return sample.flatten(-2)

    def _gru(self, x: torch.Tensor, deter: torch.Tensor) -> torch.Tensor:
        parts = self.gru_norm(self.gru(torch.cat([deter, x], -1)))
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * deter

    def img_step(
        self, stoch: torch.Tensor, deter: torch.Tensor, action: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One imagined step: (z [N, Z], h [N, D], a [N, A]) -> (z', h'), z' sampled from the
        prior with uniforms u [N, stoch]."""
        latent = self.stoch * self.classes
        x = F.linear(stoch, self.img_in.weight[:, :latent])
        x = x + F.linear(self._action(action), self.img_in.weight[:, latent:])
        deter = self._gru(F.silu(self.img_in_norm(x)), deter)
        raw = self.prior_net(deter).unflatten(-1, (self.stoch, self.classes))
        return self._sample(unimix_probs(raw, self.unimix), u), deter

    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        first: torch.Tensor,
        stoch: torch.Tensor,
        deter: torch.Tensor,
        u: torch.Tensor,
    ):
        """Posterior states of a sequence.

        embed [T, B, E]; action [T, B, A]: the action that led to step t; first [T, B] bool;
        stoch [B, Z], deter [B, D]: the state before step 0; u [T, B, stoch]: uniforms of the
        samples. Returns stochs [T, B, Z], deters [T, B, D] and the posterior log-probabilities
        [T, B, stoch, classes]. Everything that does not depend on the recurrence (action and
        embedding projections) runs batched over the sequence."""
        latent = self.stoch * self.classes
        mask = first.unsqueeze(-1)
        action = self._action(action) * (~mask)
        act_proj = F.linear(action, self.img_in.weight[:, latent:])
        emb_proj = F.linear(embed, self.obs_in.weight[:, self.deter :])
        init_deter, init_stoch = self.initial(stoch.shape[0])
        stochs, deters, logits = [], [], []
        # unbind once: indexing [t] in the loop would make backward allocate a [T, ...] zero
        # tensor per step
        steps = zip(
            act_proj.unbind(0), emb_proj.unbind(0), u.unbind(0), mask.unbind(0), strict=True
        )
        for act_t, emb_t, u_t, mask_t in steps:
            stoch, deter, post = self.obs_cell(
                stoch, deter, act_t, emb_t, u_t, mask_t, init_stoch, init_deter
            )
            stochs.append(stoch)
            deters.append(deter)
            logits.append(post)
        return torch.stack(stochs), torch.stack(deters), torch.stack(logits)

    def obs_cell(self, stoch, deter, act_proj, emb_proj, u, mask, init_stoch, init_deter):
        """One posterior step of `observe` (the part that runs in the loop)."""
        latent = self.stoch * self.classes
        deter = torch.where(mask, init_deter, deter)
        stoch = torch.where(mask, init_stoch, stoch)
        x = F.linear(stoch, self.img_in.weight[:, :latent]) + act_proj
        deter = self._gru(F.silu(self.img_in_norm(x)), deter)
        y = F.linear(deter, self.obs_in.weight[:, : self.deter]) + emb_proj
        post = self.logits(self.post_out(F.silu(self.obs_in_norm(y))))
        return self._sample(post.exp(), u), deter, post


class WorldModel(nn.Module):
    def __init__(self, spec: EnvSpec, cfg: Config, action_dim: int):
        super().__init__()
        size = SIZES[cfg.size]
        kind = cfg.encoder
        if kind == "auto":
            kind = "mlp" if not spec.pixels else ("grid" if spec.obs_shape[-1] <= 16 else "cnn")
        if kind != "mlp" and not spec.pixels:
            raise ValueError(f"encoder '{kind}' needs pixel observations; use agent.encoder=mlp")
        units, layers, depth = size["units"], size["layers"], size["cnn_depth"]
        self.kind = kind
        self.encoder = Encoder(spec, kind, depth, units, layers)
        self.rssm = RSSM(
            size["deter"],
            units,
            cfg.stoch,
            cfg.classes,
            action_dim,
            self.encoder.out_dim,
            cfg.unimix,
            clip_actions=not spec.discrete,
        )
        feat = size["deter"] + cfg.stoch * cfg.classes
        self.feat_dim = feat
        self.decoder = Decoder(spec, kind, feat, depth, units, layers)
        self.reward = head(feat, units, layers, 255, zero=True)
        self.cont = head(feat, units, layers, 1)
        _init_weights(self)
        _zero_out(self.reward[-1])


class Actor(nn.Module):
    """Features -> action distribution: unimix categorical logits, or a bounded normal."""

    def __init__(self, feat: int, spec: EnvSpec, cfg: Config):
        super().__init__()
        size = SIZES[cfg.size]
        self.discrete = spec.discrete
        self.num_actions = spec.num_actions
        self.cfg = cfg
        out = spec.num_actions if spec.discrete else 2 * spec.num_actions
        self.net = head(feat, size["units"], size["layers"], out)
        _init_weights(self)

    def forward(self, feat: torch.Tensor):
        out = self.net(feat)
        if self.discrete:
            return unimix_logits(out, self.cfg.unimix)
        mean, std = out.chunk(2, -1)
        return bounded_normal(mean, std, self.cfg.actor_min_std, self.cfg.actor_max_std)

    def sample(self, dist, generator: torch.Generator | None) -> torch.Tensor:
        """A one-hot action (discrete) or a reparameterised normal sample (continuous)."""
        if self.discrete:
            return sample_onehot(dist.exp(), generator)
        mean, std = dist
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + std * eps

    def mode(self, dist) -> torch.Tensor:
        if self.discrete:
            return F.one_hot(dist.argmax(-1), self.num_actions).to(dist.dtype)
        return dist[0]

    def log_prob(self, dist, action: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return (dist * action).sum(-1)
        return normal_log_prob(action, *dist)

    def entropy(self, dist) -> torch.Tensor:
        return categorical_entropy(dist) if self.discrete else normal_entropy(dist[1])


class Critic(nn.Module):
    """Features -> logits over 255 symlog buckets (zero-initialised output)."""

    def __init__(self, feat: int, cfg: Config):
        super().__init__()
        size = SIZES[cfg.size]
        self.net = head(feat, size["units"], size["layers"], 255)
        _init_weights(self)
        _zero_out(self.net[-1])

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)


def _adam(params, lr: float, eps: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, eps=eps, foreach=True)


# --------------------------------------------------------------------------------------- agent


class Agent:
    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        if cfg.size not in SIZES:
            raise ValueError(f"unknown size '{cfg.size}'; use one of {', '.join(SIZES)}")
        if cfg.actor_grad not in ("auto", "reinforce", "backprop"):
            raise ValueError("agent.actor_grad must be auto, reinforce or backprop")
        if cfg.actor_grad == "backprop" and spec.discrete:
            raise ValueError("agent.actor_grad=backprop needs continuous actions")
        self.cfg, self.spec, self.device = cfg, spec, device
        self.num_envs = num_envs
        self.action_dim = spec.num_actions
        self.wm = WorldModel(spec, cfg, self.action_dim).to(device)
        feat = self.wm.feat_dim
        self.actor = Actor(feat, spec, cfg).to(device)
        self.critic = Critic(feat, cfg).to(device)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.model_opt = _adam(self.wm.parameters(), cfg.model_lr, cfg.model_eps)
        self.actor_opt = _adam(self.actor.parameters(), cfg.actor_lr, cfg.actor_eps)
        self.critic_opt = _adam(self.critic.parameters(), cfg.critic_lr, cfg.critic_eps)
        self.retnorm = PercentileNormaliser(cfg.retnorm_decay, cfg.retnorm_limit, device=device)
        self.buckets = symlog_buckets(255, -20.0, 20.0, device)
        self.backprop = cfg.actor_grad == "backprop" or (
            cfg.actor_grad == "auto" and not spec.discrete
        )
        if spec.discrete:
            self.replay = SequenceReplay(cfg.replay_size, num_envs, spec.obs_shape, spec.obs_dtype)
        else:
            self.replay = SequenceReplay(
                cfg.replay_size,
                num_envs,
                spec.obs_shape,
                spec.obs_dtype,
                (self.action_dim,),
                np.dtype(np.float32),
            )
            self.action_low = np.asarray(spec.action_low, dtype=np.float32)
            self.action_high = np.asarray(spec.action_high, dtype=np.float32)
        self.rng = np.random.default_rng([seed, 7])  # replay sampling
        self.gen = torch.Generator(device=device)  # latent and imagination samples
        self.gen.manual_seed(int(np.random.default_rng([seed, 8]).integers(2**62)))
        latent = cfg.stoch * cfg.classes
        self.carry_stoch = torch.zeros(cfg.batch_size, latent, device=device)
        self.carry_deter = torch.zeros(cfg.batch_size, SIZES[cfg.size]["deter"], device=device)
        self.env_steps = 0
        self.updates = 0
        self._observe = self.wm.rssm.observe
        self._img_step = self.wm.rssm.img_step
        if cfg.compile:  # the recurrent cells, where many small ops run once per step
            rssm = self.wm.rssm
            rssm.obs_cell = torch.compile(rssm.obs_cell, dynamic=False)
            self._img_step = torch.compile(rssm.img_step, dynamic=False)

    # ---------------------------------------------------------------------------------- act

    def initial_act_state(self, num_envs: int) -> ActState:
        latent = self.cfg.stoch * self.cfg.classes
        return {
            "deter": torch.zeros(num_envs, SIZES[self.cfg.size]["deter"], device=self.device),
            "stoch": torch.zeros(num_envs, latent, device=self.device),
            "action": torch.zeros(num_envs, self.action_dim, device=self.device),
        }

    def _to_env(self, action: torch.Tensor) -> np.ndarray:
        if self.spec.discrete:
            return action.argmax(-1).cpu().numpy()
        unit = action.clamp(-1.0, 1.0).cpu().numpy()
        return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        n, dev = len(obs), self.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(rng.integers(2**62)))
        if state is None:
            state = self.initial_act_state(n)
        embed = self.wm.encoder(torch.as_tensor(obs, device=dev))
        noise = torch.rand((1, n, self.cfg.stoch), generator=gen, device=dev)
        first_t = torch.as_tensor(np.asarray(first, dtype=bool), device=dev)
        stoch, deter, _ = self._observe(
            embed[None],
            state["action"].to(dev)[None],
            first_t[None],
            state["stoch"].to(dev),
            state["deter"].to(dev),
            noise,
        )
        stoch, deter = stoch[0], deter[0]
        dist = self.actor(torch.cat([deter, stoch], -1))
        if explore or self.cfg.eval_sample:
            action = self.actor.sample(dist, gen)
        else:
            action = self.actor.mode(dist)
        if not self.spec.discrete:
            action = action.clamp(-1.0, 1.0)
        return self._to_env(action), {"deter": deter, "stoch": stoch, "action": action}

    def video_panels(self) -> OpenLoopVideo | None:
        """Evaluation videos of pixel envs show the world model's open-loop predictions."""
        if not self.spec.pixels or self.cfg.video_open_loop <= 0:
            return None
        return OpenLoopVideo(self, self.cfg.video_open_loop)

    def observe(self, t: Transition) -> None:
        if self.spec.discrete:
            action = np.asarray(t.action, dtype=np.int64)
        else:  # stored in [-1, 1], as the model sees it
            span = self.action_high - self.action_low
            action = (2.0 * (t.action - self.action_low) / span - 1.0).astype(np.float32)
        self.replay.add(t.obs, action, t.reward, t.terminated, t.reset, t.next_obs, t.final_obs)
        self.env_steps += len(t.reward)

    def restart(self, obs: np.ndarray) -> None:
        self.replay.restart(obs)

    # ------------------------------------------------------------------------------- update

    def updates_due(self, env_step: int) -> int:
        cfg = self.cfg
        start = max(cfg.learning_starts, self.num_envs * cfg.batch_length)
        return ratio_updates_due(env_step, self.updates_per_step(), start)

    def updates_per_step(self) -> float:
        return self.cfg.train_ratio / (self.cfg.batch_size * self.cfg.batch_length)

    def final_updates_due(self, total_env_steps: int) -> int:
        return self.updates_due(total_env_steps)

    def _batch(self) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        raw = self.replay.sample(cfg.batch_size, cfg.batch_length, self.rng)
        batch = {
            k: torch.as_tensor(v, device=dev).transpose(0, 1)
            for k, v in raw.items()
            if k != "continued"
        }
        if self.spec.discrete:
            batch["action"] = F.one_hot(batch["action"], self.action_dim).float()
        return batch

    def world_model_loss(self, batch: dict[str, torch.Tensor]):
        """Losses of one batch of sequences [T, B, ...]; returns (loss, posterior features
        [T, B, F] and the final state for the next batch, metrics)."""
        cfg, wm = self.cfg, self.wm
        obs = batch["obs"]
        steps, size = obs.shape[:2]
        embed = wm.encoder(obs.flatten(0, 1)).unflatten(0, (steps, size))
        noise = torch.rand((steps, size, cfg.stoch), generator=self.gen, device=self.device)
        stoch, deter, post = self._observe(
            embed, batch["action"], batch["first"], self.carry_stoch, self.carry_deter, noise
        )
        feat = torch.cat([deter, stoch], -1)
        prior = wm.rssm.prior_logits(deter)
        dyn = free_bits(categorical_kl(post.detach(), prior).sum(-1), cfg.free_nats)
        rep = free_bits(categorical_kl(post, prior.detach()).sum(-1), cfg.free_nats)
        flat = feat.flatten(0, 1)
        recon = wm.decoder(flat).unflatten(0, (steps, size))
        if wm.kind == "mlp":
            target = symlog(obs.float())
        else:
            target = obs.float() / self.spec.obs_high
        dec = (recon - target).square().flatten(2).sum(-1)
        rew = twohot_loss(wm.reward(feat), batch["reward"], self.buckets)
        cont_target = 1.0 - batch["terminal"].float()
        cont_logits = wm.cont(feat).squeeze(-1)
        con = F.binary_cross_entropy_with_logits(cont_logits, cont_target, reduction="none")
        loss = (dec + rew + con + cfg.dyn_scale * dyn + cfg.rep_scale * rep).mean()
        metrics = {
            "train/model_loss": loss,
            "train/decoder_loss": dec.mean(),
            "train/reward_loss": rew.mean(),
            "train/cont_loss": con.mean(),
            "train/dyn_loss": dyn.mean(),
            "train/rep_loss": rep.mean(),
            "train/post_entropy": categorical_entropy(post).sum(-1).mean(),
        }
        return loss, feat, (stoch[-1], deter[-1]), metrics

    def imagine(self, stoch: torch.Tensor, deter: torch.Tensor):
        """Roll the actor out in the model for imag_horizon steps from start states [N, ...].
        Returns features [H+1, N, F] and actions [H, N, A]. With gradients enabled (backprop),
        they flow from the features to the actor through the actions and the dynamics."""
        cfg, n, dev = self.cfg, stoch.shape[0], self.device
        u = torch.rand((cfg.imag_horizon, n, cfg.stoch), generator=self.gen, device=dev)
        if not torch.is_grad_enabled():  # fill preallocated buffers
            d = deter.shape[1]
            feats = torch.empty(cfg.imag_horizon + 1, n, d + stoch.shape[1], device=dev)
            actions = torch.empty(cfg.imag_horizon, n, self.action_dim, device=dev)
            feats[0, :, :d], feats[0, :, d:] = deter, stoch
            for h in range(cfg.imag_horizon):
                actions[h] = self.actor.sample(self.actor(feats[h]), self.gen)
                stoch, deter = self._img_step(stoch, deter, actions[h], u[h])
                feats[h + 1, :, :d], feats[h + 1, :, d:] = deter, stoch
            return feats, actions
        feat_list, action_list = [torch.cat([deter, stoch], -1)], []
        for h in range(cfg.imag_horizon):
            action = self.actor.sample(self.actor(feat_list[-1].detach()), self.gen)
            stoch, deter = self._img_step(stoch, deter, action, u[h])
            feat_list.append(torch.cat([deter, stoch], -1))
            action_list.append(action)
        return torch.stack(feat_list), torch.stack(action_list)

    def behaviour_losses(self, feat: torch.Tensor, terminal: torch.Tensor):
        """Actor and critic losses on trajectories imagined from every posterior state (or from
        `imag_starts` of them drawn at random, a CPU saving)."""
        cfg, wm = self.cfg, self.wm
        start = feat.detach().flatten(0, 1)
        terminal = terminal.flatten()
        if 0 < cfg.imag_starts < len(start):
            pick = torch.randperm(len(start), generator=self.gen, device=self.device)
            pick = pick[: cfg.imag_starts]
            start, terminal = start[pick], terminal[pick]
        deter, stoch = start.split([SIZES[cfg.size]["deter"], cfg.stoch * cfg.classes], -1)
        with torch.set_grad_enabled(self.backprop):
            feats, actions = self.imagine(stoch, deter)
            rewards = twohot_mean(wm.reward(feats[1:]), self.buckets)
        if self.backprop:  # values carry gradients to the actor; the critic's loss does not
            values = twohot_mean(self.critic(feats), self.buckets)
            critic_logits = self.critic(feats[:-1].detach())
        else:  # one critic pass serves both
            critic_logits = self.critic(feats.detach())
            values = twohot_mean(critic_logits.detach(), self.buckets)
            critic_logits = critic_logits[:-1]
        with torch.no_grad():
            cont = (wm.cont(feats[1:].detach()).squeeze(-1) > 0).float()
            cont = torch.cat([1.0 - terminal[None].float(), cont])
            discount = 1.0 - 1.0 / cfg.horizon
            weight = torch.cumprod(discount * cont, 0) / discount
            slow = twohot_mean(self.slow_critic(feats[:-1].detach()), self.buckets)
        returns = lambda_returns(rewards, values, discount * cont[1:], cfg.return_lambda)
        scale = self.retnorm.update(returns)
        advantage = (returns - values[:-1]) / scale
        dist = self.actor(feats[:-1].detach())
        entropy = self.actor.entropy(dist)
        if self.backprop:
            objective = advantage
        else:
            objective = self.actor.log_prob(dist, actions.detach()) * advantage.detach()
        actor_loss = -((objective + cfg.actor_entropy * entropy) * weight[:-1]).mean()

        # cross-entropy to the λ-return plus slow_reg times cross-entropy to the slow critic
        targets = twohot(symlog(returns.detach()), self.buckets)
        targets = targets + cfg.slow_reg * twohot(symlog(slow), self.buckets)
        critic_loss = -(targets * critic_logits.log_softmax(-1)).sum(-1)
        critic_loss = (critic_loss * weight[:-1]).mean()
        metrics = {
            "train/actor_loss": actor_loss.detach(),
            "train/critic_loss": critic_loss.detach(),
            "train/actor_entropy": entropy.detach().mean(),
            "train/imag_return": returns.detach().mean(),
            "train/imag_reward": rewards.detach().mean(),
            "train/return_scale": scale,
        }
        return actor_loss, critic_loss, metrics

    def update(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self._batch()
        model_loss, feat, last, metrics = self.world_model_loss(batch)
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        norm = nn.utils.clip_grad_norm_(self.wm.parameters(), cfg.model_clip)
        self.model_opt.step()
        self.carry_stoch, self.carry_deter = last[0].detach(), last[1].detach()
        metrics["train/model_grad_norm"] = norm

        actor_loss, critic_loss, behaviour = self.behaviour_losses(feat, batch["terminal"])
        metrics.update(behaviour)
        params = list(self.actor.parameters())
        grads = torch.autograd.grad(actor_loss, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        metrics["train/actor_grad_norm"] = nn.utils.clip_grad_norm_(params, cfg.actor_clip)
        self.actor_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        metrics["train/critic_grad_norm"] = nn.utils.clip_grad_norm_(
            self.critic.parameters(), cfg.critic_clip
        )
        self.critic_opt.step()
        with torch.no_grad():
            for p, slow in zip(
                self.critic.parameters(), self.slow_critic.parameters(), strict=True
            ):
                slow.lerp_(p, cfg.slow_critic_fraction)
        self.updates += 1
        values = (
            torch.stack(
                [
                    torch.as_tensor(v, dtype=torch.float32).detach().reshape(())
                    for v in metrics.values()
                ]
            )
            .cpu()
            .tolist()
        )
        return dict(zip(metrics, values, strict=True))

    # -------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "world_model": self.wm.state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "retnorm": self.retnorm.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
            "carry": {"stoch": self.carry_stoch, "deter": self.carry_deter},
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wm.load_state_dict(state["world_model"])
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.slow_critic.load_state_dict(state["slow_critic"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        for opt, lr in (
            (self.model_opt, self.cfg.model_lr),
            (self.actor_opt, self.cfg.actor_lr),
            (self.critic_opt, self.cfg.critic_lr),
        ):
            for group in opt.param_groups:  # a resumed run may change learning rates
                group["lr"] = lr
        self.retnorm.load_state_dict(state["retnorm"])
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"].cpu())
        self.carry_stoch = state["carry"]["stoch"].to(self.device)
        self.carry_deter = state["carry"]["deter"].to(self.device)
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
