"""Numba building blocks with no search logic: raw-address views, a per-root RNG, byte copies.

Network outputs reach the tree kernels as (address, stride) pairs of float32 CPU tensors, so one
simulation costs no `.numpy()` conversions; the caller keeps those tensors alive during the call.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SPLITMIX_M1 = np.uint64(0xBF58476D1CE4E5B9)
_SPLITMIX_M2 = np.uint64(0x94D049BB133111EB)


@intrinsic
def as_voidptr(typingctx, address):
    """int64 address -> void*."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit(cache=True)
def f32_at(address, length):
    """float32 [length] view of the memory at `address`."""
    return carray(as_voidptr(address), (length,), np.float32)


@njit(cache=True)
def f64_at(address, length):
    """float64 [length] view of the memory at `address`."""
    return carray(as_voidptr(address), (length,), np.float64)


@njit(cache=True)
def next_random(state, i):
    """SplitMix64 step of root i's generator state (uint64 [B]); returns a uint64."""
    z = state[i] + _SPLITMIX_GAMMA
    state[i] = z
    z = (z ^ (z >> np.uint64(30))) * _SPLITMIX_M1
    z = (z ^ (z >> np.uint64(27))) * _SPLITMIX_M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def random_below(state, i, n):
    """Uniform integer in [0, n) from root i's generator (n small, so the modulo bias is nil)."""
    return np.int64(next_random(state, i) % np.uint64(n))


@intrinsic
def _memcpy(typingctx, dst_address, src_address, count):
    """llvm.memcpy of `count` bytes between two int64 addresses."""
    if not all(isinstance(x, types.Integer) for x in (dst_address, src_address, count)):
        return None

    def codegen(context, builder, signature, args):
        dst = builder.inttoptr(args[0], cgutils.voidptr_t)
        src = builder.inttoptr(args[1], cgutils.voidptr_t)
        cgutils.raw_memcpy(builder, dst, src, args[2], 1)
        return context.get_dummy_value()

    return types.none(dst_address, src_address, count), codegen


@njit(cache=True)
def store_new_embeddings(store, node, e_ptr, leaf_ptrs, leaf_nbytes, leaf_off):
    """Copy the B new leaves (contiguous, at leaf_ptrs; leaf 0 at e_ptr unless that is 0) into
    byte storage store[:, node].

    store: uint8 [B, N, W]; leaf i of root b lives at store[b, n, leaf_off[i]:+leaf_nbytes[i]].
    """
    if e_ptr != 0:
        leaf_ptrs[0] = e_ptr
    num_roots, num_nodes, width = store.shape
    base = store.ctypes.data
    for i in range(leaf_ptrs.shape[0]):
        nb = leaf_nbytes[i]
        for b in range(num_roots):
            dst = base + (b * num_nodes + node) * width + leaf_off[i]
            _memcpy(dst, leaf_ptrs[i] + b * nb, nb)


@njit(cache=True)
def gather_embedding(store, b, node, s, leaf_nbytes, leaf_off, batch_base):
    """Copy root b's node embedding into row b of simulation s's input batch: leaf i goes to the
    contiguous [S, B, ...] tensor at batch_base[i]."""
    num_roots, num_nodes, width = store.shape
    src = store.ctypes.data + (b * num_nodes + node) * width
    for i in range(leaf_nbytes.shape[0]):
        nb = leaf_nbytes[i]
        _memcpy(batch_base[i] + (s * num_roots + b) * nb, src + leaf_off[i], nb)
