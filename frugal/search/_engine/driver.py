"""The search driver: inputs to kernel arrays, the simulation loop, kernel outputs to tensors.

Division of labour per simulation: one numba kernel call backs up the previous simulation's new
nodes and selects the next leaf edge of every root (O(depth * A) per root, all on the CPU, no
Python loop over roots); `recurrent_fn` runs once on the batch of B parent embeddings, on
whatever device they live; only indices [2, B] and the outputs reward [B], discount [B], value
[B], logits [B, A] cross devices.

What depends only on a search's shape (tree arrays, embedding byte store, parameter tables, the
kernels' frame) comes from a cached Plan (plan.py), so besides its simulations a search costs the
conversion of its inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from frugal.search._engine import frame as fr
from frugal.search._engine import workspace
from frugal.search._engine.embeddings import DeviceEmbeddings, flatten, fresh
from frugal.search._engine.plan import plan_for
from frugal.search._engine.tree import Tree
from frugal.search.types import GumbelParams, PuctParams, Root, SearchOutput, Step

RecurrentFn = Callable[[Any, torch.Tensor], tuple[Step, Any]]


# Float dtypes the kernels read and write as they are: root logits and values are widened to
# float64 exactly, and a float64 -> float32 output store rounds as a later tensor conversion would.
# Other dtypes go through float64 copies.
_NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}


def _host_array(x: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype)


def _set_root_input(frame: np.ndarray, slot: int, x: torch.Tensor) -> torch.Tensor:
    """Point the frame's row `slot` at root logits or values as the first kernel call reads
    them: the tensor's own memory when it is a contiguous float32 or float64 CPU tensor (the
    kernel widens float32 exactly), else a float64 copy. Returns what must stay alive until that
    call."""
    dtype = x.dtype
    if not (x.is_cpu and (dtype is torch.float32 or dtype is torch.float64) and x.is_contiguous()):
        x = x.detach().to("cpu", torch.float64).contiguous()
        dtype = torch.float64
    frame[slot, 0] = x.data_ptr()
    frame[slot, fr.WIDE] = dtype is torch.float64
    return x


def _output_array(shape: tuple[int, ...], dtype: torch.dtype, on_cpu: bool) -> np.ndarray:
    """Uninitialised buffer for a float output: in its final dtype when it stays on the CPU."""
    return np.empty(shape, dtype=_NUMPY_FLOATS.get(dtype, np.float64) if on_cpu else np.float64)


def _output_tensor(x: np.ndarray, dtype: torch.dtype, device: torch.device, on_cpu: bool):
    t = torch.from_numpy(x)
    if on_cpu and t.dtype is dtype:
        return t
    return t.to(device, dtype)


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


def _fill_invalid(plan, invalid_actions) -> None:
    """plan.invalid (bool [B, A]) = the root mask, all False without one."""
    out = plan.invalid
    if invalid_actions is None:
        if not plan.invalid_clear:
            out.fill(False)
            plan.invalid_clear = True
        return
    plan.invalid_clear = False
    if tuple(invalid_actions.shape) != out.shape:
        raise ValueError(
            f"invalid_actions must be bool [B, A] = [{out.shape[0]}, {out.shape[1]}], got "
            f"{tuple(invalid_actions.shape)}"
        )
    invalid = _host_array(invalid_actions.bool(), np.bool_)
    if invalid.all(axis=1).any():
        raise ValueError(
            "every root needs at least one valid action (invalid_actions row all True)"
        )
    out[...] = invalid


def _fill_gumbel(out: np.ndarray, draws: torch.Tensor, noise, scale, generator) -> None:
    """out (float64 [B, A]; draws: its tensor view) = the given noise, or scale * Gumbel(0, 1)
    draws."""
    if noise is not None:
        if tuple(noise.shape) != out.shape:
            raise ValueError(f"gumbel_noise must be [B, A] = [{out.shape[0]}, {out.shape[1]}]")
        out[...] = _host_array(noise, np.float64)
        return
    if scale == 0.0:
        out.fill(0.0)
        return
    # -log(Exp(1)) ~ Gumbel(0, 1); fresh draws on every call, straight into `out` on the CPU.
    if _on_cpu(generator):
        g = out
        draws.exponential_(generator=generator)
    else:
        exp = torch.empty(out.shape, dtype=torch.float64, device=generator.device)
        g = _host_array(exp.exponential_(generator=generator), np.float64)
    np.maximum(g, np.finfo(np.float64).tiny, out=g)
    np.log(g, out=g)
    np.multiply(g, -scale, out=out)


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


def _fill_seeds(out: np.ndarray, draws: torch.Tensor, generator) -> None:
    """out (uint64 [B]; draws: its int64 tensor view) = per-root generator seeds drawn from
    `generator` (zeros without one). The draws are torch.randint(-2**63, 2**63 - 1)'s; random_
    makes them with a cheaper call."""
    if generator is None:
        out.fill(0)
        return
    low, high = -(2**63), 2**63 - 1
    if _on_cpu(generator):
        draws.random_(low, high, generator=generator)
        return
    draws = torch.empty(out.shape, dtype=torch.int64, device=generator.device)
    draws.random_(low, high, generator=generator)
    out[...] = _host_array(draws, np.int64).view(np.uint64)


def _on_cpu(generator: torch.Generator | None) -> bool:
    """Whether the generator draws on the CPU (None: torch's default CPU generator)."""
    return generator is None or generator.device.type == "cpu"


def _net_pointers(step: Any, num_roots: int, num_actions: int):
    """(keepalive, r_ptr, d_ptr, d_wide, v_ptr, l_ptr) of C-contiguous CPU copies (where need
    be) of recurrent_fn's outputs: float32, the discount float64 when it is (d_wide) and float32
    otherwise. Device outputs travel in one packed transfer (the discount apart)."""
    if not isinstance(step, Step):
        raise TypeError(f"recurrent_fn must return (Step, embedding), got {type(step).__name__}")
    r, d, v, lg = step.reward, step.discount, step.value, step.prior_logits
    if r.shape != (num_roots,) or v.shape != (num_roots,) or lg.shape != (num_roots, num_actions):
        raise ValueError(
            f"recurrent_fn's Step must hold reward [B], value [B], prior_logits [B, A] with "
            f"B={num_roots}, A={num_actions}; got {tuple(r.shape)}, {tuple(v.shape)}, "
            f"{tuple(lg.shape)}"
        )
    if not isinstance(d, torch.Tensor) or d.shape != (num_roots,):
        got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
        raise ValueError(
            f"recurrent_fn's Step must hold discount [B] with B={num_roots}, got {got}"
        )
    d_wide = d.dtype is torch.float64
    d = d.to("cpu", torch.float64 if d_wide else torch.float32).contiguous()
    if r.is_cpu and v.is_cpu and lg.is_cpu:
        r, v, lg = (x.to(torch.float32).contiguous() for x in (r, v, lg))
        return (r, d, v, lg), r.data_ptr(), d.data_ptr(), d_wide, v.data_ptr(), lg.data_ptr()
    packed = torch.cat((r.reshape(-1), v.reshape(-1), lg.reshape(-1)))
    packed = packed.to("cpu", torch.float32).contiguous()
    base = packed.data_ptr()
    return (packed, d), base, d.data_ptr(), d_wide, base + 4 * num_roots, base + 8 * num_roots


def _outputs(plan, root: Root) -> SearchOutput:
    """The root statistics, computed by the method's finish kernel into fresh tensors."""
    num_roots, num_actions = plan.invalid.shape
    logits, value = root.prior_logits, root.value
    f32 = torch.float32
    if logits.is_cpu and logits.dtype is f32 and value.dtype is f32:  # the common case, lean
        shape = (num_roots, num_actions)
        visit_counts, action = np.empty(shape, np.int64), np.empty(num_roots, np.int64)
        qvalues, weights = np.empty(shape, np.float32), np.empty(shape, np.float32)
        root_value = np.empty(num_roots, np.float32)
        plan.finish(plan.frame, visit_counts, qvalues, weights, root_value, action)
        tensor = torch.from_numpy
        return SearchOutput(
            action=tensor(action),
            action_weights=tensor(weights),
            visit_counts=tensor(visit_counts),
            root_value=tensor(root_value),
            qvalues=tensor(qvalues),
        )
    device, on_cpu = logits.device, logits.is_cpu
    fdtype = logits.dtype if logits.is_floating_point() else torch.float32
    vdtype = value.dtype if value.is_floating_point() else torch.float32
    visit_counts = np.empty((num_roots, num_actions), dtype=np.int64)
    qvalues = _output_array((num_roots, num_actions), vdtype, on_cpu)
    weights = _output_array((num_roots, num_actions), fdtype, on_cpu)
    root_value = _output_array((num_roots,), vdtype, on_cpu)
    action = np.empty(num_roots, dtype=np.int64)
    plan.finish(plan.frame, visit_counts, qvalues, weights, root_value, action)
    long = torch.int64
    return SearchOutput(
        action=_output_tensor(action, long, device, on_cpu),
        action_weights=_output_tensor(weights, fdtype, device, on_cpu),
        visit_counts=_output_tensor(visit_counts, long, device, on_cpu),
        root_value=_output_tensor(root_value, vdtype, device, on_cpu),
        qvalues=_output_tensor(qvalues, vdtype, device, on_cpu),
    )


_NO_NET = (0, 0, 0, False, 0, 0)  # e_ptr, r_ptr, d_ptr, d_wide, v_ptr, l_ptr


def _single_host_loop(kernel, frame, store, recurrent_fn, sel_t, num_actions) -> None:
    """The simulations in the common case, kept lean: one latent tensor, contiguous float32
    (the discount float32 or float64) CPU outputs. Anything else (other dtypes or devices,
    strides, errors) goes through the general helpers."""
    num_sims, _, num_roots = sel_t.shape
    actions = sel_t[:, 1].unbind(0)
    batches = store.rows[0]
    shape, dtype = store.leaf_shape, store.leaf_dtype
    b_shape, l_shape = (num_roots,), (num_roots, num_actions)
    f32, f64, tensor = torch.float32, torch.float64, torch.Tensor
    kernel(0, frame, *_NO_NET)
    for s in range(num_sims):
        step, nxt = recurrent_fn(batches[s], actions[s])
        if (
            type(nxt) is tensor
            and nxt.dtype is dtype
            and nxt.is_cpu
            and nxt.shape == shape
            and nxt.is_contiguous()
        ):
            e_ptr = nxt.data_ptr()
        else:
            store.put(nxt)
            e_ptr = 0
        if type(step) is Step:
            r, d, v, lg = step.reward, step.discount, step.value, step.prior_logits
            if type(d) is tensor:
                d_wide = d.dtype is f64
                if (
                    r.dtype is f32
                    and v.dtype is f32
                    and lg.dtype is f32
                    and (d_wide or d.dtype is f32)
                    and r.is_cpu
                    and d.is_cpu
                    and v.is_cpu
                    and lg.is_cpu
                    and r.shape == b_shape
                    and d.shape == b_shape
                    and v.shape == b_shape
                    and lg.shape == l_shape
                    and r.is_contiguous()
                    and d.is_contiguous()
                    and v.is_contiguous()
                    and lg.is_contiguous()
                ):
                    kernel(
                        s + 1, frame, e_ptr, r.data_ptr(), d.data_ptr(), d_wide, v.data_ptr(),
                        lg.data_ptr(),
                    )  # fmt: skip
                    continue
        net = _net_pointers(step, num_roots, num_actions)
        kernel(s + 1, frame, e_ptr, *net[1:])


def _host_loop(kernel, frame, store, recurrent_fn, sel_t, num_actions) -> None:
    """The simulations with a nest of CPU embeddings (gathered and stored by the kernels)."""
    num_sims, _, num_roots = sel_t.shape
    actions = sel_t[:, 1].unbind(0)
    kernel(0, frame, *_NO_NET)
    for s in range(num_sims):
        step, nxt = recurrent_fn(store.batch(s), actions[s])
        store.put(nxt)
        net = _net_pointers(step, num_roots, num_actions)
        kernel(s + 1, frame, 0, *net[1:])


def _device_loop(kernel, frame, root, recurrent_fn, sel_t, num_actions) -> None:
    """The simulations with embeddings off the CPU: torch gathers them on their device."""
    num_sims, _, num_roots = sel_t.shape
    store = DeviceEmbeddings(root.embedding, num_roots, num_sims)
    leaves, _ = flatten(root.embedding)
    act_device = leaves[0].device
    rows = sel_t.unbind(0)
    kernel(0, frame, *_NO_NET)
    for s in range(num_sims):
        index = store.index(rows[s])
        step, nxt = recurrent_fn(store.batch_from(index), index[act_device][1])
        store.put_at(s + 1, nxt)
        net = _net_pointers(step, num_roots, num_actions)
        kernel(s + 1, frame, 0, *net[1:])


def run(
    root: Root,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    params: PuctParams | GumbelParams,
    *,
    invalid_actions=None,
    generator=None,
    gumbel_noise=None,
) -> tuple[SearchOutput, Tree]:
    """One search, its method given by the params' type (frugal.search.puct / gumbel document
    the arguments). Also returns the tree, for tests and debugging: it stays valid until the
    next search on this thread and nesting level."""
    if torch.is_grad_enabled():
        with torch.no_grad(), workspace.level():
            return _run(root, recurrent_fn, num_simulations, params, invalid_actions, generator,
                        gumbel_noise)  # fmt: skip
    with workspace.level():
        return _run(root, recurrent_fn, num_simulations, params, invalid_actions, generator,
                    gumbel_noise)  # fmt: skip


def _run(root, recurrent_fn, num_simulations, params, invalid_actions, generator, gumbel_noise):
    num_roots, num_actions = _check_root(root, num_simulations)
    S = num_simulations
    gumbel = isinstance(params, GumbelParams)
    if gumbel:
        method = "gumbel"
        constants = (
            params.c_visit, params.c_scale, params.max_considered_actions, params.rescale == "tree",
            params.value_delta_max,
        )  # fmt: skip
    elif isinstance(params, PuctParams):
        method = "puct"
        constants = (params.pb_c_init, params.pb_c_base, params.value_delta_max,
                     generator is not None)  # fmt: skip
    else:
        raise TypeError(f"params must be PuctParams or GumbelParams, got {type(params).__name__}")
    emb = root.embedding
    on_host = _host_store([emb] if type(emb) is torch.Tensor else flatten(emb)[0])
    plan = plan_for(method, num_roots, S, num_actions, emb, on_host, constants)
    tree, invalid, frame = plan.tree, plan.invalid, plan.frame
    # Read by the first kernel call, which initialises the roots.
    inputs = (
        _set_root_input(frame, fr.ROOT_LOGITS, root.prior_logits),
        _set_root_input(frame, fr.ROOT_VALUE, root.value),
    )
    _fill_invalid(plan, invalid_actions)
    if gumbel:
        _fill_gumbel(plan.gumbel, plan.gumbel_draws, gumbel_noise, params.gumbel_scale, generator)
    else:
        fraction = params.dirichlet_fraction
        if fraction > 0.0:
            plan.noise[...] = _dirichlet(params.dirichlet_alpha, ~invalid, generator)
        plan.search_args[fr.P_NOISE_FRACTION] = fraction
        _fill_seeds(plan.rng, plan.rng_draws, generator)

    sel_t = fresh((S, 2, num_roots), torch.int64)
    plan.start(sel_t)
    kernel, store = plan.simulate, plan.store
    if store is None:
        _device_loop(kernel, frame, root, recurrent_fn, sel_t, num_actions)
    else:
        store.start(root.embedding)
        try:
            if store.single:
                _single_host_loop(kernel, frame, store, recurrent_fn, sel_t, num_actions)
            else:
                _host_loop(kernel, frame, store, recurrent_fn, sel_t, num_actions)
        finally:
            store.stop()
    del inputs  # alive until here: the first kernel call read them

    return _outputs(plan, root), tree
