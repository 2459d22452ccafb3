"""Capture and restore an environment's state as JSON, without pickle.

Walks a Gymnasium wrapper chain (or any plain Python object) and records the attributes made of
numbers, strings, numpy arrays, nested lists/tuples of those and RNGs. Restoring writes them back;
RNGs and arrays are restored in place so objects that share one RNG (MinAtar's games) keep
sharing it. Attributes of any other type (specs, spaces, sub-objects) are structural: they are
rebuilt when the env is made and need no capture.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SKIP = object()


def encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, np.random.RandomState):
        saved = value.get_state(legacy=False)
        key, pos = saved["state"]["key"].tolist(), int(saved["state"]["pos"])
        return {"__randomstate__": {**saved, "state": {"key": key, "pos": pos}}}
    if isinstance(value, np.ndarray | np.generic):
        if value.dtype.kind not in "biuf":
            return _SKIP
        array = np.asarray(value)
        return {
            "__ndarray__": array.tolist(),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "scalar": isinstance(value, np.generic),
        }
    if isinstance(value, list | tuple):
        items = [encode(v) for v in value]
        if any(i is _SKIP for i in items):
            return _SKIP
        return {"__tuple__": items} if isinstance(value, tuple) else items
    return _SKIP


def decode(state: Any, current: Any = None) -> Any:
    if isinstance(state, list):
        return [decode(s) for s in state]
    if not isinstance(state, dict):
        return state
    if "__tuple__" in state:
        return tuple(decode(s) for s in state["__tuple__"])
    if "__generator__" in state:
        rng = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        rng.bit_generator.state = state["__generator__"]
        return rng
    if "__randomstate__" in state:
        rng = current if isinstance(current, np.random.RandomState) else np.random.RandomState()
        saved = dict(state["__randomstate__"])
        saved["state"] = {
            "key": np.asarray(saved["state"]["key"], dtype=np.uint32),
            "pos": saved["state"]["pos"],
        }
        rng.set_state(saved)
        return rng
    if "__ndarray__" in state:
        array = np.array(state["__ndarray__"], dtype=np.dtype(state["dtype"])).reshape(
            state["shape"]
        )
        if state["scalar"]:
            return array[()]
        if isinstance(current, np.ndarray) and current.shape == array.shape:
            current[...] = array
            return current
        return array
    raise ValueError(f"cannot decode env state entry {state!r}")


def capture_object(obj: Any) -> dict[str, Any]:
    out = {}
    for name, value in vars(obj).items():
        if name == "env":
            continue
        encoded = encode(value)
        if encoded is not _SKIP:
            out[name] = encoded
    return out


def restore_object(obj: Any, state: dict[str, Any]) -> None:
    for name, value in state.items():
        setattr(obj, name, decode(value, getattr(obj, name, None)))


def capture_chain(env: Any) -> list[dict[str, Any]]:
    """State of every layer of a wrapper chain, outermost first, then the unwrapped env."""
    layers = []
    while True:
        layers.append(capture_object(env))
        if not hasattr(env, "env") or env.env is env:
            return layers
        env = env.env


def restore_chain(env: Any, layers: list[dict[str, Any]]) -> None:
    for state in layers:
        restore_object(env, state)
        env = getattr(env, "env", None)
