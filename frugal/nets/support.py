"""Scalar <-> categorical transforms for value and reward heads (MuZero, EfficientZero).

A scalar x is first squashed with the invertible h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps * x
(Pohlen et al. 2018), then spread over a fixed grid of `bins` evenly spaced atoms in [low, high]
as a "two-hot" distribution (`frugal.nets.distributions.twohot`): the two neighbouring atoms
share the mass so that the expectation over the grid is h(x) (after clipping to the grid, up to
float rounding). Decoding takes the expectation of the softmax of the logits and applies h^-1.
A support with fewer than 2 bins or without low < high is refused with a FrugalError.

All functions are pure and batched: any leading shape `...` is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from frugal.errors import FrugalError
from frugal.nets.distributions import twohot

H_EPS = 1e-3


def h_transform(x: torch.Tensor, eps: float = H_EPS) -> torch.Tensor:
    """h(x) = sign(x) * (sqrt(|x| + 1) - 1) + eps * x, elementwise on any shape."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def h_inverse(y: torch.Tensor, eps: float = H_EPS) -> torch.Tensor:
    """The exact inverse of `h_transform`, elementwise:
    h^-1(y) = sign(y) * (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)."""
    root = (torch.sqrt(1.0 + 4.0 * eps * (y.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(y) * (root * root - 1.0)


@dataclass(frozen=True)
class Support:
    """A categorical support: `bins` atoms evenly spaced in [low, high], in h-space when
    `transform` is set (EfficientZero's Atari support is Support(-300, 300, 601))."""

    low: float
    high: float
    bins: int
    transform: bool = True

    def __post_init__(self) -> None:
        where = f"support ({self.low}, {self.high}, {self.bins})"
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise FrugalError(f"{where}: bins must be an integer >= 2, got {self.bins!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise FrugalError(f"{where}: needs finite low < high, got {self.low}, {self.high}")

    def atoms(self, device: torch.device | None = None) -> torch.Tensor:
        """float [bins]."""
        return torch.linspace(self.low, self.high, self.bins, device=device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scalars [...] -> target probabilities [..., bins]."""
        y = h_transform(x) if self.transform else x
        return twohot(y.float(), self.atoms(x.device))

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., bins] -> scalars [...] (expectation over atoms, then h^-1)."""
        probs = F.softmax(logits.float(), dim=-1)
        y = (probs * self.atoms(logits.device)).sum(-1)
        return h_inverse(y) if self.transform else y

    def cross_entropy(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-sum_i target_i log softmax(logits)_i with target = encode(x): logits [..., bins],
        x [...] -> loss [...]."""
        return -(self.encode(x) * F.log_softmax(logits.float(), dim=-1)).sum(-1)
