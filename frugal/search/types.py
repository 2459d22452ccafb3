"""The records that cross the search boundary: the inputs (Root, what recurrent_fn returns as a
Step), the parameters of each method (PuctParams, GumbelParams) and the result (SearchOutput).
Shapes use B = batch of roots, A = actions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

# A latent state: one tensor, or a (nested) tuple / list / dict of tensors, each with leading dim B.
Embedding = Any


@dataclass(frozen=True)
class Root:
    """The network's output at the B root states.

    prior_logits: float [B, A] policy logits (logits, not probabilities).
    value: float [B] value estimate v(root). Gumbel: it counts as the root's first visit (mctx).
        pUCT: unused (EfficientZero counts the root's first visit with value 0).
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
    discount: float [B] discount d of that transition (0 where it ends the episode): the search
        uses Q(parent, action) = reward + d * V(new node). A float64 tensor is used as it is, any
        other dtype is read as float32 (0.997 in float32 is not 0.997).
    prior_logits: float [B, A] policy logits at the new node.
    value: float [B] value estimate v(new node).
    """

    reward: torch.Tensor
    discount: torch.Tensor
    prior_logits: torch.Tensor
    value: torch.Tensor


@dataclass(frozen=True)
class SearchOutput:
    """The result of `puct` or `gumbel`, every tensor on the device of `Root.prior_logits`.

    action: long [B] the action to play. Gumbel: the sequential-halving winner. pUCT: the most
        visited root action (ties: random with a generator, else the first).
    action_weights: float [B, A] policy target. Gumbel: the improved policy
        softmax(logits + sigma(completed Q)), 0 on invalid actions. pUCT: visit counts / S.
    visit_counts: long [B, A] root children's visit counts; they sum to S.
    root_value: float [B] Gumbel: (v(root) + sum of the S backed-up returns) / (S + 1). pUCT:
        (0 + sum of the S backed-up returns) / (S + 1), as EfficientZero's ctree.
    qvalues: float [B, A] r(root, a) + d(root, a) * V(child a); 0 where a was not visited.
    """

    action: torch.Tensor
    action_weights: torch.Tensor
    visit_counts: torch.Tensor
    root_value: torch.Tensor
    qvalues: torch.Tensor


def _check(condition: bool, params: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{params}: {message}")


def _real(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class PuctParams:
    """pUCT search (EfficientZero V1) parameters; see `frugal.search.puct`.

    pb_c_init, pb_c_base: exploration constants, pb_c = pb_c_init + ln((N + pb_c_base + 1) /
        pb_c_base) for a node with N child visits.
    dirichlet_alpha, dirichlet_fraction: root prior = (1 - f) P + f Dir(alpha) over the valid
        actions (f = 0: no noise).
    value_delta_max: floor of the min-max range used to normalise Q.
    """

    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.0
    value_delta_max: float = 0.01

    def __post_init__(self) -> None:
        name = "PuctParams"
        for field in ("pb_c_init", "pb_c_base", "dirichlet_alpha", "dirichlet_fraction",
                      "value_delta_max"):  # fmt: skip
            _check(_real(getattr(self, field)), name, f"{field} must be a finite number, got "
                   f"{getattr(self, field)!r}")  # fmt: skip
        _check(self.pb_c_init >= 0, name, f"pb_c_init must be >= 0, got {self.pb_c_init}")
        _check(self.pb_c_base > 0, name, f"pb_c_base must be > 0, got {self.pb_c_base}")
        _check(self.dirichlet_alpha > 0, name,
               f"dirichlet_alpha must be > 0, got {self.dirichlet_alpha}")  # fmt: skip
        _check(0 <= self.dirichlet_fraction <= 1, name,
               f"dirichlet_fraction must be in [0, 1], got {self.dirichlet_fraction}")  # fmt: skip
        _check(self.value_delta_max >= 0, name,
               f"value_delta_max must be >= 0, got {self.value_delta_max}")  # fmt: skip


@dataclass(frozen=True)
class GumbelParams:
    """Gumbel MuZero search (EfficientZero V2 / mctx) parameters; see `frugal.search.gumbel`.

    gumbel_scale: the root noise is gumbel_scale * Gumbel(0, 1); 0 makes the search
        deterministic.
    max_considered_actions: m = min(this, number of valid actions) root actions enter sequential
        halving.
    c_visit, c_scale: sigma(q) = (c_visit + max N) * c_scale * q on min-max rescaled Q.
    rescale: one of RESCALES: "node" (mctx: min-max of the node's completed Q) or "tree"
        (EfficientZero V2's released search: min-max of all Q seen in the root's tree, as pUCT
        normalises).
    value_delta_max: floor of the min-max range with rescale "tree".
    """

    RESCALES: ClassVar[tuple[str, ...]] = ("node", "tree")

    gumbel_scale: float = 1.0
    max_considered_actions: int = 16
    c_visit: float = 50.0
    c_scale: float = 0.1
    rescale: str = "node"
    value_delta_max: float = 0.01

    def __post_init__(self) -> None:
        name = "GumbelParams"
        for field in ("gumbel_scale", "c_visit", "c_scale", "value_delta_max"):
            _check(_real(getattr(self, field)), name, f"{field} must be a finite number, got "
                   f"{getattr(self, field)!r}")  # fmt: skip
        m = self.max_considered_actions
        _check(isinstance(m, int) and not isinstance(m, bool) and m >= 1, name,
               f"max_considered_actions must be an int >= 1, got {m!r}")  # fmt: skip
        _check(self.gumbel_scale >= 0, name, f"gumbel_scale must be >= 0, got {self.gumbel_scale}")
        _check(self.c_visit >= 0, name, f"c_visit must be >= 0, got {self.c_visit}")
        _check(self.c_scale >= 0, name, f"c_scale must be >= 0, got {self.c_scale}")
        _check(self.rescale in self.RESCALES, name,
               f"rescale must be one of {self.RESCALES}, got {self.rescale!r}")  # fmt: skip
        _check(self.value_delta_max >= 0, name,
               f"value_delta_max must be >= 0, got {self.value_delta_max}")  # fmt: skip


RESCALES = GumbelParams.RESCALES
