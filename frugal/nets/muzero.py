"""MuZero-style networks as used by EfficientZero (Ye et al. 2021; Wang et al. 2024).

    representation h: obs [B, *obs_shape]          -> latent s
    dynamics g:       (s, action, reward state)    -> (s', reward logits, reward state')
    prediction f:     s                            -> (policy output, value logits)
    projection:       s -> SimSiam projection (+ predictor on the online branch)

Three bodies share the interface, chosen by `NetConfig.kind`:
  "resnet": Atari. A downsampling ResNet (96x96 -> 6x6: a stride-2 conv, residual blocks, a
            stride-2 residual block and two stride-2 average pools) then `blocks` residual blocks
            of `channels`; latent [B, C, 6, 6]. Heads first reduce to `reduced_channels` with a 1x1
            conv, then fully connected layers of `fc` units.
  "mlp":    vector observations: fully connected residual blocks of `hidden` units with layer
            norm; latent [B, latent]; heads with `fc` hidden layers.
  "conv":   small grids (MinAtar 10x10): a small conv torso (one 3x3 conv and `blocks` residual
            blocks of `channels`, no downsampling) flattened into the "mlp" body, so that the
            dynamics and prediction, run once per simulation, stay cheap on a CPU.

The dynamics takes the action as extra input planes (one-hot planes for discrete actions, one
constant plane per dimension for continuous ones) for the ResNet and as a concatenated vector
for the MLP body, and adds the incoming latent back (a residual step) before its blocks. The
reward head is either a per-step reward (EfficientZero V2) or a value-prefix LSTM (V1): the LSTM
carries (h, c) [B, lstm_hidden] along an unroll and predicts the discounted-free sum of rewards
since its last reset. Latents are min-max normalised to [0, 1] per sample (EfficientZero) when
`latent_norm` is set. Final layers of the value, reward and policy heads start at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from frugal.errors import FrugalError
from frugal.nets.layers import PixelScaler, ResBlock, mlp

RewardState = tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class NetConfig:
    """Shapes of a MuZero network. `num_actions`: discrete actions, or the action dimension when
    `discrete` is False (then the policy head outputs 2 * num_actions: mean and raw scale)."""

    obs_shape: tuple[int, ...]
    num_actions: int
    discrete: bool = True
    kind: str = "mlp"  # resnet | conv | mlp
    obs_scale: float = 1.0  # pixels are divided by this (255 for Atari)
    channels: int = 64
    blocks: int = 1
    reduced_channels: int = 16
    fc: tuple[int, ...] = (32,)
    hidden: int = 128  # mlp body width
    latent: int = 64  # mlp latent size
    value_bins: int = 601
    reward_bins: int = 601
    value_prefix: bool = False
    lstm_hidden: int = 512
    proj_hidden: int = 1024
    proj_out: int = 1024
    pred_hidden: int = 512
    latent_norm: bool = True


# ------------------------------------------------------------------------------------ blocks


class MLPBlock(nn.Module):
    """x -> relu(x + LN(W2 relu(LN(W1 x))))."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.ln1 = nn.Linear(width, width), nn.LayerNorm(width)
        self.fc2, self.ln2 = nn.Linear(width, width), nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.ln1(self.fc1(x)))
        return F.relu(x + self.ln2(self.fc2(h)))


def downsample_resnet(in_channels: int, channels: int) -> nn.Sequential:
    """EfficientZero's Atari downsampler: spatial /16 (96 -> 6), `channels` out."""
    half = channels // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, half, 3, 2, 1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(),
        ResBlock(half),
        ResBlock(half, channels, stride=2),
        ResBlock(channels),
        nn.AvgPool2d(3, 2, 1),
        ResBlock(channels),
        nn.AvgPool2d(3, 2, 1),
    )


