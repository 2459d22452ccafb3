"""pUCT search kernels with EfficientZero (V1) semantics.

score(a) = norm(Q(a)) + P(a) * sqrt(N_parent) / (1 + N(a)) * (pb_c_init + ln((N_parent + pb_c_base
+ 1) / pb_c_base)) with N_parent the sum of the children's visits. An unvisited child scores with
the node's mean Q: at the root the mean of its visited children's Q (0 before any visit); below
it (mean_q(parent) + sum of visited children's Q) / (n_visited + 1), mean_q(parent) being the value
computed one level up on the same descent (EfficientZero ctree `get_mean_q`, without its bug that
carries one root's mean Q into the next root). norm() is the root's min-max normalisation with the
range floored at value_delta_max, clamped to [0, 1]. Scores within 1e-6 of the best tie (as in
EfficientZero's `cselect_child`); ties go to a random one with a generator, else the first.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from frugal.search.lowlevel import (
    f32_at,
    gather_embedding,
    random_below,
    store_new_embeddings,
)
from frugal.search.tree import expand_and_backup

TIE_EPSILON = 1e-6

# Layout of the float64 `params` array handed to the kernels.
P_DISCOUNT, P_PB_C_INIT, P_PB_C_BASE, P_VALUE_DELTA_MAX, P_RANDOM_TIES = range(5)


@njit(cache=True)
def normalize(q, lo, hi, value_delta_max):
    """Min-max normalised q, clamped to [0, 1]; q itself (clamped) while the range is empty."""
    delta = hi - lo
    if delta > 0.0:
        if delta < value_delta_max:
            q = (q - lo) / value_delta_max
        else:
            q = (q - lo) / delta
    if q < 0.0:
        return 0.0
    if q > 1.0:
        return 1.0
    return q


@njit(cache=True)
def select_child(
    b, n, at_root, parent_q, children, prior, visits, value_sum, reward, invalid, minmax, rng,
    params, ties,
):  # fmt: skip
    """pUCT choice at node n of root b. Returns (action, mean_q of n)."""
    num_actions = children.shape[2]
    discount = params[P_DISCOUNT]
    total_q = 0.0
    num_visited = 0
    for a in range(num_actions):
        c = children[b, n, a]
        if c >= 0:
            total_q += reward[b, c] + discount * value_sum[b, c] / visits[b, c]
            num_visited += 1
    if at_root and num_visited > 0:
        mean_q = total_q / num_visited
    else:
        mean_q = (parent_q + total_q) / (num_visited + 1)

    n_parent = visits[b, n] - 1  # = sum of the children's visits
    pb_c_base = params[P_PB_C_BASE]
    pb_c = math.log((n_parent + pb_c_base + 1.0) / pb_c_base) + params[P_PB_C_INIT]
    sqrt_parent = math.sqrt(n_parent)
    lo = minmax[b, 0]
    hi = minmax[b, 1]
    delta_max = params[P_VALUE_DELTA_MAX]

    best = -np.inf
    num_ties = 0
    for a in range(num_actions):
        if at_root and invalid[b, a]:
            continue
        c = children[b, n, a]
        if c >= 0:
            child_visits = visits[b, c]
            q = reward[b, c] + discount * value_sum[b, c] / child_visits
        else:
            child_visits = 0
            q = mean_q
        score = pb_c * (sqrt_parent / (child_visits + 1)) * prior[b, n, a]
        score += normalize(q, lo, hi, delta_max)
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


@njit(cache=True)
def select_leaf(b, children, prior, visits, value_sum, reward, invalid, minmax, rng, params, ties):
    """Descend from root b's root to an unexpanded edge. Returns (parent node, action)."""
    n = 0
    parent_q = 0.0
    at_root = True
    while True:
        a, mean_q = select_child(
            b, n, at_root, parent_q, children, prior, visits, value_sum, reward, invalid, minmax,
            rng, params, ties,
        )  # fmt: skip
        c = children[b, n, a]
        if c < 0:
            return n, a
        n = c
        parent_q = mean_q
        at_root = False


@njit(cache=True)
def simulate(
    s, children, prior, visits, value_sum, raw_value, reward, parent, invalid, minmax, rng, params,
    r_ptr, r_stride, v_ptr, v_stride, l_ptr, l_stride0, l_stride1,
    sel_flat, sel_action, store, gbuf, leaf_nbytes, leaf_off, leaf_ptrs,
):  # fmt: skip
    """One kernel call per simulation boundary: for s >= 1, expand node s with the network
    outputs of simulation s - 1 (float32 at the given addresses/strides) and back it up; then,
    for s < S, select simulation s's leaf edge in every root into sel_flat[s] (b * N + parent)
    and sel_action[s], and gather the parents' embeddings when they live in `store`.
    """
    num_roots, num_nodes, num_actions = children.shape
    num_sims = sel_action.shape[0]
    discount = params[P_DISCOUNT]
    ties = np.empty(num_actions, dtype=np.int64)
    if s > 0:
        node = s
        rewards = f32_at(r_ptr, (num_roots - 1) * r_stride + 1)
        values = f32_at(v_ptr, (num_roots - 1) * v_stride + 1)
        logits = f32_at(l_ptr, (num_roots - 1) * l_stride0 + (num_actions - 1) * l_stride1 + 1)
        store_new_embeddings(store, node, leaf_ptrs, leaf_nbytes, leaf_off)
        for b in range(num_roots):
            row = b * l_stride0
            top = -np.inf
            for a in range(num_actions):
                x = np.float64(logits[row + a * l_stride1])
                if x > top:
                    top = x
            total = 0.0
            for a in range(num_actions):
                e = math.exp(np.float64(logits[row + a * l_stride1]) - top)
                prior[b, node, a] = e
                total += e
            for a in range(num_actions):
                prior[b, node, a] /= total
            p = sel_flat[s - 1, b] - b * num_nodes
            expand_and_backup(
                b, node, p, sel_action[s - 1, b], np.float64(rewards[b * r_stride]),
                np.float64(values[b * v_stride]), discount, children, visits, value_sum,
                raw_value, reward, parent, minmax, True,
            )  # fmt: skip
    if s < num_sims:
        for b in range(num_roots):
            p, a = select_leaf(
                b, children, prior, visits, value_sum, reward, invalid, minmax, rng, params, ties
            )
            sel_flat[s, b] = b * num_nodes + p
            sel_action[s, b] = a
            gather_embedding(store, b, p, s, num_sims, gbuf, leaf_nbytes, leaf_off)


@njit(cache=True)
def finish(
    children, visits, value_sum, reward, invalid, rng, params, visit_counts, qvalues, weights,
    root_value, action,
):  # fmt: skip
    """Root statistics: visit_counts [B, A], qvalues [B, A], weights [B, A] = N / sum N,
    root_value [B], and action [B] = most visited valid action (ties random or first)."""
    num_roots, _, num_actions = children.shape
    discount = params[P_DISCOUNT]
    ties = np.empty(num_actions, dtype=np.int64)
    for b in range(num_roots):
        root_value[b] = value_sum[b, 0] / visits[b, 0]
        total = visits[b, 0] - 1
        best = -1
        num_ties = 0
        for a in range(num_actions):
            c = children[b, 0, a]
            if c >= 0:
                visit_counts[b, a] = visits[b, c]
                qvalues[b, a] = reward[b, c] + discount * value_sum[b, c] / visits[b, c]
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
