"""EfficientZero's self-supervised consistency loss and the policy loss over discrete actions
(sampled search has its own, in sampled.py)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def consistency_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SimSiam negative cosine similarity, [N, D] x [N, D] -> [N]; the target branch is
    detached (stop-gradient), so only the online branch receives gradient."""
    return -F.cosine_similarity(predicted, target.detach(), dim=-1)


def policy_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-sum_a target(a) log softmax(logits)(a) and the policy's entropy: logits, target
    [..., A] -> (loss, entropy) [...]."""
    log_p = F.log_softmax(logits, -1)
    return -(target * log_p).sum(-1), -(log_p.exp() * log_p).sum(-1)
