"""Gumbel MuZero search kernels (Danihelka et al. 2022; mctx `gumbel_muzero_policy` semantics).

Completed Q at a node: a visited action keeps Q(a) = r + discount * V(child); an unvisited one
gets the mixed value (v + sum N * sum_visited(pi q) / sum_visited(pi)) / (1 + sum N), pi =
softmax(prior logits). The completed Q are rescaled to [0, 1], then sigma(q) = (c_visit +
max_b N(b)) * c_scale * q. Rescaling "node" (mctx) uses the min-max of the node's (valid)
completed Q; "tree" (EfficientZero V2's released search) the min-max of every Q seen in the root's
tree so far, its range floored at value_delta_max, as pUCT normalises. With "node" a Q gap of any
size between the best and worst action becomes the full sigma range; "tree" keeps it in
proportion to the values the search has seen.

Root: at simulation s only actions whose visit count equals the sequential-halving schedule's
entry may be chosen; among them the argmax of g + logits + sigma (g: Gumbel noise). Interior:
deterministic argmax of softmax(logits + sigma) - N / (1 + sum N).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from frugal.search._engine.frame import (
    GUMBEL,
    INVALID,
    MINMAX,
    NUM_CONSIDERED,
    PARAMS,
    SELECTION,
    TABLE,
    store_views,
    tree_views,
    view1,
    view2,
    view3,
)
from frugal.search._engine.lowlevel import gather_embedding, store_new_embeddings
from frugal.search._engine.tree import (
    PRIOR,
    PROB,
    ROOT_VALUE_SUM,
    ROOT_VISITS,
    VISITS,
    Q,
    expand_new_nodes,
    init_roots_from_frame,
    normalize,
)

NUM_FIELDS = 6  # VISITS, VALUE_SUM, REWARD, Q, PRIOR (= logit), PROB
TINY = np.finfo(np.float64).tiny
RESCALE_EPSILON = 1e-8
LOW_LOGIT = -1e9  # mctx's floor on g + logits + sigma before masking non-considered actions

# Layout of the float64 `params` array handed to the kernels.
P_C_VISIT, P_C_SCALE, P_TREE_RESCALE, P_VALUE_DELTA_MAX = range(4)


@njit(cache=True, inline="always")
def sigma_completed(b, n, at_root, children, edges, raw_value, invalid, minmax, params, sigma):
    """Fill sigma [A] with sigma(rescaled completed Q) of node n of root b (0 on invalid root
    actions); minmax [B, 2]: the trees' min-max statistics ("tree" rescaling). Returns the sum of
    the children's visits."""
    num_actions = children.shape[2]
    sum_visits = 0.0
    max_visits = 0.0
    sum_probs = 0.0
    weighted = 0.0
    for a in range(num_actions):
        if children[b, n, a] >= 0:
            nv = edges[b, n, a, VISITS]
            q = edges[b, n, a, Q]
            sigma[a] = q
            sum_visits += nv
            max_visits = max(max_visits, nv)
            p = max(edges[b, n, a, PROB], TINY)
            sum_probs += p
            weighted += p * q
    if sum_visits > 0.0:
        weighted /= sum_probs
    mixed = (raw_value[b, n] + sum_visits * weighted) / (sum_visits + 1.0)
    lo = np.inf
    hi = -np.inf
    for a in range(num_actions):
        if at_root and invalid[b, a]:
            continue
        if children[b, n, a] < 0:
            sigma[a] = mixed
        lo = min(lo, sigma[a])
        hi = max(hi, sigma[a])
    scale = (params[P_C_VISIT] + max_visits) * params[P_C_SCALE]
    tree_rescale = params[P_TREE_RESCALE] != 0.0
    span = max(hi - lo, RESCALE_EPSILON)
    for a in range(num_actions):
        if at_root and invalid[b, a]:
            sigma[a] = 0.0
        elif tree_rescale:
            sigma[a] = scale * normalize(sigma[a], minmax[b, 0], minmax[b, 1],
                                         params[P_VALUE_DELTA_MAX])  # fmt: skip
        else:
            sigma[a] = scale * ((sigma[a] - lo) / span)
    return sum_visits


