"""A search's Plan: everything it needs besides its inputs, reused by later searches of its shape.

Building the tree views, the embedding byte store, the parameter tables and the kernel frame
costs as much as several simulations at small B, and none of it depends on the roots' values, so
a Plan is cached per thread and nesting level (see workspace) under the search's shape, method,
constants and embedding signature. Per search, only the arrays filled from its inputs change:
`invalid`, `gumbel` or `rng` (written in place) and the selection row of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from frugal.search._engine import frame as fr
from frugal.search._engine import gumbel as gumbel_kernels
from frugal.search._engine import puct as puct_kernels
from frugal.search._engine import workspace
from frugal.search._engine.embeddings import DeviceEmbeddings, HostEmbeddings, signature
from frugal.search._engine.schedule import considered_visits_table
from frugal.search._engine.tree import Tree

_NOTHING_I32 = np.zeros((1, 1), dtype=np.int32)  # the (unused) TABLE of pUCT plans


@dataclass
class Plan:
    """tree: node arrays; invalid: bool [B, A] root mask; minmax: float64 [B, 2] (pUCT and
    Gumbel "tree" rescaling); num_considered: int32 [B] (Gumbel m per root); rng: uint64 [B]
    per-root generator states (pUCT), rng_draws its int64 tensor view; gumbel: float64 [B, A]
    noise g (Gumbel), gumbel_draws its tensor view; noise: float64 [B, A] Dirichlet root noise
    (pUCT); search_args: float64 per-search scalars (frame.SEARCH_ARGS); ties: int64 [A]
    scratch; table: the halving schedule (Gumbel); params: the kernel's float64 parameters;
    store: the embeddings' byte store when every leaf is on the CPU, else None (the search keeps
    them on their device); frame: all of the above for the kernels (and, per search, the root
    tensors); simulate and finish: the method's frame kernels."""

    tree: Tree
    invalid: np.ndarray
    minmax: np.ndarray
    num_considered: np.ndarray
    rng: np.ndarray
    rng_draws: torch.Tensor
    gumbel: np.ndarray
    gumbel_draws: torch.Tensor
    noise: np.ndarray
    search_args: np.ndarray
    ties: np.ndarray
    table: np.ndarray
    params: np.ndarray
    store: HostEmbeddings | None
    frame: np.ndarray
    simulate: Any
    finish: Any
    invalid_clear: bool = False  # whether `invalid` is known to be all False

    def start(self, selection: torch.Tensor) -> None:
        """Point the frame at this search's selection tensor int64 [S, 2, B]."""
        self.frame[fr.SELECTION, 0] = selection.data_ptr()


def plan_for(method: str, num_roots: int, num_sims: int, num_actions: int, embedding: Any,
             on_host: bool, constants: tuple[float, ...]) -> Plan:  # fmt: skip
    """The cached Plan for this search, built on first use. on_host: whether the embeddings go
    to the byte store; constants: the method's scalar parameters (pUCT: pb_c_init, pb_c_base,
    value_delta_max, random ties; Gumbel: c_visit, c_scale, max_considered_actions, tree
    rescaling, value_delta_max)."""
    key = (method, num_roots, num_sims, num_actions, signature(embedding), on_host, constants)
    plan = workspace.cached(key)
    if plan is None:
        plan = _build(method, num_roots, num_sims, num_actions, embedding, on_host, constants)
        workspace.cache(key, plan)
    return plan


def _build(method, num_roots, num_sims, num_actions, embedding, on_host, constants) -> Plan:
    gumbel = method == "gumbel"
    kernels = gumbel_kernels if gumbel else puct_kernels
    tree = Tree.allocate(num_roots, num_sims + 1, num_actions, kernels.NUM_FIELDS)
    if gumbel:
        c_visit, c_scale, max_considered, tree_rescale, value_delta_max = constants
        params = np.array(
            [c_visit, c_scale, float(tree_rescale), value_delta_max], dtype=np.float64
        )
        table = considered_visits_table(max_considered, num_sims)
    else:
        params = puct_kernels.make_params(num_sims, *constants)
        table = _NOTHING_I32
    rng = np.zeros(num_roots, dtype=np.uint64)
    gumbel = np.zeros((num_roots, num_actions), dtype=np.float64)
    plan = Plan(
        tree=tree,
        invalid=np.zeros((num_roots, num_actions), dtype=np.bool_),
        minmax=np.empty((num_roots, 2), dtype=np.float64),
        num_considered=np.empty(num_roots, dtype=np.int32),
        rng=rng,
        rng_draws=torch.from_numpy(rng.view(np.int64)),
        gumbel=gumbel,
        gumbel_draws=torch.from_numpy(gumbel),
        noise=np.zeros((num_roots, num_actions), dtype=np.float64),
        search_args=np.zeros(1, dtype=np.float64),
        ties=np.zeros(num_actions, dtype=np.int64),
        table=table,
        params=params,
        store=HostEmbeddings(embedding, num_roots, num_sims) if on_host else None,
        frame=fr.new_frame(),
        simulate=kernels.simulate_frame,
        finish=kernels.finish_frame,
    )
    _describe(plan, num_roots, num_sims)
    return plan


def _describe(plan: Plan, num_roots: int, num_sims: int) -> None:
    """Fill the plan's frame (the selection and root input rows' addresses are set per
    search)."""
    frame = plan.frame
    for slot, array in zip(range(fr.CHILDREN, fr.ROOT + 1), plan.tree.arrays(), strict=True):
        fr.put(frame, slot, array)
    for slot, array in (
        (fr.INVALID, plan.invalid),
        (fr.PARAMS, plan.params),
        (fr.MINMAX, plan.minmax),
        (fr.RNG, plan.rng),
        (fr.GUMBEL, plan.gumbel),
        (fr.TABLE, plan.table),
        (fr.NUM_CONSIDERED, plan.num_considered),
        (fr.NOISE, plan.noise),
        (fr.SEARCH_ARGS, plan.search_args),
        (fr.TIES, plan.ties),
    ):
        fr.put(frame, slot, array)
    # The root tensors' addresses and dtypes are set per search.
    frame[fr.ROOT_LOGITS, 1:3] = plan.invalid.shape
    frame[fr.ROOT_VALUE, 1] = num_roots
    # Without a byte store the kernels see the empty arrays of DeviceEmbeddings: no leaves.
    store = DeviceEmbeddings if plan.store is None else plan.store
    store_arrays = (
        store.store, store.leaf_nbytes, store.leaf_off, store.leaf_ptrs, store.batch_base,
    )  # fmt: skip
    for slot, array in zip(range(fr.STORE, fr.BATCH_BASE + 1), store_arrays, strict=True):
        fr.put(frame, slot, array)
    frame[fr.SELECTION, 1:4] = (num_sims, 2, num_roots)
