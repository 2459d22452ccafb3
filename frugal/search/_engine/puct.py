"""pUCT search kernels with EfficientZero (V1) semantics.

score(a) = norm(Q(a)) + P(a) * sqrt(N_parent) / (1 + N(a)) * (pb_c_init + ln((N_parent + pb_c_base
+ 1) / pb_c_base)) with N_parent the sum of the children's visits. An unvisited child scores with
the node's mean Q: at the root the mean of its visited children's Q (0 before any visit); below
it (mean_q(parent) + sum of visited children's Q) / (n_visited + 1), mean_q(parent) being the value
computed one level up on the same descent (EfficientZero ctree `get_mean_q`, without its bug that
carries one root's mean Q into the next root). norm() is the root's min-max normalisation with the
range floored at value_delta_max, clamped to [0, 1]; the statistics see every Q on a backed-up
path and the root's discounted value. Scores within 1e-6 of the best tie (as in EfficientZero's
`cselect_child`); ties go to a random one with a generator, else the first.

As in EfficientZero's ctree (CRoots::prepare), the root starts with one visit and value 0: the
root value is the sum of the S backed-up returns / (S + 1), v(root) takes no part.
tests/test_search_ez_tree.py checks all of this against LightZero's compiled tree.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from frugal.search._engine.frame import (
    INVALID,
    MINMAX,
    PARAMS,
    RNG,
    SELECTION,
    TIES,
    store_views,
    tree_views,
    view1,
    view2,
    view3,
)
from frugal.search._engine.lowlevel import gather_embedding, random_below, store_new_embeddings
from frugal.search._engine.tree import (
    PRIOR,
    ROOT_VISITS,
    VISITS,
    Q,
    expand_new_nodes,
    init_roots_from_frame,
    normalize,
)

TIE_EPSILON = 1e-6
NUM_FIELDS = 5  # VISITS, VALUE_SUM, REWARD, Q, PRIOR

# Layout of the float64 `params` array handed to the kernels: scalars, then the exploration
# factor pb_c(n) for n = 0..S, then sqrt(n) for n = 0..S (see `make_params`).
P_PB_C_INIT, P_PB_C_BASE, P_VALUE_DELTA_MAX, P_RANDOM_TIES, P_TABLES = range(5)


def make_params(num_sims, pb_c_init, pb_c_base, value_delta_max, random_ties):
    """float64 params with the per-visit-count tables (same libm calls as inline code)."""
    pb_c = [math.log((n + pb_c_base + 1.0) / pb_c_base) + pb_c_init for n in range(num_sims + 1)]
    roots = [math.sqrt(n) for n in range(num_sims + 1)]
    head = [pb_c_init, pb_c_base, value_delta_max, 1.0 if random_ties else 0.0]
    return np.array(head + pb_c + roots, dtype=np.float64)


@njit(cache=True, inline="always")
def select_child(b, n, at_root, parent_q, children, edges, invalid, minmax, rng, params, ties):
    """pUCT choice at node n of root b. Returns (action, mean_q of n)."""
    num_actions = children.shape[2]
    total_q = 0.0
    num_visited = 0
    n_parent = 0.0
    for a in range(num_actions):
        if children[b, n, a] >= 0:
            total_q += edges[b, n, a, Q]
            n_parent += edges[b, n, a, VISITS]
            num_visited += 1
    if at_root and num_visited > 0:
        mean_q = total_q / num_visited
    else:
        mean_q = (parent_q + total_q) / (num_visited + 1)

    # pb_c_init + ln((n + pb_c_base + 1) / pb_c_base) and sqrt(n), tabulated for n = 0..S
    num_sims = (params.shape[0] - P_TABLES) // 2 - 1
    pb_c = params[P_TABLES + np.int64(n_parent)]
    sqrt_parent = params[P_TABLES + num_sims + 1 + np.int64(n_parent)]
    lo = minmax[b, 0]
    hi = minmax[b, 1]
    delta_max = params[P_VALUE_DELTA_MAX]
    unvisited_value = normalize(mean_q, lo, hi, delta_max)

    best = -np.inf
    num_ties = 0
    for a in range(num_actions):
        if at_root and invalid[b, a]:
            continue
        if children[b, n, a] >= 0:
            score = pb_c * (sqrt_parent / (edges[b, n, a, VISITS] + 1.0)) * edges[b, n, a, PRIOR]
            score += normalize(edges[b, n, a, Q], lo, hi, delta_max)
        else:
            score = pb_c * sqrt_parent * edges[b, n, a, PRIOR] + unvisited_value
        if score > best:
            best = score
            ties[0] = a
            num_ties = 1
        elif score >= best - TIE_EPSILON:
            ties[num_ties] = a
            num_ties += 1
    if num_ties > 1 and params[P_RANDOM_TIES] != 0.0:
        return ties[random_below(rng, b, num_ties)], mean_q
    return ties[0], mean_q


@njit(cache=True, inline="always")
def select_leaf(b, children, edges, invalid, minmax, rng, params, ties):
    """Descend from root b's root to an unexpanded edge. Returns (parent node, action)."""
    n = 0
    parent_q = 0.0
    at_root = True
    while True:
        a, mean_q = select_child(
            b, n, at_root, parent_q, children, edges, invalid, minmax, rng, params, ties
        )
        c = children[b, n, a]
        if c < 0:
            return n, a
        n = c
        parent_q = mean_q
        at_root = False


