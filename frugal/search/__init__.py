"""frugal.search: pure, batched MCTS (pUCT as in EfficientZero V1, Gumbel MuZero as in
EfficientZero V2 / mctx) with numba tree kernels and the network on any device.

    from frugal.search import GumbelParams, Root, Step, gumbel
    out = gumbel(Root(prior_logits, value, embedding), recurrent_fn, 50, params=GumbelParams())
"""

from frugal.search.api import gumbel, puct
from frugal.search.types import RESCALES, GumbelParams, PuctParams, Root, SearchOutput, Step

__all__ = [
    "RESCALES",
    "GumbelParams",
    "PuctParams",
    "Root",
    "SearchOutput",
    "Step",
    "gumbel",
    "puct",
]
