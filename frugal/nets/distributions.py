"""Output transforms and distributions of DreamerV3 (Hafner et al. 2023), as pure batched
functions over tensors.

- symlog / symexp squash targets of unknown scale; symexp inverts symlog.
- twohot: a scalar as weights on its two nearest buckets, so a categorical over fixed buckets
  can regress values of any magnitude with cross-entropy (reward and critic heads).
- unimix: categorical probabilities mixed with a little of the uniform distribution, so no
  class is ever impossible (keeps KL terms and log-probabilities bounded).
- one-hot samples with straight-through gradients for the RSSM's categorical latents.
- the bounded normal of the continuous actor: tanh mean, std squashed into [min_std, max_std].

Shapes: `...` is any batch shape; K the number of buckets or classes.
"""

from __future__ import annotations

import math

import torch


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * ln(|x| + 1), elementwise."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * (exp(|x|) - 1), the inverse of symlog."""
    return torch.sign(x) * torch.expm1(x.abs())


def symlog_buckets(
    num: int = 255, low: float = -20.0, high: float = 20.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """[num] bucket centres spaced evenly in symlog space."""
    return torch.linspace(low, high, num, device=device)


def twohot(x: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
    """x [...] (already in bucket space) -> [..., K] weights on the two neighbouring buckets,
    linear in the distance, summing to 1 and decoding back to x: sum(code * buckets) == x.

    buckets [K] must be increasing (spaced evenly or not, K >= 2). Values beyond the edges are
    clipped to them, so they put all weight on the edge bucket; a value exactly on a bucket puts
    all weight on it."""
    k = buckets.shape[0]
    if buckets.dim() != 1 or k < 2:
        raise ValueError(f"twohot needs a 1-d tensor of at least 2 buckets, got {buckets.shape}")
    x = x.clamp(buckets[0], buckets[-1])
    position = x.detach().to(buckets.dtype).contiguous()
    above = torch.searchsorted(buckets, position, right=True).clamp(max=k - 1)
    below = (above - 1).clamp(min=0)
    lo, hi = buckets[below], buckets[above]
    w_above = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    out = torch.zeros(*x.shape, k, dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), (1.0 - w_above).unsqueeze(-1))
    out.scatter_add_(-1, above.unsqueeze(-1), w_above.unsqueeze(-1))
    return out


def twohot_mean(logits: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
    """logits [..., K] -> [...]: the expected bucket under softmax(logits), mapped back with
    symexp."""
    return symexp((logits.softmax(-1) * buckets).sum(-1))


def twohot_loss(logits: torch.Tensor, target: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy [...] between softmax(logits [..., K]) and the twohot code of
    symlog(target [...])."""
    code = twohot(symlog(target), buckets)
    return -(code * logits.log_softmax(-1)).sum(-1)


def unimix_probs(logits: torch.Tensor, mix: float) -> torch.Tensor:
    """(1 - mix) * softmax(logits) + mix / K over the last dim."""
    probs = logits.softmax(-1)
    if mix <= 0.0:
        return probs
    return probs * (1.0 - mix) + mix / logits.shape[-1]


def unimix_logits(logits: torch.Tensor, mix: float) -> torch.Tensor:
    """log of unimix_probs(logits, mix): normalised log-probabilities [..., K]."""
    if mix <= 0.0:
        return logits.log_softmax(-1)
    return unimix_probs(logits, mix).log()


def onehot_from_uniform(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF samples of categoricals: probs [..., K] and uniforms u [...] in [0, 1) ->
    one-hot [..., K] (float, no gradient): the first class whose cumulative probability
    reaches u (the last class absorbs rounding)."""
    reached = probs.detach().cumsum(-1) >= u.unsqueeze(-1)
    reached[..., -1] = True
    reached = reached.to(probs.dtype)
    return torch.diff(reached, dim=-1, prepend=torch.zeros_like(reached[..., :1]))


def sample_onehot(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One-hot samples [..., K] of categoricals with probabilities [..., K], the uniforms drawn
    from `generator`."""
    u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device)
    return onehot_from_uniform(probs, u)


def straight_through(sample: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """The value of `sample`, the gradient of `probs` (straight-through estimator)."""
    return sample + probs - probs.detach()


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL[p || q] [...] of categoricals with normalised log-probabilities [..., K]."""
    return (logits_p.exp() * (logits_p - logits_q)).sum(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy [...] of a categorical with normalised log-probabilities [..., K]."""
    return -(logits.exp() * logits).sum(-1)


def free_bits(loss: torch.Tensor, free: float) -> torch.Tensor:
    """max(free, loss) elementwise: no gradient once a KL term is below `free` nats."""
    return loss.clamp(min=free) if free > 0 else loss


def bounded_normal(
    mean: torch.Tensor, std: torch.Tensor, min_std: float = 0.1, max_std: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw network outputs -> (tanh(mean), (max_std - min_std) * sigmoid(std + 2) + min_std),
    the actor distribution for continuous actions in [-1, 1]."""
    return torch.tanh(mean), (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density [...] of a diagonal normal over the last dim."""
    z = (x - mean) / std
    return (-0.5 * z.square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def normal_entropy(std: torch.Tensor) -> torch.Tensor:
    """Entropy [...] of a diagonal normal over the last dim."""
    return (std.log() + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