@njit(cache=True)
def simulate(
    s, children, edges, raw_value, discount, parent, action, root, invalid, minmax, rng, params,
    e_ptr, r_ptr, d_ptr, d_wide, v_ptr, l_ptr, sel_flat, sel_action, store, leaf_nbytes,
    leaf_off, leaf_ptrs, batch_base, ties,
):  # fmt: skip
    """One kernel call per simulation boundary: for s >= 1, expand node s with the network
    outputs of simulation s - 1 (at the given addresses, see expand_new_nodes) and back it up;
    then, for s < S, select simulation s's leaf edge in every root into sel_flat[s] (b * N + parent)
    and sel_action[s], and gather the parents' embeddings into the batch tensors at batch_base when
    they live in `store` (no leaves: the caller gathers with torch).
    """
    num_roots, num_nodes, num_actions = children.shape
    num_sims = sel_action.shape[0]
    store_new_embeddings(store, s, e_ptr, leaf_ptrs, leaf_nbytes, leaf_off)  # s = 0: roots
    if s > 0:
        expand_new_nodes(
            s, sel_flat[s - 1], sel_action[s - 1], r_ptr, d_ptr, d_wide, v_ptr, l_ptr, children,
            edges, raw_value, discount, parent, action, root, minmax, False, True,
        )  # fmt: skip
    if s < num_sims:
        for b in range(num_roots):
            p, a = select_leaf(b, children, edges, invalid, minmax, rng, params, ties)
            sel_flat[s, b] = b * num_nodes + p
            sel_action[s, b] = a
            gather_embedding(store, b, p, s, leaf_nbytes, leaf_off, batch_base)


@njit(cache=True)
def simulate_frame(
    s, frame, e_ptr, r_ptr, d_ptr, d_wide, v_ptr, l_ptr,
):  # fmt: skip
    """`simulate` on the arrays described by `frame` (see frame.py): the search loop's call.
    The first call (s = 0) also initialises the roots from the inputs the frame describes."""
    if s == 0:
        init_roots_from_frame(frame, False, False, 0)
    children, edges, raw_value, discount, parent, action, root = tree_views(frame)
    store, leaf_nbytes, leaf_off, leaf_ptrs, batch_base = store_views(frame)
    sel = view3(frame, SELECTION, np.int64)  # [S, 2, B]: flat parent index, action
    simulate(
        s, children, edges, raw_value, discount, parent, action, root,
        view2(frame, INVALID, np.bool_), view2(frame, MINMAX, np.float64),
        view1(frame, RNG, np.uint64), view1(frame, PARAMS, np.float64), e_ptr, r_ptr, d_ptr,
        d_wide, v_ptr, l_ptr, sel[:, 0], sel[:, 1], store, leaf_nbytes, leaf_off, leaf_ptrs,
        batch_base, view1(frame, TIES, np.int64),
    )  # fmt: skip


@njit(cache=True)
def finish_frame(frame, visit_counts, qvalues, weights, root_value, action):
    """`finish` on the arrays described by `frame`."""
    children, edges, _, _, _, _, root = tree_views(frame)
    finish(
        children, edges, root, view2(frame, INVALID, np.bool_), view1(frame, RNG, np.uint64),
        view1(frame, PARAMS, np.float64), view1(frame, TIES, np.int64), visit_counts, qvalues,
        weights, root_value, action,
    )  # fmt: skip


@njit(cache=True)
def finish(
    children, edges, root, invalid, rng, params, ties, visit_counts, qvalues, weights,
    root_value, action,
):  # fmt: skip
    """Root statistics: visit_counts [B, A], qvalues [B, A], weights [B, A] = N / sum N,
    root_value [B], and action [B] = most visited valid action (ties random or first)."""
    num_roots, _, num_actions = children.shape
    for b in range(num_roots):
        root_value[b] = root[b, 1] / root[b, 0]
        total = root[b, ROOT_VISITS] - 1.0
        best = -1
        num_ties = 0
        for a in range(num_actions):
            if children[b, 0, a] >= 0:
                visit_counts[b, a] = np.int64(edges[b, 0, a, VISITS])
                qvalues[b, a] = edges[b, 0, a, Q]
            else:
                visit_counts[b, a] = 0
                qvalues[b, a] = 0.0
            weights[b, a] = visit_counts[b, a] / total if total > 0 else 0.0
            if invalid[b, a]:
                continue
            if visit_counts[b, a] > best:
                best = visit_counts[b, a]
                ties[0] = a
                num_ties = 1
            elif visit_counts[b, a] == best:
                ties[num_ties] = a
                num_ties += 1
        if num_ties > 1 and params[P_RANDOM_TIES] != 0.0:
            action[b] = ties[random_below(rng, b, num_ties)]
        else:
            action[b] = ties[0]
