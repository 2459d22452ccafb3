"""`search`: batched MCTS over B roots, pUCT (EfficientZero) or Gumbel MuZero (mctx semantics).

Division of labour per simulation: one numba kernel call backs up the previous simulation's new
nodes and selects the next leaf edge of every root (O(depth * A) per root, all on the CPU, no
Python loop over roots); `recurrent_fn` runs once on the batch of B parent embeddings, on
whatever device they live; only indices [2, B] and the float32 outputs reward [B], value [B],
logits [B, A] cross devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from frugal.search import gumbel as gumbel_kernels
from frugal.search import puct as puct_kernels
from frugal.search import workspace
from frugal.search.embeddings import DeviceEmbeddings, HostEmbeddings, flatten
from frugal.search.schedule import considered_visits_table
from frugal.search.tree import Tree, init_roots
from frugal.search.types import Root, SearchOutput, Step

RecurrentFn = Callable[[Any, torch.Tensor], tuple[Step, Any]]

METHODS = ("gumbel", "puct")
_NO_NOISE = np.zeros((0, 0), dtype=np.float64)


def search(
    root: Root,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    *,
    method: str = "gumbel",
    discount: float = 0.997,
    invalid_actions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    gumbel_noise: torch.Tensor | None = None,
    gumbel_scale: float = 1.0,
    max_considered_actions: int = 16,
    c_visit: float = 50.0,
    c_scale: float = 0.1,
    pb_c_init: float = 1.25,
    pb_c_base: float = 19652.0,
    dirichlet_alpha: float = 0.3,
    dirichlet_fraction: float = 0.0,
    value_delta_max: float = 0.01,
) -> SearchOutput:
    """Run `num_simulations` (S) simulations from each of the B roots.

    root: prior_logits [B, A], value [B], embedding (tensor or nest of tensors, leading dim B).
    recurrent_fn(embedding, action) -> (Step(reward [B], prior_logits [B, A], value [B]),
        next embedding): called exactly S times, each time on one batch of B embeddings (one
        node per root) and long actions [B] on the embedding's device. Its inputs are fresh
        tensors (it may keep them); its outputs are copied, so it may reuse its own buffers.
        The next embedding must match the root's structure, shapes and dtypes.
    method: "gumbel" (Gumbel MuZero: Gumbel-top-m + sequential halving at the root, completed-Q
        improved policy below) or "puct" (EfficientZero V1 pUCT with min-max normalised Q).
    discount: per-step discount of rewards and values.
    invalid_actions: bool [B, A], True = illegal at the root (never visited, weight 0). Every
        root needs at least one legal action. Below the root all actions are legal.
    generator: draws the Gumbel / Dirichlet noise and breaks pUCT ties at random. None: noise from
        torch's global generator, ties to the first index.

    Gumbel only:
      gumbel_noise: float [B, A] noise to use as g instead of drawing gumbel_scale * Gumbel(0, 1).
      gumbel_scale: 0 makes the search deterministic.
      max_considered_actions: m = min(this, number of valid actions) actions enter halving.
      c_visit, c_scale: sigma(q) = (c_visit + max N) * c_scale * q on min-max rescaled Q.
    pUCT only:
      pb_c_init, pb_c_base: exploration constants.
      dirichlet_alpha, dirichlet_fraction: root prior = (1 - f) P + f Dir(alpha) (valid actions).
      value_delta_max: floor of the min-max range used to normalise Q.

    Returns SearchOutput (see its docstring); tensors on the device of root.prior_logits.

    Tree arithmetic is float64; network outputs are read as float32. Runs under no_grad. Safe
    from several threads and from inside a recurrent_fn (each gets its own scratch memory).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "gumbel" and max_considered_actions < 1:
        raise ValueError(f"max_considered_actions must be >= 1, got {max_considered_actions}")
    with torch.no_grad(), workspace.level():
        out, _ = run(
            root,
            recurrent_fn,
            num_simulations,
            method=method,
            discount=discount,
            invalid_actions=invalid_actions,
            generator=generator,
            gumbel_noise=gumbel_noise,
            gumbel_scale=gumbel_scale,
            max_considered_actions=max_considered_actions,
            c_visit=c_visit,
            c_scale=c_scale,
            pb_c_init=pb_c_init,
            pb_c_base=pb_c_base,
            dirichlet_alpha=dirichlet_alpha,
            dirichlet_fraction=dirichlet_fraction,
            value_delta_max=value_delta_max,
        )
    return out


