"""Per-thread scratch memory reused from one search to the next.

A search writes every node of every root once, so fresh arrays would page-fault on every search
(tens of MB at B = 1024). The tree arrays and the host embedding store are therefore carved out of
buffers kept per thread that only grow. Nothing carved from here escapes a search: outputs are
copied out.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape`, reusing this thread's buffer `name`."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 64), dtype=np.uint8)
        buffers[name] = buf
        _local.tree = None  # cached views may point into the buffer being replaced
    return buf[:nbytes].view(dtype).reshape(shape)


def cached_tree(key):
    """The tree views last built on this thread for `key`, or None."""
    entry = getattr(_local, "tree", None)
    if entry is not None and entry[0] == key:
        return entry[1]
    return None


def cache_tree(key, tree) -> None:
    _local.tree = (key, tree)


def release() -> None:
    """Drop this thread's buffers (they are re-created on the next search)."""
    _local.buffers = {}
    _local.tree = None
