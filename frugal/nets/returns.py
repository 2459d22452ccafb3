"""Returns for imagined trajectories and the percentile return normaliser of DreamerV3."""

from __future__ import annotations

import torch


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor, lam: float
) -> torch.Tensor:
    """TD(λ) returns [H, ...] of a trajectory of H steps.

    rewards [H, ...]: reward on arriving at step t+1; discounts [H, ...]: γ times the
    continuation flag of step t+1; values [H+1, ...]: critic values of steps 0..H. The last
    value bootstraps: R_H = v_H and R_t = r_t + d_t ((1 - λ) v_{t+1} + λ R_{t+1}).
    """
    horizon = rewards.shape[0]
    if values.shape[0] != horizon + 1 or discounts.shape[0] != horizon:
        raise ValueError(
            f"expected rewards/discounts [H] and values [H+1], got {rewards.shape[0]}, "
            f"{discounts.shape[0]} and {values.shape[0]}"
        )
    mixed = rewards + discounts * values[1:] * (1.0 - lam)  # everything but the λ recursion
    out = []
    last = values[-1]
    for t in reversed(range(horizon)):
        last = mixed[t] + discounts[t] * lam * last
        out.append(last)
    return torch.stack(out[::-1])


class PercentileNormaliser:
    """Scale of returns: S = EMA(per(R, high)) - EMA(per(R, low)), both EMAs starting at 0 with
    `decay`; returns are divided by max(limit, S), so small returns are not blown up.

    The state is two scalar tensors, so updates run without leaving the device."""

    def __init__(
        self,
        decay: float = 0.99,
        limit: float = 1.0,
        low: float = 5.0,
        high: float = 95.0,
        device: torch.device | str = "cpu",
    ):
        self.decay, self.limit = decay, limit
        self.quantiles = torch.tensor([low / 100.0, high / 100.0], device=device)
        self.low = torch.zeros((), device=device)
        self.high = torch.zeros((), device=device)

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Fold in a batch of returns (any shape); returns the new scale max(limit, S)."""
        lo, hi = torch.quantile(returns.detach().flatten().float(), self.quantiles)
        self.low.mul_(self.decay).add_((1.0 - self.decay) * lo)
        self.high.mul_(self.decay).add_((1.0 - self.decay) * hi)
        return self.scale()

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.high - self.low, min=self.limit)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"low": self.low.clone(), "high": self.high.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.low.copy_(torch.as_tensor(state["low"]))
        self.high.copy_(torch.as_tensor(state["high"]))
