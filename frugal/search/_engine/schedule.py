"""Sequential halving schedule of Gumbel MuZero (Danihelka et al. 2022, as in mctx).

The root search never stores "the set of considered actions". Instead, at simulation `s` the root
may only pick an action whose visit count equals `considered_visits(m, S)[s]`; among those it
takes the argmax of g + logits + sigma(q). With that single rule, the first `m` simulations visit
the Gumbel-top-m actions once each and every later phase keeps the better half of the survivors.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def considered_visits(num_considered: int, num_simulations: int) -> tuple[int, ...]:
    """Visit count an action must have to be eligible at each root simulation.

    num_considered: m, the number of actions sampled by Gumbel-top-m.
    num_simulations: S, the simulation budget.
    Returns a tuple of length S. With m = 16 and S = 50 it reads 16 x 0, 8 x 1, 4 x (2, 3, 4),
    2 x (5, ..., 10), then 11, 11: sixteen actions get one visit, eight get one more, four get three
    more, two get six more, and the last two simulations go to the two survivors.
    """
    if num_simulations <= 0:
        return ()
    if num_considered <= 1:
        # One considered action: it takes every simulation (its count is always s).
        return tuple(range(num_simulations))
    rounds_of_halving = math.ceil(math.log2(num_considered))
    sequence: list[int] = []
    visits = [0] * num_considered
    alive = num_considered
    while len(sequence) < num_simulations:
        # Every phase gets about S / log2(m) simulations, spread evenly over the survivors.
        repeats = max(1, int(num_simulations / (rounds_of_halving * alive)))
        for _ in range(repeats):
            sequence.extend(visits[:alive])
            for i in range(alive):
                visits[i] += 1
        alive = max(2, alive // 2)
    return tuple(sequence[:num_simulations])


@lru_cache(maxsize=64)
def considered_visits_table(max_considered: int, num_simulations: int) -> np.ndarray:
    """int32 [max_considered + 1, max(S, 1)]: row m is `considered_visits(m, S)`.

    A root with fewer valid actions than `max_considered` reads the row of its own m. The array is
    cached and shared: treat it as read-only.
    """
    table = np.zeros((max_considered + 1, max(num_simulations, 1)), dtype=np.int32)
    for m in range(max_considered + 1):
        row = considered_visits(m, num_simulations)
        table[m, : len(row)] = row
    table.setflags(write=False)
    return table
