"""DreamerV3's networks (Hafner et al. 2023): encoder, decoder, RSSM, reward and continue heads
(together the world model), actor and critic. Every constructor takes explicit sizes.

Dense layers are Linear (no bias) -> LayerNorm (eps 1e-3) -> SiLU; conv layers the same with a
channel LayerNorm. Weights start from a truncated normal with variance 2 / (fan_in + fan_out);
the reward and critic outputs start at exactly zero.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from frugal.nets import layers
from frugal.nets.distributions import (
    bounded_normal,
    categorical_entropy,
    normal_entropy,
    normal_log_prob,
    onehot_from_uniform,
    sample_onehot,
    straight_through,
    symlog,
    unimix_logits,
    unimix_probs,
)

ENCODERS = ("cnn", "grid", "mlp")


@dataclass(frozen=True)
class Sizes:
    """deter: GRU units; units: hidden units of every dense layer; cnn_depth: channels of the
    first conv (doubling per stage); layers: dense layers of every MLP; stoch categorical latents
    of `classes` classes each; buckets: outputs of the reward and critic heads."""

    deter: int
    units: int
    cnn_depth: int
    layers: int
    stoch: int
    classes: int
    buckets: int = 255

    @property
    def latent(self) -> int:
        """Width of a flattened stochastic state."""
        return self.stoch * self.classes

    @property
    def feat(self) -> int:
        """Width of a model state [deter, stoch]: the input of every head."""
        return self.deter + self.latent


def mlp(inputs: int, units: int, count: int) -> nn.Sequential:
    """`count` dense layers of `units`."""
    norm = functools.partial(nn.LayerNorm, eps=1e-3)
    return layers.mlp((inputs,) + (units,) * count, nn.SiLU, norm=norm, bias=False)


def head(feat: int, units: int, count: int, out: int, zero: bool = False) -> nn.Sequential:
    """An MLP and a linear output layer (zero-initialised when `zero`)."""
    last = nn.Linear(units if count else feat, out)
    return nn.Sequential(mlp(feat, units, count), layers.zero_init(last) if zero else last)


def _stages(size: int) -> int:
    """Stride-2 stages of the cnn encoder: down to 4x4 (64 -> 32 -> 16 -> 8 -> 4)."""
    return max(1, int(math.log2(size / 4)))


class Encoder(nn.Module):
    """Observations [N, *obs_shape] -> embeddings [N, out_dim].

    cnn: stride-2 4x4 convolutions (channels d, 2d, 4d, ...) down to 4x4 (64 -> 32 -> 16 -> 8 -> 4).
    grid: for MinAtar-size grids, 3x3/1, 4x4/2, 3x3/2 convolutions (10 -> 10 -> 5 -> 3).
    mlp: symlog inputs, then the MLP. Pixels are divided by `obs_high` and centred."""

    def __init__(
        self, obs_shape: tuple[int, ...], obs_high: float, kind: str, sizes: Sizes
    ) -> None:
        super().__init__()
        self.kind, self.scale = kind, 1.0 / obs_high
        depth = sizes.cnn_depth
        if kind == "mlp":
            self.net = mlp(int(np.prod(obs_shape)), sizes.units, sizes.layers)
            self.out_dim = sizes.units
            return
        channels, size = obs_shape[0], obs_shape[-1]
        blocks: list[nn.Module] = []
        if kind == "cnn":
            cin = channels
            for i in range(_stages(size)):
                blocks += layers.norm_conv(cin, depth * 2**i, 4, 2)
                cin = depth * 2**i
        else:
            blocks += layers.norm_conv(channels, depth, 3, 1)
            blocks += layers.norm_conv(depth, 2 * depth, 4, 2)
            blocks += layers.norm_conv(2 * depth, 4 * depth, 3, 2)
        self.net = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            self.out_dim = self.net(torch.zeros(1, *obs_shape)).shape[1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.net(symlog(obs.flatten(1).float()))
        return self.net(obs.float() * self.scale - 0.5)


class Decoder(nn.Module):
    """Features [N, F] -> predicted observations [N, *obs_shape] (pixels in [0, 1] around
    0.5 + output; vectors in symlog space). Transposed convolutions mirror the encoder."""

    def __init__(self, obs_shape: tuple[int, ...], kind: str, sizes: Sizes) -> None:
        super().__init__()
        self.kind, self.shape = kind, obs_shape
        feat, depth = sizes.feat, sizes.cnn_depth
        if kind == "mlp":
            out = int(np.prod(obs_shape))
            self.net = nn.Sequential(
                mlp(feat, sizes.units, sizes.layers), nn.Linear(sizes.units, out)
            )
            return
        channels, size = obs_shape[0], obs_shape[-1]
        if kind == "cnn":
            stages = _stages(size)
            res = math.ceil(size / 2**stages)
            widths = [depth * 2 ** (stages - 1 - i) for i in range(stages)] + [channels]
            blocks: list[nn.Module] = []
            for i in range(stages - 1):
                blocks += layers.norm_conv(widths[i], widths[i + 1], 4, 2, transpose=True)
            blocks.append(nn.ConvTranspose2d(widths[stages - 1], channels, 4, 2, 1))
        else:
            mid = (size + 2 - 4) // 2 + 1
            res = (mid + 2 - 3) // 2 + 1
            widths = [4 * depth]
            pad1 = mid - ((res - 1) * 2 - 2 + 3)
            pad2 = size - ((mid - 1) * 2 - 2 + 4)
            blocks = [
                *layers.norm_conv(4 * depth, 2 * depth, 3, 2, transpose=True, out_pad=pad1),
                *layers.norm_conv(2 * depth, depth, 4, 2, transpose=True, out_pad=pad2),
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
    ) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.clip_actions = clip_actions
        latent = stoch * classes
        self.img_in = nn.Linear(latent + action_dim, units, bias=False)
        self.img_in_norm = nn.LayerNorm(units, eps=1e-3)
        self.gru = nn.Linear(deter + units, 3 * deter, bias=False)
        self.gru_norm = nn.LayerNorm(3 * deter, eps=1e-3)
        self.prior_net = nn.Sequential(*mlp(deter, units, 1), nn.Linear(units, latent))
        self.obs_in = nn.Linear(deter + embed_dim, units, bias=False)
        self.obs_in_norm = nn.LayerNorm(units, eps=1e-3)
        self.post_out = nn.Linear(units, latent)
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs [..., stoch * classes] -> unimixed log-probabilities [..., stoch,
        classes]."""
        return unimix_logits(x.unflatten(-1, (self.stoch, self.classes)), self.unimix)

    def prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        return self.logits(self.prior_net(deter).float())  # fp32 log-probabilities

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
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    """Encoder, RSSM, decoder, reward head (logits over `sizes.buckets`) and continue head (one
    logit). `kind` is the encoder: cnn | grid | mlp (see Encoder)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        obs_high: float,
        kind: str,
        sizes: Sizes,
        action_dim: int,
        unimix: float,
        clip_actions: bool,
    ) -> None:
        super().__init__()
        units, count = sizes.units, sizes.layers
        self.kind = kind
        self.encoder = Encoder(obs_shape, obs_high, kind, sizes)
        self.rssm = RSSM(
            sizes.deter,
            units,
            sizes.stoch,
            sizes.classes,
            action_dim,
            self.encoder.out_dim,
            unimix,
            clip_actions=clip_actions,
        )
        self.feat_dim = sizes.feat
        self.decoder = Decoder(obs_shape, kind, sizes)
        self.reward = head(sizes.feat, units, count, sizes.buckets, zero=True)
        self.cont = head(sizes.feat, units, count, 1)
        layers.fan_avg_init(self)
        layers.zero_init(self.reward[-1])


class Actor(nn.Module):
    """Features -> action distribution: unimix categorical logits over `num_actions`, or a
    bounded normal over `num_actions` dimensions (std in [min_std, max_std])."""

    def __init__(
        self,
        sizes: Sizes,
        num_actions: int,
        discrete: bool,
        unimix: float,
        min_std: float,
        max_std: float,
    ) -> None:
        super().__init__()
        self.discrete, self.num_actions = discrete, num_actions
        self.unimix, self.min_std, self.max_std = unimix, min_std, max_std
        out = num_actions if discrete else 2 * num_actions
        self.net = head(sizes.feat, sizes.units, sizes.layers, out)
        layers.fan_avg_init(self)

    def forward(self, feat: torch.Tensor):
        out = self.net(feat).float()  # the distribution in fp32 (under autocast too)
        if self.discrete:
            return unimix_logits(out, self.unimix)
        mean, std = out.chunk(2, -1)
        return bounded_normal(mean, std, self.min_std, self.max_std)

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
    """Features -> logits over `sizes.buckets` symlog buckets (zero-initialised output)."""

    def __init__(self, sizes: Sizes) -> None:
        super().__init__()
        self.net = head(sizes.feat, sizes.units, sizes.layers, sizes.buckets)
        layers.fan_avg_init(self)
        layers.zero_init(self.net[-1])

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat).float()  # fp32 logits (under autocast too)
