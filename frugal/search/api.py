"""The two searches: `puct` (EfficientZero V1) and `gumbel` (Gumbel MuZero, EfficientZero V2).

Both run S simulations from each of B roots at once. Per simulation one numba kernel call backs
up the previous simulation's new nodes and selects the next leaf edge of every root, and
`recurrent_fn` runs once on the batch of B parent embeddings, on whatever device they live.
"""

from __future__ import annotations

import torch

from frugal.search._engine import run
from frugal.search._engine.driver import RecurrentFn
from frugal.search.types import GumbelParams, PuctParams, Root, SearchOutput

_SHARED_DOC = """
    root: Root(prior_logits float [B, A], value float [B], embedding): a tensor or a nest
        (tuple / list / dict) of tensors with leading dim B, on any device.
    recurrent_fn(embedding, action) -> (Step(reward [B], discount [B], prior_logits [B, A],
        value [B]), next embedding): called exactly S times, each time on one batch of B
        embeddings (one node per root) and long actions [B] on the embedding's device. Its
        inputs are fresh tensors (it may keep them); its outputs are copied, so it may reuse its
        own buffers. The next embedding must match the root's structure, shapes and dtypes.
        Step.discount d is that of the transition into the new node (0 at a terminal): the
        search backs up Q(parent, a) = reward + d * V(child) with each edge's own d.
    num_simulations: S >= 0.
    invalid_actions: bool [B, A], True = illegal at the root (never visited, weight 0). Every
        root needs at least one legal action. Below the root all actions are legal.

    Returns SearchOutput(action long [B], action_weights float [B, A], visit_counts long [B, A]
    summing to S, root_value float [B], qvalues float [B, A]) on the device of
    root.prior_logits (see SearchOutput).

    Tree arithmetic is float64; network outputs are read as float32 (a float64 discount as it
    is). Runs under no_grad. Safe from several threads and from inside a recurrent_fn (each
    gets its own scratch memory).
"""


def puct(
    root: Root,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    *,
    params: PuctParams = PuctParams(),  # noqa: B008 (frozen, so one shared default is safe)
    invalid_actions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> SearchOutput:
    if not isinstance(params, PuctParams):
        raise TypeError(f"params must be PuctParams, got {type(params).__name__}")
    out, _ = run(
        root, recurrent_fn, num_simulations, params, invalid_actions=invalid_actions,
        generator=generator,
    )  # fmt: skip
    return out


puct.__doc__ = (
    """pUCT search with EfficientZero (V1) semantics over B roots, S simulations each.

    Selection: score(a) = norm(Q(a)) + P(a) * sqrt(N) / (1 + N(a)) * pb_c(N), N the node's child
    visits, norm() the root's min-max normalisation (range floored at value_delta_max); an
    unvisited child scores with the node's mean Q. Scores within 1e-6 tie. action: the most
    visited valid root action; action_weights: visit counts / S; root_value: the sum of the S
    backed-up returns / (S + 1) (EfficientZero's ctree counts the root's first visit with value
    0; root.value takes no part).

    params: PuctParams (exploration constants, Dirichlet root noise, value_delta_max).
    generator: draws the Dirichlet noise and breaks ties at random. None: noise from torch's
        global generator, ties to the first index.
"""
    + _SHARED_DOC
)


def gumbel(
    root: Root,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    *,
    params: GumbelParams = GumbelParams(),  # noqa: B008 (frozen)
    invalid_actions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    gumbel_noise: torch.Tensor | None = None,
) -> SearchOutput:
    if not isinstance(params, GumbelParams):
        raise TypeError(f"params must be GumbelParams, got {type(params).__name__}")
    out, _ = run(
        root, recurrent_fn, num_simulations, params, invalid_actions=invalid_actions,
        generator=generator, gumbel_noise=gumbel_noise,
    )  # fmt: skip
    return out


gumbel.__doc__ = (
    """Gumbel MuZero search (mctx semantics) over B roots, S simulations each.

    Root: Gumbel-top-m then sequential halving on g + logits + sigma(completed Q); below it the
    deterministic argmax of softmax(logits + sigma) - N / (1 + sum N). action: the halving
    winner; action_weights: the improved policy softmax(logits + sigma(completed Q)), 0 on
    invalid actions.

    params: GumbelParams (gumbel_scale, max_considered_actions, c_visit, c_scale, rescale,
        value_delta_max).
    generator: draws the Gumbel noise g = gumbel_scale * Gumbel(0, 1) (None: torch's global
        generator).
    gumbel_noise: float [B, A] noise to use as g instead of drawing it.
"""
    + _SHARED_DOC
)
