"""Struct-of-arrays search tree for B roots, and the O(depth) expand/backup kernel.

Node 0 of every root is the root; the node created by simulation s is node s + 1, so each root
needs N = S + 1 node slots, allocated once. Statistics live on edges, in the parent's row, so
choosing among a node's children reads two contiguous rows and no child node:

    children  int32   [B, N, A]     child node per action, -1 = not expanded (row written when
                                    the node is created)
    edges     float64 [B, N, A, F]  per edge (n, a): VISITS N(c), VALUE_SUM of c (its network
                                    value + every return backed up through c), REWARD r(n, a),
                                    Q = r + d(c) * VALUE_SUM / VISITS, PRIOR (pUCT: prior
                                    probability; Gumbel: prior logit) and, for Gumbel, PROB =
                                    softmax(logits)
    raw_value float64 [B, N]        network value v(n)
    discount  float64 [B, N]        discount d(n) of the edge into n (from the Step that made n):
                                    Q(parent, a) = r + d(child) * V(child)
    parent    int32   [B, N]        parent node (-1 at the root)
    action    int32   [B, N]        action from the parent
    root      float64 [B, 2]        the root's own (visits, value_sum); visits starts at 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from frugal.search._engine.frame import (
    INVALID,
    MINMAX,
    NOISE,
    NUM_CONSIDERED,
    P_NOISE_FRACTION,
    SEARCH_ARGS,
    root_inputs,
    tree_views,
    view1,
    view2,
)
from frugal.search._engine.lowlevel import f32_at, f64_at
from frugal.search._engine.workspace import scratch

VISITS, VALUE_SUM, REWARD, Q, PRIOR, PROB = range(6)
ROOT_VISITS, ROOT_VALUE_SUM = range(2)


@dataclass
class Tree:
    children: np.ndarray
    edges: np.ndarray
    raw_value: np.ndarray
    discount: np.ndarray
    parent: np.ndarray
    action: np.ndarray
    root: np.ndarray

    @staticmethod
    def allocate(num_roots: int, num_nodes: int, num_actions: int, num_fields: int) -> Tree:
        """Uninitialised arrays (a node's rows are written when it is created, the roots' by
        `init_roots`) carved from this thread's workspace: a search's tree is valid until the
        next search on this thread and nesting level."""
        shape = (num_roots, num_nodes)
        return Tree(
            children=scratch("children", (*shape, num_actions), np.int32),
            edges=scratch("edges", (*shape, num_actions, num_fields), np.float64),
            raw_value=scratch("raw_value", shape, np.float64),
            discount=scratch("discount", shape, np.float64),
            parent=scratch("parent", shape, np.int32),
            action=scratch("action", shape, np.int32),
            root=scratch("root", (num_roots, 2), np.float64),
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in kernel argument order."""
        return (
            self.children, self.edges, self.raw_value, self.discount, self.parent, self.action,
            self.root,
        )  # fmt: skip


@njit(cache=True, inline="always")
def expand_new_nodes(
    node, sel_flat, sel_action, r_ptr, d_ptr, d_wide, v_ptr, l_ptr, children, edges, raw_value,
    discount, parent, action, root, minmax, store_logits, track_minmax,
):  # fmt: skip
    """Create `node` in every root b as child sel_action[b] of the node at flat index
    sel_flat[b] (= b * N + node) from one batch of network outputs, and back it up: the expand
    step of both methods.

    The outputs are read at their addresses, each a C-contiguous CPU array: reward and value
    float32 [B], prior logits float32 [B, A], discount float64 (d_wide) or float32 [B]; all
    widened to float64. PRIOR gets the softmax of the logits, or with store_logits (Gumbel) the
    logits themselves and PROB their softmax. track_minmax: whether the backup updates the
    min-max statistics.
    """
    num_roots, num_nodes, num_actions = children.shape
    rewards = f32_at(r_ptr, num_roots)
    values = f32_at(v_ptr, num_roots)
    logits = f32_at(l_ptr, num_roots * num_actions)
    wide = f64_at(d_ptr, num_roots if d_wide else 0)
    narrow = f32_at(d_ptr, 0 if d_wide else num_roots)
    target = PROB if store_logits else PRIOR
    for b in range(num_roots):
        base = b * num_actions
        top = -np.inf
        for a in range(num_actions):
            x = np.float64(logits[base + a])
            if store_logits:
                edges[b, node, a, PRIOR] = x
            top = max(top, x)
        total = 0.0
        for a in range(num_actions):
            e = math.exp(np.float64(logits[base + a]) - top)
            edges[b, node, a, target] = e
            total += e
        for a in range(num_actions):
            edges[b, node, a, target] /= total
            children[b, node, a] = -1
        d = wide[b] if d_wide else np.float64(narrow[b])
        expand_and_backup(
            b, node, sel_flat[b] - b * num_nodes, sel_action[b], np.float64(rewards[b]), d,
            np.float64(values[b]), children, edges, raw_value, discount, parent, action, root,
            minmax, track_minmax,
        )  # fmt: skip


