"""Statistics for comparing runs: seed bootstrap, curves on a common grid, IQM.

Decisions (documented in `frugal.report`):
- Interval: 95% percentile bootstrap of the mean over seeds, 10,000 resamples drawn from
  `numpy.random.default_rng(0)`, so a report is the same every time. One seed: the interval is the
  value itself.
- Curve grid: the union of the seeds' x values, restricted to the range every seed covers; each seed
  holds its last evaluated value until its next evaluation (step interpolation).
- IQM: `scipy.stats.trim_mean(v, 0.25)` semantics, as rliable computes it: sort, drop
  floor(0.25 n) values from each end, average the rest (n = 26 games: the middle 14).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95
SEED = 0


def bootstrap_ci(
    values, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over axis 0 (the seeds).

    `values` has shape (n,) or (n, k): each resample draws n seeds with replacement, and the same
    resampled seeds are used for all k columns. Returns (low, high): floats, or arrays (k,).
    """
    v = np.asarray(values, dtype=float)
    n = v.shape[0]
    if n == 0:
        raise ValueError("bootstrap of no values")
    if n == 1:
        return (float(v[0]), float(v[0])) if v.ndim == 1 else (v[0].copy(), v[0].copy())
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)  # (B, n)
    flat = v.reshape(n, -1)
    tail = 100 * (1 - level) / 2
    lo = np.empty(flat.shape[1])
    hi = np.empty(flat.shape[1])
    chunk = max(1, 2_000_000 // n_boot)  # bounded memory for long curves
    for s in range(0, flat.shape[1], chunk):
        means = counts @ flat[:, s : s + chunk] / n  # (B, chunk)
        lo[s : s + chunk], hi[s : s + chunk] = np.percentile(means, [tail, 100 - tail], axis=0)
    if v.ndim == 1:
        return float(lo[0]), float(hi[0])
    return lo.reshape(v.shape[1:]), hi.reshape(v.shape[1:])


def iqm(values) -> float:
    """Interquartile mean, `scipy.stats.trim_mean(values, 0.25)`: drop floor(n/4) of the lowest
    and of the highest values, average the rest (fewer than 4 values: the plain mean)."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    if v.size == 0:
        raise ValueError("IQM of no values")
    cut = int(0.25 * v.size)
    return float(v[cut : v.size - cut].mean())


@dataclass
class Curve:
    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_seeds: np.ndarray  # seeds behind each point
    complete: bool  # every point averages all seeds
    aligned: bool  # all seeds were evaluated at exactly the grid's x values
    seed_ends: tuple[float, float]  # (shortest, longest) last x of the seeds


def step_values(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The value of a step function (ys[i] from xs[i] on) at each grid x; NaN before xs[0] and
    after xs[-1]."""
    idx = np.searchsorted(xs, grid, side="right") - 1
    ok = (idx >= 0) & (grid <= xs[-1])
    out = np.full(grid.shape, np.nan)
    out[ok] = ys[idx[ok]]
    return out


def seed_curve(series: list[tuple[np.ndarray, np.ndarray]]) -> Curve:
    """Mean and bootstrap interval over seeds, each seed a (sorted xs, ys) pair.

    The grid is every x at which some seed was evaluated, within the range that all seeds cover,
    so each point is the mean of all seeds. If the seeds share no range at all (e.g. one wall-clock
    point each), the grid is every x and each point averages the seeds that cover it.
    """
    series = [(xs, ys) for xs, ys in series if xs.size]
    if not series:
        raise ValueError("no points")
    first = max(xs[0] for xs, _ in series)
    last = min(xs[-1] for xs, _ in series)
    ends = (last, max(xs[-1] for xs, _ in series))
    grid = np.unique(np.concatenate([xs for xs, _ in series]))
    complete = first <= last
    if complete:
        grid = grid[(grid >= first) & (grid <= last)]
    v = np.stack([step_values(xs, ys, grid) for xs, ys in series])  # (seeds, grid)
    aligned = all(np.array_equal(xs, grid) for xs, _ in series)
    if complete:
        lo, hi = bootstrap_ci(v)
        n = np.full(grid.size, len(series))
        return Curve(grid, v.mean(0), lo, hi, n, True, aligned, ends)
    mean, lo, hi = (np.empty(grid.size) for _ in range(3))
    n = np.empty(grid.size, dtype=int)
    for j in range(grid.size):
        col = v[~np.isnan(v[:, j]), j]
        n[j] = col.size
        mean[j] = col.mean()
        lo[j], hi[j] = bootstrap_ci(col)
    return Curve(grid, mean, lo, hi, n, False, False, ends)