def _host_array(x: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu").numpy(), dtype=dtype)


def _check_root(root: Root, num_simulations: int) -> tuple[int, int]:
    logits, value = root.prior_logits, root.value
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("root.prior_logits must be a float tensor [B, A]")
    num_roots, num_actions = logits.shape
    if num_roots < 1 or num_actions < 1:
        raise ValueError(f"root.prior_logits must be non-empty [B, A], got {tuple(logits.shape)}")
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (num_roots,):
        raise ValueError(f"root.value must be a tensor [B] = [{num_roots}]")
    if not isinstance(num_simulations, int) or num_simulations < 0:
        raise ValueError(f"num_simulations must be an int >= 0, got {num_simulations!r}")
    return num_roots, num_actions


def _invalid_mask(invalid_actions, num_roots: int, num_actions: int) -> np.ndarray:
    if invalid_actions is None:
        return np.zeros((num_roots, num_actions), dtype=np.bool_)
    if tuple(invalid_actions.shape) != (num_roots, num_actions):
        raise ValueError(
            f"invalid_actions must be bool [B, A] = [{num_roots}, {num_actions}], got "
            f"{tuple(invalid_actions.shape)}"
        )
    invalid = _host_array(invalid_actions.bool(), np.bool_)
    if invalid.all(axis=1).any():
        raise ValueError(
            "every root needs at least one valid action (invalid_actions row all True)"
        )
    return invalid


def _gumbel(noise, scale, generator, num_roots, num_actions) -> np.ndarray:
    if noise is not None:
        if tuple(noise.shape) != (num_roots, num_actions):
            raise ValueError(f"gumbel_noise must be [B, A] = [{num_roots}, {num_actions}]")
        return _host_array(noise, np.float64)
    if scale == 0.0:
        return np.zeros((num_roots, num_actions), dtype=np.float64)
    device = generator.device if generator is not None else torch.device("cpu")
    # -log(Exp(1)) ~ Gumbel(0, 1); fresh draws on every call.
    exp = torch.empty((num_roots, num_actions), dtype=torch.float64, device=device)
    g = _host_array(exp.exponential_(generator=generator), np.float64)
    np.maximum(g, np.finfo(np.float64).tiny, out=g)
    np.log(g, out=g)
    g *= -scale
    return g


def _dirichlet(alpha, valid: np.ndarray, generator) -> np.ndarray:
    """Dir(alpha) over each root's valid actions (0 on invalid ones): float64 [B, A]."""
    device = generator.device if generator is not None else torch.device("cpu")
    conc = torch.full(valid.shape, float(alpha), dtype=torch.float64, device=device)
    gammas = _host_array(torch._standard_gamma(conc, generator=generator), np.float64)
    gammas = np.where(valid, gammas, 0.0)
    total = gammas.sum(axis=1, keepdims=True)
    uniform = valid / valid.sum(axis=1, keepdims=True)
    return np.where(total > 0, gammas / np.where(total > 0, total, 1.0), uniform)


def _host_store(leaves: list[torch.Tensor]) -> bool:
    """Whether the embeddings live in the kernels' byte store (all leaves on the CPU)."""
    return all(leaf.is_cpu for leaf in leaves)


def _seeds(generator, num_roots: int) -> np.ndarray:
    if generator is None:
        return np.zeros(num_roots, dtype=np.uint64)
    draws = torch.randint(
        -(2**63), 2**63 - 1, (num_roots,), dtype=torch.int64, generator=generator,
        device=generator.device,
    )  # fmt: skip
    return _host_array(draws, np.int64).view(np.uint64)


def _net_pointers(step: Any, num_roots: int, num_actions: int):
    """(keepalive, r_ptr, r_stride, v_ptr, v_stride, l_ptr, l_stride0, l_stride1) of float32 CPU
    views of recurrent_fn's outputs; device outputs travel in one packed transfer."""
    if not isinstance(step, Step):
        raise TypeError(f"recurrent_fn must return (Step, embedding), got {type(step).__name__}")
    r, v, lg = step.reward, step.value, step.prior_logits
    if r.shape != (num_roots,) or v.shape != (num_roots,) or lg.shape != (num_roots, num_actions):
        raise ValueError(
            f"recurrent_fn's Step must hold reward [B], value [B], prior_logits [B, A] with "
            f"B={num_roots}, A={num_actions}; got {tuple(r.shape)}, {tuple(v.shape)}, "
            f"{tuple(lg.shape)}"
        )
    if r.is_cpu and v.is_cpu and lg.is_cpu:
        if r.dtype is not torch.float32:
            r = r.float()
        if v.dtype is not torch.float32:
            v = v.float()
        if lg.dtype is not torch.float32:
            lg = lg.float()
        ls0, ls1 = lg.stride()
        return (
            (r, v, lg),
            r.data_ptr(), r.stride(0), v.data_ptr(), v.stride(0), lg.data_ptr(), ls0, ls1,
        )  # fmt: skip
    packed = torch.cat((r.reshape(num_roots, 1), v.reshape(num_roots, 1), lg), 1)
    packed = packed.to("cpu", torch.float32).contiguous()
    base, width = packed.data_ptr(), num_actions + 2
    return packed, base, width, base + 4, width, base + 8, width, 1


def run(
    root: Root,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    *,
    method: str,
    discount: float,
    invalid_actions,
    generator,
    gumbel_noise,
    gumbel_scale: float,
    max_considered_actions: int,
    c_visit: float,
    c_scale: float,
    pb_c_init: float,
    pb_c_base: float,
    dirichlet_alpha: float,
    dirichlet_fraction: float,
    value_delta_max: float,
) -> tuple[SearchOutput, Tree]:
    """`search` without the no_grad wrapper; also returns the tree (for tests and debugging)."""
    num_roots, num_actions = _check_root(root, num_simulations)
    S = num_simulations
    logits = _host_array(root.prior_logits, np.float64)
    value = _host_array(root.value, np.float64)
    invalid = _invalid_mask(invalid_actions, num_roots, num_actions)

    num_fields = gumbel_kernels.NUM_FIELDS if method == "gumbel" else puct_kernels.NUM_FIELDS
    tree = Tree.allocate(num_roots, S + 1, num_actions, num_fields)
    minmax = np.empty((num_roots, 2), dtype=np.float64)
    num_considered = np.empty(num_roots, dtype=np.int32)
    use_noise = method == "puct" and dirichlet_fraction > 0.0
    noise = _dirichlet(dirichlet_alpha, ~invalid, generator) if use_noise else _NO_NOISE
    init_roots(
        *tree.arrays(), logits, value, invalid, noise, dirichlet_fraction if use_noise else 0.0,
        method == "gumbel", int(max_considered_actions), num_considered, minmax,
    )  # fmt: skip
    if method == "gumbel":
        noise = _gumbel(gumbel_noise, gumbel_scale, generator, num_roots, num_actions)
        table = considered_visits_table(int(max_considered_actions), S)
        params = np.array([discount, c_visit, c_scale], dtype=np.float64)
        kernel = gumbel_kernels.simulate
        head = (*tree.arrays(), invalid, noise, table, num_considered, params)
    else:
        rng = _seeds(generator, num_roots)
        params = puct_kernels.make_params(
            S, discount, pb_c_init, pb_c_base, value_delta_max, generator is not None
        )
        kernel = puct_kernels.simulate
        head = (*tree.arrays(), invalid, minmax, rng, params)

    leaves, _ = flatten(root.embedding)
    on_host = _host_store(leaves)
    store_cls = HostEmbeddings if on_host else DeviceEmbeddings
    store = store_cls(root.embedding, num_roots, S)
    sel_t = torch.empty((S, 2, num_roots), dtype=torch.int64)
    sel = sel_t.numpy()
    tail = (sel[:, 0], sel[:, 1], store.store, store.leaf_nbytes, store.leaf_off)
    ptrs, batch_base = store.leaf_ptrs, store.batch_base
    no_net = (0, 0, 0, 0, 0, 0, 0)

    if on_host and store.single:
        # The common case, kept lean: one latent tensor, float32 CPU outputs. Anything else
        # (other dtypes or devices, strides, errors) goes through the general helpers.
        actions = sel_t[:, 1].unbind(0)
        batches = store.rows[0]
        shape, dtype = store.leaf_shape, store.leaf_dtype
        b_shape, l_shape, f32 = (num_roots,), (num_roots, num_actions), torch.float32
        kernel(0, *head, *no_net, *tail, ptrs, batch_base)
        for s in range(S):
            step, nxt = recurrent_fn(batches[s], actions[s])
            if (
                type(nxt) is torch.Tensor
                and nxt.dtype is dtype
                and nxt.is_cpu
                and nxt.shape == shape
                and nxt.is_contiguous()
            ):
                ptrs[0] = nxt.data_ptr()
            else:
                store.put(nxt)
            if type(step) is Step:
                r, v, lg = step.reward, step.value, step.prior_logits
                if (
                    r.dtype is f32
                    and v.dtype is f32
                    and lg.dtype is f32
                    and r.is_cpu
                    and v.is_cpu
                    and lg.is_cpu
                    and r.shape == b_shape
                    and v.shape == b_shape
                    and lg.shape == l_shape
                ):
                    kernel(
                        s + 1, *head, r.data_ptr(), r.stride(0), v.data_ptr(), v.stride(0),
                        lg.data_ptr(), *lg.stride(), *tail, ptrs, batch_base,
                    )  # fmt: skip
                    continue
            net = _net_pointers(step, num_roots, num_actions)
            kernel(s + 1, *head, *net[1:], *tail, ptrs, batch_base)
    elif on_host:
        actions = sel_t[:, 1].unbind(0)
        kernel(0, *head, *no_net, *tail, ptrs, batch_base)
        for s in range(S):
            step, nxt = recurrent_fn(store.batch(s), actions[s])
            store.put(nxt)
            net = _net_pointers(step, num_roots, num_actions)
            kernel(s + 1, *head, *net[1:], *tail, ptrs, batch_base)
    else:
        kernel(0, *head, *no_net, *tail, ptrs, batch_base)
        rows = sel_t.unbind(0)
        act_device = leaves[0].device
        for s in range(S):
            index = store.index(rows[s])
            step, nxt = recurrent_fn(store.batch_from(index), index[act_device][1])
            store.put_at(s + 1, nxt)
            net = _net_pointers(step, num_roots, num_actions)
            kernel(s + 1, *head, *net[1:], *tail, ptrs, batch_base)

    visit_counts = np.empty((num_roots, num_actions), dtype=np.int64)
    qvalues = np.empty((num_roots, num_actions), dtype=np.float64)
    weights = np.empty((num_roots, num_actions), dtype=np.float64)
    root_value = np.empty(num_roots, dtype=np.float64)
    action = np.empty(num_roots, dtype=np.int64)
    if method == "gumbel":
        gumbel_kernels.finish(
            tree.children, tree.edges, tree.raw_value, tree.root, invalid, noise, params,
            visit_counts, qvalues, weights, root_value, action,
        )  # fmt: skip
    else:
        puct_kernels.finish(
            tree.children, tree.edges, tree.root, invalid, rng, params, visit_counts, qvalues,
            weights, root_value, action,
        )  # fmt: skip

    device = root.prior_logits.device
    fdtype = root.prior_logits.dtype if root.prior_logits.is_floating_point() else torch.float32
    vdtype = root.value.dtype if root.value.is_floating_point() else torch.float32
    out = SearchOutput(
        action=torch.from_numpy(action).to(device),
        action_weights=torch.from_numpy(weights).to(device, fdtype),
        visit_counts=torch.from_numpy(visit_counts).to(device),
        root_value=torch.from_numpy(root_value).to(device, vdtype),
        qvalues=torch.from_numpy(qvalues).to(device, vdtype),
    )
    return out, tree
