"""Atomic full-state checkpoints without pickle.

A state is a nested dict whose leaves are tensors, numpy arrays or JSON values. Tensors and
arrays go to `tensors.pt` (read back with `torch.load(weights_only=True)`, which executes no
code); everything else goes to `state.json` with references to the tensors. A checkpoint is
written into its own new directory and only then published by atomically replacing the small
`latest` pointer file, so a crash at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from frugal.errors import FrugalError

FORMAT = 1
POINTER = "latest"


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__array__": path}
    if isinstance(value, dict):
        if not all(isinstance(k, str | int) for k in value):
            raise TypeError(f"checkpoint keys must be str or int at {path}")
        # JSON keys are strings: remember int keys (optimizer states use them)
        return {"__dict__": [[k, _flatten(v, f"{path}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        items = [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot checkpoint {type(value).__name__} at {path}")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__array__" in value:
        return tensors[value["__array__"]].numpy()
    if "__tuple__" in value:
        return tuple(_unflatten(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _unflatten(v, tensors) for k, v in value["__dict__"]}
    raise ValueError(f"unknown entry {value!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory: str | Path, name: str, state: dict[str, Any], keep: bool = False) -> Path:
    """Write `state` as checkpoint `name` under `directory` and make it the latest.

    Older checkpoints are removed after the new one is published, unless `keep`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    partial = directory / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    try:
        partial.mkdir()
        torch.save(tensors, partial / "tensors.pt")
        with open(partial / "state.json", "w") as f:
            json.dump({"format": FORMAT, "state": tree}, f)
            f.flush()
            os.fsync(f.fileno())
        with open(partial / "tensors.pt", "rb+") as f:
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as e:  # disk full, quota, read-only: torch says RuntimeError
        shutil.rmtree(partial, ignore_errors=True)
        kept = f"the previous checkpoint ({_pointed(directory)}) is kept"
        raise FrugalError(f"cannot write checkpoint {final} ({_first_line(e)}); {kept}") from None
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    _fsync_dir(directory)
    pointer_tmp = directory / f".{POINTER}.tmp"
    pointer_tmp.write_text(name + "\n")
    os.replace(pointer_tmp, directory / POINTER)
    _fsync_dir(directory)
    if not keep:
        for old in directory.iterdir():
            if old.is_dir() and old.name != name and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
    return final


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _pointed(directory: Path) -> str:
    try:
        return (directory / POINTER).read_text().strip() or "none"
    except OSError:
        return "none"


def remove_partial(directory: str | Path) -> None:
    """Remove checkpoints that a killed process left half-written (they were never published)."""
    directory = Path(directory)
    if directory.is_dir():
        for leftover in directory.glob(".*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)


def latest(directory: str | Path) -> Path:
    directory = Path(directory)
    pointer = directory / POINTER
    if not pointer.is_file():
        raise FrugalError(f"no checkpoint in {directory} (expected a '{POINTER}' file there)")
    name = pointer.read_text().strip()
    if not name:
        raise FrugalError(f"checkpoint pointer {pointer} is empty; it should name a checkpoint")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise FrugalError(
            f"checkpoint pointer {pointer} names '{name}', outside {directory}; refusing it"
        )
    target = directory / name
    if not target.is_dir():
        raise FrugalError(f"checkpoint pointer {pointer} names a missing directory {target.name}")
    return target


def load_latest(directory: str | Path, attempts: int = 5) -> dict[str, Any]:
    """The latest checkpoint, read consistently while a trainer may publish a newer one and
    remove this one: a read that fails because the pointer moved on is retried on the new one."""
    for _ in range(attempts - 1):
        target = latest(directory)
        try:
            return load(target)
        except FrugalError:
            if latest(directory) == target:
                raise
    return load(latest(directory))


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint directory; any damage is reported as one FrugalError line."""
    path = Path(path)
    try:
        with open(path / "state.json") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, this frugal reads {FORMAT}")
        tensors = torch.load(path / "tensors.pt", map_location="cpu", weights_only=True)
        return _unflatten(meta["state"], tensors)
    except FileNotFoundError as e:
        raise FrugalError(
            f"checkpoint {path} is incomplete: {Path(e.filename).name} missing"
        ) from None
    except pickle.UnpicklingError:
        raise FrugalError(
            f"checkpoint {path} cannot be read: tensors.pt holds pickled objects besides tensors, "
            "and frugal never executes code from a checkpoint"
        ) from None
    except Exception as e:  # corrupt JSON, truncated zip ...
        raise FrugalError(f"checkpoint {path} cannot be read ({_first_line(e)})") from None