@njit(cache=True, inline="always")
def expand_and_backup(
    b, node, parent_node, action_taken, r, d, v, children, edges, raw_value, discount, parent,
    action, root, minmax, track_minmax,
):  # fmt: skip
    """Attach `node` (its children row and PRIOR/PROB fields already written) as child
    `action_taken` of `parent_node` with network outputs (reward r, discount d, value v), then
    back the return up to the root: each ancestor gets r + d * (return below it), with the r and
    d of the edge it is backed up through.

    With track_minmax, min-max statistics minmax[b] = (min, max) see r + d * V(n) of every node
    on the path after that node's update (MuZero), the root included: its r is 0, its V its
    value sum / visits (see init_roots) and its d the discount of the path's first edge (the
    one constant discount, when it is constant).
    """
    children[b, parent_node, action_taken] = node
    parent[b, node] = parent_node
    action[b, node] = action_taken
    raw_value[b, node] = v
    discount[b, node] = d
    p = parent_node
    a = action_taken
    edges[b, p, a, VISITS] = 1.0
    edges[b, p, a, VALUE_SUM] = v
    edges[b, p, a, REWARD] = r
    q = r + d * v
    edges[b, p, a, Q] = q
    if track_minmax:
        _see(minmax, b, q)
    ret = q  # return seen by the parent
    n = parent_node
    while n != 0:
        p = parent[b, n]
        a = action[b, n]
        d = discount[b, n]
        visits = edges[b, p, a, VISITS] + 1.0
        value_sum = edges[b, p, a, VALUE_SUM] + ret
        reward = edges[b, p, a, REWARD]
        q = reward + d * (value_sum / visits)
        edges[b, p, a, VISITS] = visits
        edges[b, p, a, VALUE_SUM] = value_sum
        edges[b, p, a, Q] = q
        if track_minmax:
            _see(minmax, b, q)
        ret = reward + d * ret
        n = p
    root[b, ROOT_VISITS] += 1.0
    root[b, ROOT_VALUE_SUM] += ret
    if track_minmax:
        _see(minmax, b, d * (root[b, ROOT_VALUE_SUM] / root[b, ROOT_VISITS]))


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def _see(minmax, b, q):
    if q < minmax[b, 0]:
        minmax[b, 0] = q
    if q > minmax[b, 1]:
        minmax[b, 1] = q


@njit(cache=True)
def init_roots(
    children, edges, raw_value, discount, parent, action, root, logits, value, invalid, noise,
    noise_fraction, store_logits, root_value_counts, max_considered, num_considered, minmax,
):  # fmt: skip
    """Write the root rows of every root b from its network outputs.

    logits [B, A] and value [B], float32 or float64 (read as float64); invalid bool [B, A].
    PRIOR gets the masked logits (store_logits, Gumbel: PROB = their softmax) or the softmax
    mixed with `noise` [B, A] at noise_fraction (pUCT, Dirichlet; noise may be empty when the
    fraction is 0).
    The root starts with one visit; its value sum starts at its network value when
    root_value_counts (Gumbel, mctx: the value is the root's first visit) and at 0 otherwise
    (pUCT, EfficientZero's ctree: the first visit counts, its value does not).
    num_considered [B] = min(max_considered, number of valid actions); minmax [B, 2] = (inf, -inf).
    """
    num_roots, _, num_actions = children.shape
    for b in range(num_roots):
        top = -np.inf
        num_valid = 0
        for a in range(num_actions):
            children[b, 0, a] = -1
            if not invalid[b, a]:
                num_valid += 1
                top = max(top, np.float64(logits[b, a]))
        total = 0.0
        for a in range(num_actions):
            e = 0.0 if invalid[b, a] else math.exp(np.float64(logits[b, a]) - top)
            edges[b, 0, a, PROB if store_logits else PRIOR] = e
            total += e
        for a in range(num_actions):
            if store_logits:
                edges[b, 0, a, PROB] /= total
                edges[b, 0, a, PRIOR] = -np.inf if invalid[b, a] else np.float64(logits[b, a])
            else:
                p = edges[b, 0, a, PRIOR] / total
                if noise_fraction > 0.0:
                    p = (1.0 - noise_fraction) * p + noise_fraction * noise[b, a]
                edges[b, 0, a, PRIOR] = p
        num_considered[b] = min(max_considered, num_valid)
        parent[b, 0] = -1
        action[b, 0] = -1
        raw_value[b, 0] = np.float64(value[b])
        root[b, ROOT_VISITS] = 1.0
        root[b, ROOT_VALUE_SUM] = np.float64(value[b]) if root_value_counts else 0.0
        minmax[b, 0] = np.inf
        minmax[b, 1] = -np.inf


@njit(cache=True)
def init_roots_from_frame(frame, store_logits, root_value_counts, max_considered):
    """`init_roots` on the arrays and root inputs described by `frame` (the first kernel call of
    a search makes it)."""
    children, edges, raw_value, discount, parent, action, root = tree_views(frame)
    invalid = view2(frame, INVALID, np.bool_)
    noise = view2(frame, NOISE, np.float64)
    fraction = view1(frame, SEARCH_ARGS, np.float64)[P_NOISE_FRACTION]
    num_considered = view1(frame, NUM_CONSIDERED, np.int32)
    minmax = view2(frame, MINMAX, np.float64)
    logits64, logits32, value64, value32 = root_inputs(frame)
    if logits64.shape[0] > 0:
        if value64.shape[0] > 0:
            init_roots(
                children, edges, raw_value, discount, parent, action, root, logits64, value64,
                invalid, noise, fraction, store_logits, root_value_counts, max_considered,
                num_considered, minmax,
            )  # fmt: skip
        else:
            init_roots(
                children, edges, raw_value, discount, parent, action, root, logits64, value32,
                invalid, noise, fraction, store_logits, root_value_counts, max_considered,
                num_considered, minmax,
            )  # fmt: skip
    elif value64.shape[0] > 0:
        init_roots(
            children, edges, raw_value, discount, parent, action, root, logits32, value64,
            invalid, noise, fraction, store_logits, root_value_counts, max_considered,
            num_considered, minmax,
        )  # fmt: skip
    else:
        init_roots(
            children, edges, raw_value, discount, parent, action, root, logits32, value32,
            invalid, noise, fraction, store_logits, root_value_counts, max_considered,
            num_considered, minmax,
        )  # fmt: skip
