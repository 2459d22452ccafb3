"""PPO's losses and the log-probabilities of its policies, as pure functions over tensors:
generalised advantage estimation, the clipped surrogate, the (clipped) value loss, and the
log-probability, entropy and sampling of categorical and diagonal-Gaussian policies."""

from __future__ import annotations

import numpy as np
import torch

from frugal.nets.distributions import categorical_entropy, normal_entropy, normal_log_prob

# ----------------------------------------------------------------------------------- policies


def categorical_log_prob_entropy(
    logits: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, A], integer actions [B] -> (log pi(a) [B], entropy [B])."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return logp, categorical_entropy(logp_all)


def log_prob_entropy(
    out: torch.Tensor, actions: torch.Tensor, log_std: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities [B] of `actions` and entropies [B] of the policies `out`: logits [B, A]
    when `log_std` is None, else Gaussian means [B, D] with log standard deviations [D] (the
    actions are the unclipped samples)."""
    if log_std is None:
        return categorical_log_prob_entropy(out, actions)
    std = log_std.exp()
    return normal_log_prob(actions, out, std), normal_entropy(std).expand(len(out))


def sample_categorical(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One action per row of `logits` [B, A] by inverting the CDF with uniforms from `rng`."""
    probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


# ------------------------------------------------------------------------------------ losses


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    cut: torch.Tensor,
    discount: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over a rollout; all inputs [T, N].

    next_values[t]: value of the true successor of step t's observation (V(final_obs) where the
    episode was truncated). terminated[t]: no bootstrap from it. cut[t]: an episode ended at t
    (terminated or truncated), so advantages do not flow back across it.
    Returns (advantages, returns = advantages + values), both [T, N]."""
    not_terminal = 1.0 - terminated.float()
    not_cut = 1.0 - cut.float()
    deltas = rewards + discount * next_values * not_terminal - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + discount * lam * not_cut[t] * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped surrogate, to minimise: mean(max(-A r, -A clip(r, 1-c, 1+c))). Returns
    (loss, ratio r = pi/pi_old [B])."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return torch.max(unclipped, clipped).mean(), ratio


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """0.5 * mean squared error to the returns; with `clip`, the pessimistic max of the errors of
    the new value and of the old value moved by at most +-clip (PPO2's value clipping)."""
    error = (values - returns).pow(2)
    if clip is not None:
        moved = old_values + torch.clamp(values - old_values, -clip, clip)
        error = torch.max(error, (moved - returns).pow(2))
    return 0.5 * error.mean()
