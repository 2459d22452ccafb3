"""Per-thread scratch memory reused from one search to the next.

A search writes every node of every root once, so fresh arrays would page-fault on every search
(tens of MB at B = 1024). The tree arrays and the host embedding store are therefore carved out of
buffers kept per thread that only grow. Nothing carved from here escapes a search: outputs are
copied out. A search started inside another one on the same thread (from its recurrent_fn) gets
buffers of its own nesting level.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_local = threading.local()


@contextmanager
def level() -> Iterator[None]:
    """Mark a search as running on this thread (nested searches use other buffers)."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape`, reusing this thread's buffer `name`."""
    dtype = np.dtype(dtype)
    name = f"{name}@{getattr(_local, 'depth', 0)}"
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 64), dtype=np.uint8)
        buffers[name] = buf
        _local.trees = {}  # cached views may point into the buffer being replaced
    return buf[:nbytes].view(dtype).reshape(shape)


def cached_tree(key):
    """The tree views last built on this thread and nesting level for `key`, or None."""
    entry = getattr(_local, "trees", {}).get(getattr(_local, "depth", 0))
    if entry is not None and entry[0] == key:
        return entry[1]
    return None


def cache_tree(key, tree) -> None:
    if not hasattr(_local, "trees"):
        _local.trees = {}
    _local.trees[getattr(_local, "depth", 0)] = (key, tree)


def release() -> None:
    """Drop this thread's buffers (they are re-created on the next search)."""
    _local.buffers = {}
    _local.trees = {}
