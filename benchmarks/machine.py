"""One line describing the machine a benchmark ran on (printed by every benchmark)."""

from __future__ import annotations

import os
import platform
import time


def describe() -> str:
    import torch

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{time.strftime('%Y-%m-%d')}  {cpu}, {os.cpu_count()} cores, {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
