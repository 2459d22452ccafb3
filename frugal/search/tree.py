"""Struct-of-arrays search tree for B roots, and the O(depth) expand/backup kernel.

Node 0 of every root is the root; the node created by simulation s is node s + 1, so each root
needs N = S + 1 node slots, allocated once. Statistics live on edges, in the parent's row, so
choosing among a node's children reads two contiguous rows and no child node:

    children  int32   [B, N, A]     child node per action, -1 = not expanded (row written when
                                    the node is created)
    edges     float64 [B, N, A, F]  per edge (n, a): VISITS N(c), VALUE_SUM of c (its network
                                    value + every return backed up through c), REWARD r(n, a),
                                    Q = r + discount * VALUE_SUM / VISITS, PRIOR (pUCT: prior
                                    probability; Gumbel: prior logit) and, for Gumbel, PROB =
                                    softmax(logits)
    raw_value float64 [B, N]        network value v(n)
    parent    int32   [B, N]        parent node (-1 at the root)
    action    int32   [B, N]        action from the parent
    root      float64 [B, 2]        the root's own (visits, value_sum); visits starts at 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from frugal.search.workspace import scratch

VISITS, VALUE_SUM, REWARD, Q, PRIOR, PROB = range(6)
ROOT_VISITS, ROOT_VALUE_SUM = range(2)


@dataclass
class Tree:
    children: np.ndarray
    edges: np.ndarray
    raw_value: np.ndarray
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
            parent=scratch("parent", shape, np.int32),
            action=scratch("action", shape, np.int32),
            root=scratch("root", (num_roots, 2), np.float64),
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in kernel argument order."""
        return (self.children, self.edges, self.raw_value, self.parent, self.action, self.root)


@njit(cache=True, inline="always")
def expand_and_backup(
    b, node, parent_node, action_taken, r, v, discount, children, edges, raw_value, parent,
    action, root, minmax, track_minmax,
):  # fmt: skip
    """Attach `node` (its children row and PRIOR/PROB fields already written) as child
    `action_taken` of `parent_node` with network outputs (r, v), then back the return up to the
    root: each ancestor gets r + discount * (return below it).

    With track_minmax, min-max statistics minmax[b] = (min, max) see r + discount * V(n) of every
    node on the path, the root included (its r is 0), after that node's update (MuZero).
    """
    children[b, parent_node, action_taken] = node
    parent[b, node] = parent_node
    action[b, node] = action_taken
    raw_value[b, node] = v
    p = parent_node
    a = action_taken
    edges[b, p, a, VISITS] = 1.0
    edges[b, p, a, VALUE_SUM] = v
    edges[b, p, a, REWARD] = r
    q = r + discount * v
    edges[b, p, a, Q] = q
    if track_minmax:
        _see(minmax, b, q)
    ret = q  # return seen by the parent
    n = parent_node
    while n != 0:
        p = parent[b, n]
        a = action[b, n]
        visits = edges[b, p, a, VISITS] + 1.0
        value_sum = edges[b, p, a, VALUE_SUM] + ret
        reward = edges[b, p, a, REWARD]
        q = reward + discount * (value_sum / visits)
        edges[b, p, a, VISITS] = visits
        edges[b, p, a, VALUE_SUM] = value_sum
        edges[b, p, a, Q] = q
        if track_minmax:
            _see(minmax, b, q)
        ret = reward + discount * ret
        n = p
    root[b, ROOT_VISITS] += 1.0
    root[b, ROOT_VALUE_SUM] += ret
    if track_minmax:
        _see(minmax, b, discount * (root[b, ROOT_VALUE_SUM] / root[b, ROOT_VISITS]))


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
    children, edges, raw_value, parent, action, root, logits, value, invalid, noise,
    noise_fraction, store_logits, max_considered, num_considered, minmax,
):  # fmt: skip
    """Write the root rows of every root b from its network outputs.

    logits [B, A] and value [B], float32 or float64 (read as float64); invalid bool [B, A].
    PRIOR gets the masked logits (store_logits, Gumbel: PROB = their softmax) or the softmax
    mixed with `noise` [B, A] at noise_fraction (pUCT, Dirichlet; noise may be empty when the
    fraction is 0).
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
        root[b, ROOT_VALUE_SUM] = np.float64(value[b])
        minmax[b, 0] = np.inf
        minmax[b, 1] = -np.inf
