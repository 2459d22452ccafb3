"""The machinery behind frugal.search.puct and frugal.search.gumbel (private).

driver      inputs to kernel arrays, the simulation loop, kernel outputs to tensors; `run`
            also returns the tree (tests, debugging)
plan        the per-shape state of a search (tree views, embedding store, parameter tables,
            kernel frame), cached per thread and nesting level
workspace   per-thread, per-nesting-level scratch buffers and the Plan cache
embeddings  per-node embedding storage: a byte store the kernels copy (CPU), or torch
            tensors on their device
tree        the struct-of-arrays tree, root initialisation, and the one expand-and-backup
            step both methods share
puct        pUCT selection and read-out kernels (EfficientZero V1)
gumbel      Gumbel MuZero selection and read-out kernels (mctx)
schedule    the sequential-halving schedule
frame       the kernels' single int64 argument describing every array
lowlevel    numba helpers: raw-address views, a per-root RNG, memcpy
"""

from frugal.search._engine.driver import run

__all__ = ["run"]
