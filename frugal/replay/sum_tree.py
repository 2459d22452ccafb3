"""A sum tree over a fixed number of leaves, with batched updates and batched sampling."""

from __future__ import annotations

import numpy as np


class SumTree:
    """Leaf i holds a non-negative mass; `find(u)` returns the leaf where the running sum of
    masses passes u. Parents are recomputed from their children on every update (never
    incremented), so float error cannot accumulate."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._leaves = 1 << max(0, int(np.ceil(np.log2(max(capacity, 1)))))
        self.tree = np.zeros(2 * self._leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(index) + self._leaves]

    def set(self, index: np.ndarray, mass: np.ndarray) -> None:
        """Set leaves `index` to `mass` (the last value wins for repeated indices)."""
        pos = np.asarray(index, dtype=np.int64) + self._leaves
        self.tree[pos] = mass
        pos = np.unique(pos // 2)
        while pos[0] >= 1:
            self.tree[pos] = self.tree[2 * pos] + self.tree[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos // 2)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index for each value of `mass` in [0, total)."""
        mass = np.array(mass, dtype=np.float64)
        pos = np.ones(mass.shape, dtype=np.int64)
        while pos[0] < self._leaves:
            left = self.tree[2 * pos]
            right = mass >= left
            mass -= left * right
            pos = 2 * pos + right
        return np.minimum(pos - self._leaves, self.capacity - 1)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"leaves": self.tree[self._leaves : self._leaves + self.capacity].copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.tree[:] = 0
        self.tree[self._leaves : self._leaves + self.capacity] = state["leaves"]
        for level_start in _levels(self._leaves):
            idx = np.arange(level_start, 2 * level_start)
            self.tree[idx] = self.tree[2 * idx] + self.tree[2 * idx + 1]


def _levels(leaves: int) -> list[int]:
    """First index of each internal level, bottom-up."""
    out, start = [], leaves // 2
    while start >= 1:
        out.append(start)
        start //= 2
    return out
