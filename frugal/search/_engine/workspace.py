"""Per-thread scratch memory reused from one search to the next.

A search writes every node of every root once, so fresh arrays would page-fault on every search
(tens of MB at B = 1024). The tree arrays and the host embedding store are therefore carved out of
buffers kept per thread that only grow. Nothing carved from here escapes a search: outputs are
copied out. A search started inside another one on the same thread (from its recurrent_fn) gets
buffers of its own nesting level.

Objects built on those buffers (a search's Plan) are cached per thread and nesting level too.
Several may view the same buffer: searches on one thread and level run one after another, and each
initialises what it reads.
"""

from __future__ import annotations

import math
import threading

import numpy as np

_local = threading.local()


class level:
    """Mark a search as running on this thread (nested searches use other buffers). A plain
    class: a generator-based context manager would cost a microsecond more per search."""

    def __enter__(self) -> None:
        _local.depth = getattr(_local, "depth", 0) + 1

    def __exit__(self, *exc) -> None:
        _local.depth -= 1


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape`, reusing this thread's buffer `name`."""
    dtype = np.dtype(dtype)
    name = f"{name}@{getattr(_local, 'depth', 0)}"
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 64), dtype=np.uint8)
        buffers[name] = buf
        _local.cached = {}  # cached objects may view the buffer being replaced
    return buf[:nbytes].view(dtype).reshape(shape)


MAX_CACHED = 8  # objects per thread and nesting level; a full level starts over


def cached(key):
    """The object cached under `key` on this thread and nesting level, or None."""
    return _level_cache().get(key)


def cache(key, value) -> None:
    entries = _level_cache()
    if len(entries) >= MAX_CACHED:
        entries.clear()
    entries[key] = value


def _level_cache() -> dict:
    caches = getattr(_local, "cached", None)
    if caches is None:
        caches = _local.cached = {}
    depth = getattr(_local, "depth", 0)
    entries = caches.get(depth)
    if entries is None:
        entries = caches[depth] = {}
    return entries


def release() -> None:
    """Drop this thread's buffers (they are re-created on the next search)."""
    _local.buffers = {}
    _local.cached = {}
