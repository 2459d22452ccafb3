"""Kernel frames: every array a search's simulation kernel works on, passed as one argument.

numba unboxes each array argument on every call (about 0.1 µs apiece); with some twenty arrays a
simulation kernel cost more to call than to run at small B. A frame is an int64 table [ROWS, 5]
whose row k holds the address and shape (up to 4 dims) of the C-contiguous array in slot k; the
kernels rebuild their views with `carray`. Whoever fills a frame keeps its arrays alive while it is
in use (the search's Plan does).

Slots are shared by both methods; a method leaves the ones it does not use as empty arrays.
ROOT_LOGITS [B, A] and ROOT_VALUE [B] describe the search's root tensors, float32 or float64 as
column WIDE says; they are set per search (see `root_inputs`).
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from frugal.search._engine.lowlevel import as_voidptr

(
    CHILDREN, EDGES, RAW_VALUE, DISCOUNT, PARENT, ACTION, ROOT,  # the tree, as Tree.arrays()
    INVALID, SELECTION, PARAMS, TIES,
    ROOT_LOGITS, ROOT_VALUE, NOISE, SEARCH_ARGS,  # the roots' inputs, read by the first call
    STORE, LEAF_NBYTES, LEAF_OFF, LEAF_PTRS, BATCH_BASE,  # embedding byte store (HostEmbeddings)
    MINMAX, RNG,  # pUCT
    GUMBEL, TABLE, NUM_CONSIDERED,  # Gumbel
    ROWS,
) = range(26)  # fmt: skip
MAX_DIMS = 4
WIDE = 4  # column of ROOT_LOGITS and ROOT_VALUE: 1 = the tensor is float64, 0 = float32
P_NOISE_FRACTION = 0  # SEARCH_ARGS[0]: Dirichlet fraction mixed into the root prior


def new_frame() -> np.ndarray:
    return np.zeros((ROWS, 1 + MAX_DIMS), dtype=np.int64)


def put(frame: np.ndarray, slot: int, array: np.ndarray) -> None:
    """Describe `array` in `slot` (the caller keeps it alive)."""
    if not array.flags.c_contiguous or array.ndim > MAX_DIMS:
        raise ValueError(f"frame slot {slot}: need a C-contiguous array of <= {MAX_DIMS} dims")
    frame[slot] = 0
    frame[slot, 0] = array.ctypes.data
    frame[slot, 1 : 1 + array.ndim] = array.shape


@njit(cache=True, inline="always")
def view1(frame, slot, dtype):
    return carray(as_voidptr(frame[slot, 0]), (frame[slot, 1],), dtype)


@njit(cache=True, inline="always")
def view2(frame, slot, dtype):
    return carray(as_voidptr(frame[slot, 0]), (frame[slot, 1], frame[slot, 2]), dtype)


@njit(cache=True, inline="always")
def view3(frame, slot, dtype):
    shape = (frame[slot, 1], frame[slot, 2], frame[slot, 3])
    return carray(as_voidptr(frame[slot, 0]), shape, dtype)


@njit(cache=True, inline="always")
def view4(frame, slot, dtype):
    shape = (frame[slot, 1], frame[slot, 2], frame[slot, 3], frame[slot, 4])
    return carray(as_voidptr(frame[slot, 0]), shape, dtype)


@njit(cache=True, inline="always")
def tree_views(frame):
    """(children, edges, raw_value, discount, parent, action, root), as in Tree."""
    return (
        view3(frame, CHILDREN, np.int32),
        view4(frame, EDGES, np.float64),
        view2(frame, RAW_VALUE, np.float64),
        view2(frame, DISCOUNT, np.float64),
        view2(frame, PARENT, np.int32),
        view2(frame, ACTION, np.int32),
        view2(frame, ROOT, np.float64),
    )


@njit(cache=True, inline="always")
def store_views(frame):
    """(store, leaf_nbytes, leaf_off, leaf_ptrs, batch_base), as in HostEmbeddings."""
    return (
        view3(frame, STORE, np.uint8),
        view1(frame, LEAF_NBYTES, np.int64),
        view1(frame, LEAF_OFF, np.int64),
        view1(frame, LEAF_PTRS, np.int64),
        view1(frame, BATCH_BASE, np.int64),
    )


@njit(cache=True, inline="always")
def root_inputs(frame):
    """(logits float64 [B, A], logits float32 [B, A], value float64 [B], value float32 [B]):
    of each pair the view of the root tensor's dtype is full size, the other empty."""
    l_wide = frame[ROOT_LOGITS, WIDE] != 0
    v_wide = frame[ROOT_VALUE, WIDE] != 0
    ptr, rows, cols = frame[ROOT_LOGITS, 0], frame[ROOT_LOGITS, 1], frame[ROOT_LOGITS, 2]
    logits64 = carray(as_voidptr(ptr), (rows if l_wide else 0, cols), np.float64)
    logits32 = carray(as_voidptr(ptr), (0 if l_wide else rows, cols), np.float32)
    ptr, rows = frame[ROOT_VALUE, 0], frame[ROOT_VALUE, 1]
    value64 = carray(as_voidptr(ptr), (rows if v_wide else 0,), np.float64)
    value32 = carray(as_voidptr(ptr), (0 if v_wide else rows,), np.float32)
    return logits64, logits32, value64, value32