@njit(cache=True, inline="always")
def root_choice(b, considered_visit, children, edges, invalid, gumbel, sigma):
    """Argmax of max(LOW_LOGIT, g + logits - max logits + sigma) over the valid root actions
    whose visit count equals considered_visit (first index on ties)."""
    num_actions = children.shape[2]
    top = -np.inf
    for a in range(num_actions):
        top = max(top, edges[b, 0, a, PRIOR])
    best = -np.inf
    choice = -1
    for a in range(num_actions):
        if invalid[b, a]:
            continue
        nv = edges[b, 0, a, VISITS] if children[b, 0, a] >= 0 else 0.0
        if nv != considered_visit:
            continue
        score = max(LOW_LOGIT, gumbel[b, a] + (edges[b, 0, a, PRIOR] - top) + sigma[a])
        if score > best:
            best = score
            choice = a
    if choice < 0:  # unreachable on the schedule; keep a valid action all the same
        for a in range(num_actions):
            if not invalid[b, a]:
                return a
    return choice


@njit(cache=True, inline="always")
def interior_choice(b, n, children, edges, sigma, sum_visits):
    """Argmax of softmax(logits + sigma) - N / (1 + sum N) at node n (first index on ties)."""
    num_actions = children.shape[2]
    top = -np.inf
    for a in range(num_actions):
        top = max(top, edges[b, n, a, PRIOR] + sigma[a])
    z = 0.0
    for a in range(num_actions):
        # sigma is scratch from here on
        sigma[a] = math.exp(edges[b, n, a, PRIOR] + sigma[a] - top)
        z += sigma[a]
    best = -np.inf
    choice = 0
    for a in range(num_actions):
        nv = edges[b, n, a, VISITS] if children[b, n, a] >= 0 else 0.0
        score = sigma[a] / z - nv / (1.0 + sum_visits)
        if score > best:
            best = score
            choice = a
    return choice


@njit(cache=True, inline="always")
def select_leaf(b, s, children, edges, raw_value, invalid, minmax, gumbel, table,
                num_considered, params, sigma):  # fmt: skip
    """Descend root b for simulation s to an unexpanded edge. Returns (parent node, action)."""
    sigma_completed(b, 0, True, children, edges, raw_value, invalid, minmax, params, sigma)
    considered_visit = table[num_considered[b], s]
    a = root_choice(b, considered_visit, children, edges, invalid, gumbel, sigma)
    n = 0
    while True:
        c = children[b, n, a]
        if c < 0:
            return n, a
        n = c
        sum_visits = sigma_completed(b, n, False, children, edges, raw_value, invalid, minmax,
                                     params, sigma)  # fmt: skip
        a = interior_choice(b, n, children, edges, sigma, sum_visits)


