"""frugal.search: pure, batched MCTS (pUCT as in EfficientZero V1, Gumbel MuZero as in
EfficientZero V2 / mctx) with numba tree kernels and the network on any device.

    from frugal.search import Root, Step, SearchOutput, search
    out = search(Root(prior_logits, value, embedding), recurrent_fn, num_simulations=50)
"""

from frugal.search.mcts import search
from frugal.search.types import Root, SearchOutput, Step

__all__ = ["Root", "SearchOutput", "Step", "search"]
