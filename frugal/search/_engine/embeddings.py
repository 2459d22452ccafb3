"""Per-node embedding storage: every node's latent state stays on the device it came from.

`HostEmbeddings` (every leaf on the CPU) keeps all leaves of all nodes in one byte array
[B, N, W] that the numba kernels write and gather (memcpy) directly, so a simulation costs no
torch indexing op.

`DeviceEmbeddings` (any leaf elsewhere, e.g. CUDA) keeps one tensor [B, N, ...] per
leaf on the leaf's device and gathers with `index_select` on index tensors; only the [2, B] index
batch crosses devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

from frugal.search._engine.workspace import scratch

_ALIGN = 16  # byte alignment of each leaf's block, so dtype views of the byte buffers are legal


def flatten(tree: Any) -> tuple[list[torch.Tensor], Callable[[list[torch.Tensor]], Any]]:
    """Leaves of a tensor / (named)tuple / list / dict nest, and a function rebuilding the nest."""
    if isinstance(tree, torch.Tensor):
        return [tree], _first
    if isinstance(tree, dict):
        keys = list(tree)
        parts = [flatten(tree[k]) for k in keys]
        counts = [len(p[0]) for p in parts]
        leaves = [x for p in parts for x in p[0]]

        def rebuild_dict(xs):
            out, i = {}, 0
            for k, (_, rb), c in zip(keys, parts, counts, strict=True):
                out[k] = rb(xs[i : i + c])
                i += c
            return out

        return leaves, rebuild_dict
    if isinstance(tree, tuple | list):
        parts = [flatten(x) for x in tree]
        counts = [len(p[0]) for p in parts]
        leaves = [x for p in parts for x in p[0]]
        kind = type(tree)

        def rebuild_seq(xs):
            out, i = [], 0
            for (_, rb), c in zip(parts, counts, strict=True):
                out.append(rb(xs[i : i + c]))
                i += c
            if hasattr(kind, "_fields"):  # namedtuple
                return kind(*out)
            return kind(out)

        return leaves, rebuild_seq
    raise TypeError(f"embedding leaves must be tensors, got {type(tree).__name__}")


def _first(xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0]


def signature(tree: Any) -> Hashable:
    """Hashable nest structure with each leaf's shape and dtype: embeddings with one signature
    share a storage layout."""
    if isinstance(tree, torch.Tensor):
        return (tuple(tree.shape), tree.dtype)
    if isinstance(tree, dict):
        return (dict, tuple((k, signature(v)) for k, v in tree.items()))
    if isinstance(tree, tuple | list):
        return (type(tree), tuple(signature(x) for x in tree))
    raise TypeError(f"embedding leaves must be tensors, got {type(tree).__name__}")


def fresh(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor; allocated by numpy where it has the dtype (a third of
    torch.empty's cost at the sizes of a search's batches)."""
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.empty(shape, dtype=np_dtype))


_NUMPY_DTYPES = {
    torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
    torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
    torch.uint8: np.uint8, torch.bool: np.bool_,
}  # fmt: skip


def _leaf_spec(leaves: list[torch.Tensor], num_roots: int) -> list[tuple[tuple[int, ...], Any]]:
    spec = []
    for leaf in leaves:
        if leaf.dim() == 0 or leaf.shape[0] != num_roots:
            raise ValueError(
                f"every embedding leaf needs leading dim B={num_roots}, got shape "
                f"{tuple(leaf.shape)}"
            )
        spec.append((tuple(leaf.shape[1:]), leaf.dtype))
    return spec


def _check_leaf(leaf: Any, shape: tuple[int, ...], dtype: Any, i: int) -> None:
    if not isinstance(leaf, torch.Tensor) or leaf.shape != shape or leaf.dtype != dtype:
        got = (
            f"{tuple(leaf.shape)} {leaf.dtype}"
            if isinstance(leaf, torch.Tensor)
            else type(leaf).__name__
        )
        raise ValueError(
            f"recurrent_fn's embedding leaf {i} must match the root's: expected "
            f"{shape} {dtype}, got {got}"
        )


