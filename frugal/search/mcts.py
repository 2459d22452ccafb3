"""Deprecated: the old single entry point `search(..., method=..., discount=d)`, kept only until
its last caller moves to `frugal.search.puct` / `frugal.search.gumbel`."""

from __future__ import annotations

import torch

from frugal.search._engine.driver import RecurrentFn, run
from frugal.search.types import GumbelParams, PuctParams, Root, SearchOutput, Step

METHODS = ("gumbel", "puct")
RESCALES = GumbelParams.RESCALES


def search(
    root: Root,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    *,
    method: str = "gumbel",
    discount: float = 0.997,
    invalid_actions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    gumbel_noise: torch.Tensor | None = None,
    gumbel_scale: float = 1.0,
    max_considered_actions: int = 16,
    c_visit: float = 50.0,
    c_scale: float = 0.1,
    rescale: str = "node",
    pb_c_init: float = 1.25,
    pb_c_base: float = 19652.0,
    dirichlet_alpha: float = 0.3,
    dirichlet_fraction: float = 0.0,
    value_delta_max: float = 0.01,
) -> SearchOutput:
    """Deprecated: `frugal.search.puct` or `frugal.search.gumbel` with a constant `discount`
    (float64, so the results are those of the new functions with Step.discount = discount)
    filled into every Step that recurrent_fn returns without one. Kept until its last caller
    moves to the new API."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "gumbel":
        params = GumbelParams(
            gumbel_scale=gumbel_scale, max_considered_actions=max_considered_actions,
            c_visit=c_visit, c_scale=c_scale, rescale=rescale, value_delta_max=value_delta_max,
        )  # fmt: skip
    else:
        params = PuctParams(
            pb_c_init=pb_c_init, pb_c_base=pb_c_base, dirichlet_alpha=dirichlet_alpha,
            dirichlet_fraction=dirichlet_fraction, value_delta_max=value_delta_max,
        )  # fmt: skip
    constant = torch.full((root.prior_logits.shape[0],), float(discount), dtype=torch.float64)

    def with_discount(embedding, action):
        step, nxt = recurrent_fn(embedding, action)
        if isinstance(step, Step) and step.discount is None:
            step = Step(step.reward, constant, step.prior_logits, step.value)
        return step, nxt

    out, _ = run(
        root, with_discount, num_simulations, params, invalid_actions=invalid_actions,
        generator=generator, gumbel_noise=gumbel_noise,
    )  # fmt: skip
    return out
