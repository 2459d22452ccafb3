"""The one optimiser step every agent takes: clip the gradient norm, then step, unless the norm is
not finite (a NaN or infinite loss or gradient). Then the step is skipped and the gradients are
dropped, so the weights and the optimiser's moments stay finite; the returned norm (NaN or inf)
tells the runner, which stops the run or counts a skipped update (`run.on_nonfinite`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def clipped_step(
    optimizer: torch.optim.Optimizer, parameters: Iterable[torch.Tensor], max_norm: float
) -> torch.Tensor:
    """Clip the gradients of `parameters` to `max_norm` and step `optimizer` if they are finite.
    Returns the gradient norm before clipping."""
    norm = nn.utils.clip_grad_norm_(parameters, max_norm)
    if torch.isfinite(norm):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return norm
