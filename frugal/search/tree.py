"""Struct-of-arrays search tree for B roots, and the O(depth) expand/backup kernel.

Node 0 of every root is the root; the node created by simulation s is node s + 1, so each root
needs N = S + 1 slots, allocated once. Per node:

    children   int32   [B, N, A]  child node index per action, -1 = not expanded
    prior      float64 [B, N, A]  pUCT: prior probabilities; Gumbel: prior logits
    visits     int32   [B, N]     visit count (a new node starts with 1: its own network value)
    value_sum  float64 [B, N]     network value + every return backed up through the node
    raw_value  float64 [B, N]     network value v(node)
    reward     float64 [B, N]     reward of the edge parent -> node (0 at the root)
    parent     int32   [B, N]     parent node (-1 at the root)

so V(n) = value_sum / visits and Q(n, a) = reward[c] + discount * V(c) with c = children[n, a].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass
class Tree:
    children: np.ndarray
    prior: np.ndarray
    visits: np.ndarray
    value_sum: np.ndarray
    raw_value: np.ndarray
    reward: np.ndarray
    parent: np.ndarray

    @staticmethod
    def allocate(num_roots: int, num_nodes: int, num_actions: int) -> Tree:
        shape = (num_roots, num_nodes)
        return Tree(
            children=np.full((*shape, num_actions), -1, dtype=np.int32),
            prior=np.empty((*shape, num_actions), dtype=np.float64),
            visits=np.zeros(shape, dtype=np.int32),
            value_sum=np.zeros(shape, dtype=np.float64),
            raw_value=np.zeros(shape, dtype=np.float64),
            reward=np.zeros(shape, dtype=np.float64),
            parent=np.full(shape, -1, dtype=np.int32),
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in kernel argument order."""
        return (
            self.children,
            self.prior,
            self.visits,
            self.value_sum,
            self.raw_value,
            self.reward,
            self.parent,
        )


@njit(cache=True)
def child_q(children, visits, value_sum, reward, b, n, a, discount):
    """Q(n, a) = r + discount * V(child) of an expanded child (children[b, n, a] >= 0)."""
    c = children[b, n, a]
    return reward[b, c] + discount * value_sum[b, c] / visits[b, c]


@njit(cache=True)
def expand_and_backup(
    b, node, parent_node, action, r, v, discount, children, visits, value_sum, raw_value, reward,
    parent, minmax, track_minmax,
):  # fmt: skip
    """Attach `node` as child `action` of `parent_node` with network outputs (r, v), then back the
    return up to the root: each ancestor gets r + discount * (return below it).

    With track_minmax, min-max statistics minmax[b] = (min, max) see r + discount * V(n) of every
    node on the path, the root included (its r is 0), after that node's update (MuZero).
    """
    children[b, parent_node, action] = node
    parent[b, node] = parent_node
    reward[b, node] = r
    raw_value[b, node] = v
    value_sum[b, node] = v
    visits[b, node] = 1
    ret = v
    n = node
    while True:
        if track_minmax:
            q = reward[b, n] + discount * value_sum[b, n] / visits[b, n]
            if q < minmax[b, 0]:
                minmax[b, 0] = q
            if q > minmax[b, 1]:
                minmax[b, 1] = q
        if n == 0:
            break
        ret = reward[b, n] + discount * ret
        n = parent[b, n]
        value_sum[b, n] += ret
        visits[b, n] += 1
