"""The three records that cross the search boundary. Shapes use B = batch of roots, A = actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# A latent state: one tensor, or a (nested) tuple / list / dict of tensors, each with leading dim B.
Embedding = Any


@dataclass(frozen=True)
class Root:
    """The network's output at the B root states.

    prior_logits: float [B, A] policy logits (logits, not probabilities).
    value: float [B] value estimate v(root); it counts as the root's first visit.
    embedding: latent state, a tensor or a tuple/list/dict of tensors with leading dim B, on any
        device. The search keeps every node's embedding on that device and hands batches of them
        to `recurrent_fn`.
    """

    prior_logits: torch.Tensor
    value: torch.Tensor
    embedding: Embedding


@dataclass(frozen=True)
class Step:
    """What `recurrent_fn` returns for the B new nodes (besides their embedding).

    reward: float [B] reward r(parent, action) of the transition into the new node (an agent with
        a value-prefix model converts prefixes to rewards before returning).
    prior_logits: float [B, A] policy logits at the new node.
    value: float [B] value estimate v(new node).
    """

    reward: torch.Tensor
    prior_logits: torch.Tensor
    value: torch.Tensor


@dataclass(frozen=True)
class SearchOutput:
    """The result of `search`, every tensor on the device of `Root.prior_logits`.

    action: long [B] the action to play. Gumbel: the sequential-halving winner. pUCT: the most
        visited root action (ties: random with a generator, else the first).
    action_weights: float [B, A] policy target. Gumbel: the improved policy
        softmax(logits + sigma(completed Q)), 0 on invalid actions. pUCT: visit counts / S.
    visit_counts: long [B, A] root children's visit counts; they sum to S.
    root_value: float [B] (v(root) + sum of the S backed-up returns) / (S + 1).
    qvalues: float [B, A] r(root, a) + discount * V(child a); 0 where a was not visited.
    """

    action: torch.Tensor
    action_weights: torch.Tensor
    visit_counts: torch.Tensor
    root_value: torch.Tensor
    qvalues: torch.Tensor
