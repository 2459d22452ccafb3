"""Sampled search for Box actions (EfficientZero V2, after Hubert et al. 2021): every node
searches over K candidate actions drawn from its policy, a squashed (tanh) Gaussian.

The candidates are the policy mean (slot 0), draws from the policy and draws from the policy with
its std magnified; their prior logits are log pi(u) - log beta(u), beta the mixture they were
drawn from. The policy target is a distribution over a node's candidates, so the loss is the
cross-entropy -sum_k target_k log pi(u_k). Actions live in [-1, 1]^D inside the agent and are
mapped to the env's bounds at the boundary.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from frugal.agents.efficientzero.model import Embedding
from frugal.nets.distributions import normal_entropy, normal_log_prob


def squashed_gaussian(out: torch.Tensor, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy head [N, 2D] -> (mean [N, D], std [N, D]) of the pre-tanh Gaussian."""
    mean, raw = out.float().chunk(2, dim=-1)
    return mean, F.softplus(raw) + min_std


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
    log_pi = normal_log_prob(u, mean[:, None], std[:, None])
    log_wide = normal_log_prob(u, mean[:, None], magnification * std[:, None])
    frac = num_policy / num
    log_beta = torch.logaddexp(log_pi + math.log(frac), log_wide + math.log(max(1 - frac, 1e-12)))
    return torch.tanh(u).clamp(-1 + 1e-6, 1 - 1e-6), log_pi - log_beta


class SampledPrior:
    """The search's prior for Box actions: each node draws its candidates (kept in the
    embedding as `cand`) and the search chooses among their slots."""

    def __init__(self, num: int, num_policy: int, magnification: float, min_std: float):
        self.num, self.num_policy = num, num_policy
        self.magnification, self.min_std = magnification, min_std

    def logits(
        self, policy: torch.Tensor, emb: Embedding, generator: torch.Generator
    ) -> torch.Tensor:
        mean, std = squashed_gaussian(policy, self.min_std)
        cand, logits = sample_candidates(
            mean, std, self.num, self.num_policy, self.magnification, generator
        )
        emb["cand"] = cand
        return logits

    def action(self, emb: Embedding, slot: torch.Tensor) -> torch.Tensor:
        cand = emb["cand"]
        return cand[torch.arange(len(slot), device=cand.device), slot]


def policy_loss(
    policy_out: torch.Tensor, target: torch.Tensor, sampled: np.ndarray, min_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy to the search policy over each node's candidates and the entropy of the
    Gaussian: policy_out [B, K+1, 2D], target [B, K+1, K'], sampled (the candidates)
    [B, K+1, K', D] -> (loss, entropy) [B, K+1]. The density is the Gaussian's before tanh."""
    mean, std = squashed_gaussian(policy_out, min_std)
    cand = torch.as_tensor(sampled, device=policy_out.device)
    u = torch.atanh(cand.clamp(-1 + 1e-6, 1 - 1e-6))
    log_pi = normal_log_prob(u, mean[:, :, None], std[:, :, None])  # [B, K+1, K']
    return -(target * log_pi).sum(-1), normal_entropy(std)


def to_env(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actions in [-1, 1]^D -> the env's bounds, float32."""
    return (low + (action + 1.0) * 0.5 * (high - low)).astype(np.float32)


def from_env(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The env's actions -> [-1, 1]^D, float32 (the inverse of `to_env`)."""
    return (2.0 * (action - low) / (high - low) - 1.0).astype(np.float32)
