"""The building blocks every network is made of: one MLP, one pixel scaler, the conv blocks and
the weight initialisations. Each takes explicit sizes, never an agent's config."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class PixelScaler(nn.Module):
    """uint8 [B, C, H, W] -> float32 in [0, 1]: divided by `high` (255 for Atari frames) into a
    fresh tensor, so the caller's batch is never written to."""

    def __init__(self, high: float):
        super().__init__()
        self.scale = 1.0 / high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype is torch.float32:
            return x * self.scale
        return x.float().mul_(self.scale)


def mlp(
    sizes: tuple[int, ...],
    activation: Callable[[], nn.Module] = nn.ReLU,
    *,
    norm: Callable[[int], nn.Module] | None = None,
    bias: bool = True,
    last_act: bool = True,
    zero_last: bool = False,
) -> nn.Sequential:
    """Linear layers sizes[0] -> ... -> sizes[-1], each followed by `norm(width)` (if given) and
    `activation()`; with last_act=False the last layer is a plain Linear (with a bias), zero
    initialised when zero_last."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        plain = last and not last_act
        linear = nn.Linear(sizes[i], sizes[i + 1], bias=bias or plain)
        layers.append(linear)
        if plain:
            if zero_last:
                zero_init(linear)
            continue
        if norm is not None:
            layers.append(norm(sizes[i + 1]))
        layers.append(activation())
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------- conv blocks


def nature_cnn(in_channels: int, size: int) -> tuple[nn.Module, int]:
    """Mnih et al. 2015: 32@8x8/4, 64@4x4/2, 64@3x3/1, flattened (3136 features at 84x84)."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, 32, 8, stride=4),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1),
        nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        out = net(torch.zeros(1, in_channels, size, size)).shape[1]
    return net, out


def minatar_cnn(in_channels: int, size: int) -> tuple[nn.Module, int]:
    """Young & Tian 2019: one 16@3x3/1 convolution over the 10x10 grid."""
    net = nn.Sequential(nn.Conv2d(in_channels, 16, 3, stride=1), nn.ReLU(), nn.Flatten())
    return net, 16 * (size - 2) * (size - 2)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of [N, C, H, W] feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def norm_conv(
    cin: int, cout: int, kernel: int, stride: int, *, transpose: bool = False, out_pad: int = 0
) -> list[nn.Module]:
    """Conv (or transposed conv) with padding 1 and no bias, channel LayerNorm, SiLU
    (DreamerV3's encoder and decoder blocks)."""
    if transpose:
        conv = nn.ConvTranspose2d(cin, cout, kernel, stride, 1, output_padding=out_pad, bias=False)
    else:
        conv = nn.Conv2d(cin, cout, kernel, stride, 1, bias=False)
    return [conv, ChannelNorm(cout, eps=1e-3), nn.SiLU()]


class ResBlock(nn.Module):
    """Two 3x3 convs with batch norm and a skip; a 3x3 stride-s conv on the skip when the
    shape changes."""

    def __init__(self, cin: int, cout: int | None = None, stride: int = 1):
        super().__init__()
        cout = cout or cin
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.skip(x))


# ------------------------------------------------------------------------------------- inits


def zero_init(layer: nn.Linear) -> nn.Linear:
    """Zero weights and bias: an output layer that starts at exactly 0."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def orthogonal_init(module: nn.Module, gain: float, generator: torch.Generator) -> None:
    """Orthogonal weights with `gain`, zero biases, on every linear and conv layer (CleanRL)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(layer.weight, gain, generator=generator)
            nn.init.zeros_(layer.bias)


def fan_avg_init(module: nn.Module) -> None:
    """Truncated normal with variance 2 / (fan_in + fan_out) (DreamerV3's 'normal, fan avg'),
    zero biases, on every linear and conv layer."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
