"""Numeric precision of the network passes, the same setting in every agent.

`agent.precision` is `auto`, `fp32` or `bf16`. `bf16` runs the forward passes of acting, targets
and updates under bf16 autocast; losses, targets, the optimiser state and the master weights stay
fp32 (each agent casts network outputs back with `.float()` before any loss). `auto` picks bf16
where the hardware computes it natively and it pays: on CUDA devices with bf16 support, and on
CPUs with AVX-512 BF16 or AMX for networks with convolutions over pixels (small fully connected
networks on a CPU are as fast or faster in fp32, so vector observations stay fp32); fp32
elsewhere (an AVX2-only CPU emulates bf16 and is many times slower).

`resolve_precision(name, device, pixels=...)` is the one place that decides; `precision_reason`
says why, in words, for config.yaml.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

import numpy as np
import torch

from frugal.errors import FrugalError

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise FrugalError(f"agent.precision must be auto, fp32 or bf16, got '{name}'")


def _native_bf16(device: torch.device, flags: frozenset[str] | None) -> tuple[bool, str]:
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"CUDA device {torch.cuda.get_device_name(device)} supports bf16"
        return False, f"CUDA device {torch.cuda.get_device_name(device)} lacks bf16"
    if device.type != "cpu":
        return False, f"device {device.type}: no bf16 rule, fp32"
    have = sorted(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))
    if have:
        return True, "CPU flags " + " ".join(have)
    return False, "CPU without avx512_bf16 or amx_bf16"


def resolve_precision(
    name: str,
    device: torch.device | str,
    *,
    pixels: bool = True,
    flags: frozenset[str] | None = None,
) -> str:
    """'auto' | 'fp32' | 'bf16' -> 'fp32' or 'bf16' for networks on `device`; `pixels`: the
    agent's networks start with convolutions over pixels; `flags` replaces the CPU's flags."""
    check_precision(name)
    if name != "auto":
        return name
    device = torch.device(device)
    native, _ = _native_bf16(device, flags)
    if not native:
        return "fp32"
    return "bf16" if pixels or device.type == "cuda" else "fp32"


def precision_reason(
    name: str,
    device: torch.device | str,
    *,
    pixels: bool = True,
    flags: frozenset[str] | None = None,
) -> str:
    """Why `resolve_precision` chose what it did, one line (for config.yaml)."""
    chosen = resolve_precision(name, device, pixels=pixels, flags=flags)
    if name != "auto":
        return f"{chosen}: set explicitly"
    device = torch.device(device)
    native, why = _native_bf16(device, flags)
    if native and chosen == "fp32":
        why += "; vector observations: small networks are faster in fp32 on a CPU"
    return f"{chosen}: auto, {why}"


BF16_CPU_MIN_BATCH = 32  # below this a CPU pass stays fp32: casts cost more than they save


def autocast(
    precision: str, device: torch.device, batch: int | None = None
) -> AbstractContextManager:
    """The context for network passes at a resolved precision ('fp32' is a no-op). `batch`: the
    pass's batch size; on a CPU, passes over fewer than BF16_CPU_MIN_BATCH samples (acting over
    a few envs) run fp32 (measured slower in bf16, BENCHMARKS.md "Speed (issue 19)")."""
    enabled = precision == "bf16"
    if enabled and device.type == "cpu" and batch is not None:
        enabled = batch >= BF16_CPU_MIN_BATCH
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def to_device(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host array to `device` as it is (uint8 frames stay uint8, to be scaled there): through
    pinned memory with a non-blocking copy on CUDA, without a copy on the CPU."""
    t = torch.as_tensor(x)
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)
