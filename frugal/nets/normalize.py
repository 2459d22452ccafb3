"""Running mean and variance of a stream of batches, for observation and return normalisation.

The update merges each batch's moments into the running ones (Chan, Golub & LeVeque 1979), in
float64 so long runs do not drift. Starts at mean 0, variance 1 and a tiny prior count, as
Stable-Baselines3's VecNormalize and Gymnasium's normalisation wrappers do, so the first batch
dominates at once but nothing divides by zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RunningMeanStd:
    """Moments of everything passed to `update`, per feature of shape `shape`."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch [B, *shape] into the running moments."""
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float, eps: float = 1e-8) -> np.ndarray:
        """(x - mean) / sqrt(var + eps), clipped to [-clip, clip], as float32."""
        out = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + eps)
        return np.clip(out, -clip, clip).astype(np.float32)

    def scale(self, x: np.ndarray, clip: float, eps: float = 1e-8) -> np.ndarray:
        """x / sqrt(var + eps), clipped to [-clip, clip], as float32 (no centring: rewards)."""
        out = np.asarray(x, dtype=np.float64) / np.sqrt(self.var + eps)
        return np.clip(out, -clip, clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.var = np.array(state["var"], dtype=np.float64)
        self.count = float(state["count"])