@njit(cache=True)
def simulate(
    s, children, edges, raw_value, discount, parent, action, root, invalid, minmax, gumbel,
    table, num_considered, params, e_ptr, r_ptr, d_ptr, d_wide, v_ptr, l_ptr, sel_flat,
    sel_action, store, leaf_nbytes, leaf_off, leaf_ptrs, batch_base,
):  # fmt: skip
    """Same contract as `puct.simulate`: expand + back up simulation s - 1, select simulation s."""
    num_roots, num_nodes, num_actions = children.shape
    num_sims = sel_action.shape[0]
    sigma = np.empty(num_actions, dtype=np.float64)
    track_minmax = params[P_TREE_RESCALE] != 0.0
    store_new_embeddings(store, s, e_ptr, leaf_ptrs, leaf_nbytes, leaf_off)  # s = 0: roots
    if s > 0:
        expand_new_nodes(
            s, sel_flat[s - 1], sel_action[s - 1], r_ptr, d_ptr, d_wide, v_ptr, l_ptr, children,
            edges, raw_value, discount, parent, action, root, minmax, True, track_minmax,
        )  # fmt: skip
    if s < num_sims:
        for b in range(num_roots):
            p, a = select_leaf(b, s, children, edges, raw_value, invalid, minmax, gumbel,
                               table, num_considered, params, sigma)  # fmt: skip
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
        init_roots_from_frame(frame, True, True, view2(frame, TABLE, np.int32).shape[0] - 1)
    children, edges, raw_value, discount, parent, action, root = tree_views(frame)
    store, leaf_nbytes, leaf_off, leaf_ptrs, batch_base = store_views(frame)
    sel = view3(frame, SELECTION, np.int64)  # [S, 2, B]: flat parent index, action
    simulate(
        s, children, edges, raw_value, discount, parent, action, root,
        view2(frame, INVALID, np.bool_), view2(frame, MINMAX, np.float64),
        view2(frame, GUMBEL, np.float64), view2(frame, TABLE, np.int32),
        view1(frame, NUM_CONSIDERED, np.int32), view1(frame, PARAMS, np.float64), e_ptr, r_ptr,
        d_ptr, d_wide, v_ptr, l_ptr, sel[:, 0], sel[:, 1], store, leaf_nbytes, leaf_off,
        leaf_ptrs, batch_base,
    )  # fmt: skip


@njit(cache=True)
def finish_frame(frame, visit_counts, qvalues, weights, root_value, action):
    """`finish` on the arrays described by `frame`."""
    children, edges, raw_value, _, _, _, root = tree_views(frame)
    finish(
        children, edges, raw_value, root, view2(frame, INVALID, np.bool_),
        view2(frame, MINMAX, np.float64), view2(frame, GUMBEL, np.float64),
        view1(frame, PARAMS, np.float64), visit_counts,
        qvalues, weights, root_value, action,
    )  # fmt: skip


@njit(cache=True)
def finish(children, edges, raw_value, root, invalid, minmax, gumbel, params, visit_counts,
           qvalues, weights, root_value, action):  # fmt: skip
    """Root statistics: visit_counts [B, A], qvalues [B, A], weights [B, A] = softmax(logits +
    sigma) over valid actions, root_value [B], action [B] = the best of the most visited."""
    num_roots, _, num_actions = children.shape
    sigma = np.empty(num_actions, dtype=np.float64)
    # The outputs may be float32: the softmax is summed and normalised in float64 here first.
    unnormalised = np.empty(num_actions, dtype=np.float64)
    for b in range(num_roots):
        root_value[b] = root[b, ROOT_VALUE_SUM] / root[b, ROOT_VISITS]
        sigma_completed(b, 0, True, children, edges, raw_value, invalid, minmax, params, sigma)
        most = 0.0
        for a in range(num_actions):
            if children[b, 0, a] >= 0:
                visit_counts[b, a] = np.int64(edges[b, 0, a, VISITS])
                qvalues[b, a] = edges[b, 0, a, Q]
                most = max(most, edges[b, 0, a, VISITS])
            else:
                visit_counts[b, a] = 0
                qvalues[b, a] = 0.0
        action[b] = root_choice(b, most, children, edges, invalid, gumbel, sigma)
        top = -np.inf
        for a in range(num_actions):
            if not invalid[b, a]:
                top = max(top, edges[b, 0, a, PRIOR] + sigma[a])
        z = 0.0
        for a in range(num_actions):
            if invalid[b, a]:
                unnormalised[a] = 0.0
            else:
                unnormalised[a] = math.exp(edges[b, 0, a, PRIOR] + sigma[a] - top)
                z += unnormalised[a]
        for a in range(num_actions):
            weights[b, a] = unnormalised[a] / z