def normalize_latent(s: torch.Tensor) -> torch.Tensor:
    """Min-max scale each sample's latent to [0, 1]: s [B, ...] -> same shape."""
    flat = s.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    scale = hi - lo
    scale = torch.where(scale < 1e-5, scale + 1e-5, scale)
    return ((flat - lo) / scale).view_as(s)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; gradient multiplied by `scale` (MuZero's dynamics scaling)."""
    return x * scale + x.detach() * (1.0 - scale)


# ------------------------------------------------------------------------------------ network


class MuZeroNet(nn.Module):
    def __init__(self, c: NetConfig):
        super().__init__()
        self.c = c
        self.pixels = PixelScaler(c.obs_scale) if c.obs_scale != 1.0 else None
        a = c.num_actions
        policy_out = a if c.discrete else 2 * a
        if c.kind == "resnet":
            cin, size = c.obs_shape[0], c.obs_shape[-1]
            side = -(-size // 16)
            self.side = side
            self.represent_net = nn.Sequential(
                downsample_resnet(cin, c.channels), *[ResBlock(c.channels) for _ in range(c.blocks)]
            )
            self.dyn_conv = nn.Conv2d(c.channels + a, c.channels, 3, 1, 1, bias=False)
            self.dyn_bn = nn.BatchNorm2d(c.channels)
            self.dyn_blocks = nn.Sequential(*[ResBlock(c.channels) for _ in range(c.blocks)])
            flat = c.reduced_channels * side * side

            def reduce() -> nn.Sequential:
                return nn.Sequential(
                    nn.Conv2d(c.channels, c.reduced_channels, 1),
                    nn.BatchNorm2d(c.reduced_channels),
                    nn.ReLU(),
                    nn.Flatten(),
                )

            self.reward_reduce = reduce()
            self.pred_blocks = nn.Sequential(*[ResBlock(c.channels) for _ in range(c.blocks)])
            self.value_reduce, self.policy_reduce = reduce(), reduce()
            norm: type[nn.Module] = nn.BatchNorm1d
            latent_size = c.channels * side * side
        elif c.kind in ("mlp", "conv"):
            if c.kind == "conv":  # a small conv torso over the grid, then the MLP body
                cin, side = c.obs_shape[0], c.obs_shape[-1]
                torso: list[nn.Module] = [
                    nn.Conv2d(cin, c.channels, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(c.channels),
                    nn.ReLU(),
                    *[ResBlock(c.channels) for _ in range(c.blocks)],
                ]
                size = c.channels * side * side
            else:
                torso, size = [], 1
                for d in c.obs_shape:
                    size *= d
            self.represent_net = nn.Sequential(
                *torso,
                nn.Flatten(),
                *mlp((size, c.hidden), norm=nn.LayerNorm),
                *[MLPBlock(c.hidden) for _ in range(c.blocks)],
                nn.Linear(c.hidden, c.latent),
            )
            self.dyn_in = mlp((c.latent + a, c.hidden), norm=nn.LayerNorm)
            self.dyn_blocks = nn.Sequential(*[MLPBlock(c.hidden) for _ in range(c.blocks)])
            self.dyn_out = nn.Linear(c.hidden, c.latent)
            self.reward_reduce = nn.Identity()
            self.pred_blocks = nn.Identity()
            self.value_reduce, self.policy_reduce = nn.Identity(), nn.Identity()
            flat = c.latent
            norm = nn.LayerNorm
            latent_size = c.latent
        else:
            raise FrugalError(f"unknown network kind {c.kind!r}; use resnet, conv or mlp")
        fc = tuple(c.fc)

        def head(inputs: int, outputs: int) -> nn.Sequential:
            """Linear -> norm -> ReLU per `fc` layer, then a zero-initialised Linear."""
            return mlp((inputs, *fc, outputs), nn.ReLU, norm=norm, last_act=False, zero_last=True)

        if c.value_prefix:
            self.lstm = nn.LSTMCell(flat, c.lstm_hidden)
            self.lstm_norm = norm(c.lstm_hidden)
            self.reward_head = head(c.lstm_hidden, c.reward_bins)
        else:
            self.reward_head = head(flat, c.reward_bins)
        self.value_head = head(flat, c.value_bins)
        self.policy_head = head(flat, policy_out)
        bn = nn.BatchNorm1d
        self.projection = nn.Sequential(
            *mlp((latent_size, c.proj_hidden, c.proj_hidden), norm=bn),
            nn.Linear(c.proj_hidden, c.proj_out),
            bn(c.proj_out),
        )
        self.predictor = mlp((c.proj_out, c.pred_hidden, c.proj_out), norm=bn, last_act=False)

    # ----------------------------------------------------------------------------- functions

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, *obs_shape] (uint8 pixels or float vectors) -> latent [B, ...]."""
        x = obs.float() if self.pixels is None else self.pixels(obs)
        s = self.represent_net(x)
        return normalize_latent(s) if self.c.latent_norm else s

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent -> (policy [B, A] logits, or [B, 2D] mean/scale; value logits [B, value_bins])."""
        h = self.pred_blocks(s)
        return self.policy_head(self.policy_reduce(h)), self.value_head(self.value_reduce(h))

    def initial_reward_state(self, batch: int, device: torch.device) -> RewardState:
        """Zero LSTM state (h, c) [B, lstm_hidden] for a value-prefix model, else None."""
        if not self.c.value_prefix:
            return None
        zeros = torch.zeros(batch, self.c.lstm_hidden, device=device)
        return zeros, zeros.clone()

    def encode_action(self, action: torch.Tensor) -> torch.Tensor:
        """long [B] (discrete) or float [B, D] (continuous) -> float [B, A or D]."""
        if self.c.discrete:
            return F.one_hot(action.long(), self.c.num_actions).float()
        return action.float()

    def dynamics(
        self, s: torch.Tensor, action: torch.Tensor, reward_state: RewardState = None
    ) -> tuple[torch.Tensor, torch.Tensor, RewardState]:
        """(latent, action, reward state) -> (next latent, reward logits [B, reward_bins], next
        reward state). With a value prefix the logits encode the sum of rewards since the LSTM
        state was last zeroed."""
        act = self.encode_action(action)
        if self.c.kind != "resnet":
            h = self.dyn_in(torch.cat([s, act], 1))
            nxt = s + self.dyn_out(self.dyn_blocks(h))
        else:
            planes = act[:, :, None, None].expand(-1, -1, s.shape[2], s.shape[3])
            h = self.dyn_bn(self.dyn_conv(torch.cat([s, planes], 1)))
            nxt = self.dyn_blocks(F.relu(h + s))
        if self.c.latent_norm:
            nxt = normalize_latent(nxt)
        feat = self.reward_reduce(nxt)
        if self.c.value_prefix:
            if reward_state is None:
                reward_state = self.initial_reward_state(s.shape[0], s.device)
            hx, cx = self.lstm(feat, reward_state)
            logits = self.reward_head(F.relu(self.lstm_norm(hx)))
            return nxt, logits, (hx, cx)
        return nxt, self.reward_head(feat), None

    def project(self, s: torch.Tensor, with_predictor: bool) -> torch.Tensor:
        """SimSiam: latent -> projection [B, proj_out]; the online branch adds the predictor."""
        z = self.projection(s.flatten(1))
        return self.predictor(z) if with_predictor else z
