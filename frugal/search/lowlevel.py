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
def _as_voidptr(typingctx, address):
    """int64 address -> void*."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit(cache=True)
def f32_at(address, length):
    """float32 [length] view of the memory at `address`."""
    return carray(_as_voidptr(address), (length,), np.float32)


@njit(cache=True)
def u8_at(address, length):
    """uint8 [length] view of the memory at `address`."""
    return carray(_as_voidptr(address), (length,), np.uint8)


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


@njit(cache=True)
def store_new_embeddings(store, node, leaf_ptrs, leaf_nbytes, leaf_off):
    """Copy the B new leaves (contiguous, at leaf_ptrs) into byte storage store[:, node].

    store: uint8 [B, N, W]; leaf i of root b lives at store[b, n, leaf_off[i]:+leaf_nbytes[i]].
    """
    num_roots = store.shape[0]
    for i in range(leaf_ptrs.shape[0]):
        nb = leaf_nbytes[i]
        off = leaf_off[i]
        src = u8_at(leaf_ptrs[i], num_roots * nb)
        for b in range(num_roots):
            store[b, node, off : off + nb] = src[b * nb : (b + 1) * nb]


@njit(cache=True)
def gather_embedding(store, b, node, sim, num_sims, gbuf, leaf_nbytes, leaf_off):
    """Copy root b's node embedding into the batch handed to recurrent_fn at simulation `sim`.

    gbuf: uint8 [S * B * W]; leaf i occupies the block starting at S*B*leaf_off[i], laid out as
    [S, B, leaf bytes] so that each simulation's batch of leaf i is one contiguous tensor.
    """
    num_roots = store.shape[0]
    for i in range(leaf_nbytes.shape[0]):
        nb = leaf_nbytes[i]
        off = leaf_off[i]
        dst = num_sims * num_roots * off + (sim * num_roots + b) * nb
        gbuf[dst : dst + nb] = store[b, node, off : off + nb]