class HostEmbeddings:
    """All leaves on the CPU: byte storage that the tree kernels write and gather directly.

    store: uint8 [B, N, W] from this thread's workspace; leaf i of node n of root b lives at
    store[b, n, off[i] : off[i] + nbytes[i]]. Built once per search shape (it is part of the
    search's Plan); `start` begins each search.
    """

    on_host = True

    def __init__(self, embedding: Any, num_roots: int, num_sims: int):
        leaves, self._rebuild = flatten(embedding)
        self._spec = _leaf_spec(leaves, num_roots)
        self._full_shapes = [(num_roots, *shape) for shape, _ in self._spec]
        self._num_sims = num_sims
        self.single = isinstance(embedding, torch.Tensor)
        self.leaf_shape, self.leaf_dtype = self._full_shapes[0], self._spec[0][1]
        nbytes, offsets, width = [], [], 0
        for leaf, (shape, _) in zip(leaves, self._spec, strict=True):
            nb = math.prod(shape) * leaf.element_size()
            nbytes.append(nb)
            offsets.append(width)
            width += -(-nb // _ALIGN) * _ALIGN
        self.leaf_nbytes = np.asarray(nbytes, dtype=np.int64)
        self.leaf_off = np.asarray(offsets, dtype=np.int64)
        self.leaf_ptrs = np.zeros(len(leaves), dtype=np.int64)
        self.batch_base = np.zeros(len(leaves), dtype=np.int64)
        self.store = scratch("embeddings", (num_roots, num_sims + 1, width), np.uint8)
        self.rows: list[tuple[torch.Tensor, ...]] = []

    def start(self, embedding: Any) -> None:
        """Begin a search from the root `embedding` (the first kernel call copies it into node
        0). Input batches of all simulations: leaf i of simulation s is row s of a fresh
        [S, B, ...] tensor (never reused, so recurrent_fn may keep what it is given)."""
        batches = [fresh((self._num_sims, *full), dtype) for full, (_, dtype) in
                   zip(self._full_shapes, self._spec, strict=True)]  # fmt: skip
        for i, batch in enumerate(batches):
            self.batch_base[i] = batch.data_ptr()
        self.rows = [batch.unbind(0) for batch in batches]
        if (
            self.single
            and type(embedding) is torch.Tensor
            and embedding.is_cpu
            and embedding.dtype == self.leaf_dtype
            and embedding.shape == self.leaf_shape
            and embedding.is_contiguous()
        ):
            self.leaf_ptrs[0] = embedding.data_ptr()
            self._keep = [embedding]
        else:
            self.put(embedding)

    def stop(self) -> None:
        """End a search: let go of its tensors (this object outlives it)."""
        self.rows = []
        self._keep = []

    def batch(self, s: int) -> Any:
        """Simulation s's input batch (filled by the kernel call that selected it)."""
        if self.single:
            return self.rows[0][s]
        return self._rebuild([rows[s] for rows in self.rows])

    def put(self, embedding: Any) -> None:
        """Point the next kernel call at new embeddings (it copies them into its new nodes)."""
        if self.single and isinstance(embedding, torch.Tensor):
            leaves = [embedding]
        else:
            leaves, _ = flatten(embedding)
            if len(leaves) != len(self._spec):
                raise ValueError(
                    f"recurrent_fn returned {len(leaves)} embedding leaves, the root has "
                    f"{len(self._spec)}"
                )
        keep = []
        for i, leaf in enumerate(leaves):
            _check_leaf(leaf, self._full_shapes[i], self._spec[i][1], i)
            if not leaf.is_cpu or not leaf.is_contiguous():
                leaf = leaf.to("cpu").contiguous()
            keep.append(leaf)
            self.leaf_ptrs[i] = leaf.data_ptr()
        self._keep = keep  # alive until the kernel has copied them


class DeviceEmbeddings:
    """Leaves off the CPU: one [B, N, ...] tensor per leaf on its device, torch gathers."""

    on_host = False
    # The kernels still take byte-storage arguments; these are empty.
    store = np.zeros((0, 0, 0), dtype=np.uint8)
    leaf_nbytes = np.zeros(0, dtype=np.int64)
    leaf_off = np.zeros(0, dtype=np.int64)
    leaf_ptrs = np.zeros(0, dtype=np.int64)
    batch_base = np.zeros(0, dtype=np.int64)

    def __init__(self, embedding: Any, num_roots: int, num_sims: int):
        leaves, self._rebuild = flatten(embedding)
        self._spec = _leaf_spec(leaves, num_roots)
        self._full_shapes = [(num_roots, *shape) for shape, _ in self._spec]
        self._num_nodes = num_sims + 1
        self._storage = []
        for leaf in leaves:
            st = torch.empty(
                (num_roots, num_sims + 1, *leaf.shape[1:]), dtype=leaf.dtype, device=leaf.device
            )
            st[:, 0] = leaf
            self._storage.append(st)
        self._flat = [st.view(num_roots * (num_sims + 1), *st.shape[2:]) for st in self._storage]
        self._devices = sorted({leaf.device for leaf in leaves}, key=str)
        self._node = 0

    def index(self, sel_row: torch.Tensor) -> dict[torch.device, torch.Tensor]:
        """sel_row: long [2, B] (flat parent index b * N + node, action) on the CPU."""
        return {d: sel_row.to(d, non_blocking=True) for d in self._devices}

    def batch_from(self, flat_index: dict[torch.device, torch.Tensor]) -> Any:
        gathered = [flat.index_select(0, flat_index[flat.device][0]) for flat in self._flat]
        return self._rebuild(gathered)

    def put_at(self, node: int, embedding: Any) -> None:
        leaves, _ = flatten(embedding)
        if len(leaves) != len(self._storage):
            raise ValueError(
                f"recurrent_fn returned {len(leaves)} embedding leaves, the root has "
                f"{len(self._storage)}"
            )
        for i, (st, leaf) in enumerate(zip(self._storage, leaves, strict=True)):
            _check_leaf(leaf, self._full_shapes[i], self._spec[i][1], i)
            st[:, node] = leaf
