"""Scalar <-> categorical transforms for value and reward heads (MuZero, EfficientZero).

A scalar x is first squashed with the invertible h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps * x
(Pohlen et al. 2018), then spread over a fixed grid of `bins` evenly spaced atoms in [low, high]
as a "two-hot" distribution: the two neighbouring atoms share the mass so that the expectation
over the grid is exactly h(x) (after clipping to the grid). Decoding takes the expectation of the
softmax of the logits and applies h^-1.

All functions are pure and batched: any leading shape `...` is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

H_EPS = 1e-3


def h_transform(x: torch.Tensor, eps: float = H_EPS) -> torch.Tensor:
    """h(x) = sign(x) * (sqrt(|x| + 1) - 1) + eps * x, elementwise on any shape."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def h_inverse(y: torch.Tensor, eps: float = H_EPS) -> torch.Tensor:
    """The exact inverse of `h_transform`, elementwise:
    h^-1(y) = sign(y) * (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)."""
    root = (torch.sqrt(1.0 + 4.0 * eps * (y.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(y) * (root * root - 1.0)


def two_hot(y: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    """Spread y [...] over `bins` atoms evenly spaced in [low, high]: probabilities [..., bins].

    y is clipped to [low, high]; the mass goes to the two atoms around it, in proportion to
    closeness, so sum_i p_i * atom_i == clip(y) (up to float rounding)."""
    if bins < 2:
        raise ValueError(f"a support needs at least 2 bins, got {bins}")
    step = (high - low) / (bins - 1)
    pos = (y.clamp(low, high) - low) / step  # in [0, bins - 1]
    lower = pos.floor().clamp(0, bins - 2)
    upper_weight = pos - lower
    index = lower.long()
    out = torch.zeros(*y.shape, bins, dtype=y.dtype, device=y.device)
    out.scatter_(-1, index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    out.scatter_add_(-1, (index + 1).unsqueeze(-1), upper_weight.unsqueeze(-1))
    return out


@dataclass(frozen=True)
class Support:
    """A categorical support: `bins` atoms evenly spaced in [low, high], in h-space when
    `transform` is set (EfficientZero's Atari support is Support(-300, 300, 601))."""

    low: float
    high: float
    bins: int
    transform: bool = True

    def atoms(self, device: torch.device | None = None) -> torch.Tensor:
        """float [bins]."""
        return torch.linspace(self.low, self.high, self.bins, device=device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scalars [...] -> target probabilities [..., bins]."""
        y = h_transform(x) if self.transform else x
        return two_hot(y.float(), self.low, self.high, self.bins)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., bins] -> scalars [...] (expectation over atoms, then h^-1)."""
        probs = F.softmax(logits.float(), dim=-1)
        y = (probs * self.atoms(logits.device)).sum(-1)
        return h_inverse(y) if self.transform else y

    def cross_entropy(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-sum_i target_i log softmax(logits)_i with target = encode(x): logits [..., bins],
        x [...] -> loss [...]."""
        return -(self.encode(x) * F.log_softmax(logits.float(), dim=-1)).sum(-1)
