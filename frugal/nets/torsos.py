"""Feature extractors chosen from the observation spec: Nature CNN for Atari-sized pixels, a
small CNN for MinAtar's 10x10 grids, an MLP for vectors."""

from __future__ import annotations

import torch
from torch import nn

from frugal.envs.base import EnvSpec


class PixelInput(nn.Module):
    """uint8 [B, C, H, W] -> float in [0, 1]."""

    def __init__(self, high: float):
        super().__init__()
        self.scale = 1.0 / high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # always a fresh float copy (uint8 frames need one anyway), scaled in place
        return x.to(torch.float32, copy=True).mul_(self.scale)


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


def mlp(sizes: tuple[int, ...], activation: type[nn.Module] = nn.ReLU, last_act: bool = True):
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(activation())
    return nn.Sequential(*layers)


def make_torso(spec: EnvSpec, kind: str, hidden: tuple[int, ...]) -> tuple[nn.Module, int]:
    """kind: auto | nature | minatar | mlp. Returns (module, number of output features)."""
    if kind == "auto":
        if spec.pixels:
            kind = "minatar" if spec.obs_shape[-1] <= 16 else "nature"
        else:
            kind = "mlp"
    if kind == "mlp":
        if spec.pixels:
            raise ValueError("an MLP torso needs vector observations")
        size = int(torch.tensor(spec.obs_shape).prod())
        body = mlp((size, *hidden))
        return nn.Sequential(nn.Flatten(), body), hidden[-1] if hidden else size
    if not spec.pixels:
        raise ValueError(f"a {kind} torso needs pixel observations")
    build = nature_cnn if kind == "nature" else minatar_cnn
    body, out = build(spec.obs_shape[0], spec.obs_shape[-1])
    return nn.Sequential(PixelInput(spec.obs_high), body), out
