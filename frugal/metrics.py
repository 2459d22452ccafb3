"""Where a run's numbers go: metrics.jsonl (one JSON object per log point), TensorBoard scalars
and a console progress display."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from frugal.runs import METRICS_FILE


class MetricsWriter:
    """Appends log points to metrics.jsonl and TensorBoard.

    `offset()` is saved in each checkpoint; a resumed run truncates the file back to it (a fresh
    start to 0) and TensorBoard drops its events from `purge_step` on, so the log never holds
    points from work that the checkpoint does not contain."""

    def __init__(self, run_dir: Path, offset: int, purge_step: int):
        self.path = run_dir / METRICS_FILE
        if self.path.exists():
            with open(self.path, "rb+") as f:
                f.truncate(offset)
        self._file = open(self.path, "a")  # noqa: SIM115 - kept open for the run
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(run_dir), purge_step=purge_step)

    def offset(self) -> int:
        self._file.flush()
        return self._file.tell()

    def write(self, point: dict[str, Any]) -> None:
        self._file.write(json.dumps(point) + "\n")
        self._file.flush()
        step = point["env_step"]
        for key, value in point.items():
            if key not in ("env_step",) and isinstance(value, int | float) and "/" in key:
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        self._tb.close()


class Progress:
    """One-line live display: steps, steps/s, updates/s, last returns, ETA, and where work runs
    on workers, their busy share since the last display and the staleness in effect. Falls back
    to periodic plain lines when stderr is not a terminal."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool):
        self.total = total_steps
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self._t0 = time.perf_counter()
        self._last_print = 0.0
        self._start_step = start_step
        self._busy: dict[str, float] = {}  # busy seconds of each kind of worker at the last print
        self._bar = None
        if self.live:
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} steps"),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._task = self._bar.add_task(
                "train", total=total_steps, completed=start_step, info=""
            )
            self._bar.start()

    def update(
        self,
        env_step: int,
        updates: int,
        start_updates: int,
        last_return: float | None,
        busy: dict[str, tuple[int, float]] | None = None,
        staleness: str = "",
    ):
        """`busy`: for each kind of worker, (how many, their busy seconds so far, summed)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_print < (0.5 if self.live else 30.0) and env_step < self.total:
            return
        since = now - (self._last_print or self._t0)
        self._last_print = now
        elapsed = max(now - self._t0, 1e-9)
        sps = (env_step - self._start_step) / elapsed
        ups = (updates - start_updates) / elapsed
        eta = (self.total - env_step) / sps if sps > 0 else math.inf
        ret = "-" if last_return is None else f"{last_return:.1f}"
        info = f"{sps:,.0f} steps/s  {ups:,.1f} updates/s  return {ret}"
        if math.isfinite(eta):  # no ETA before there is a rate to base it on
            info += f"  ETA {_duration(eta)}"
        shares = []
        for kind, (count, seconds) in (busy or {}).items():
            text = f"{kind} {count}x"
            if kind in self._busy:  # a share since the last display
                share = (seconds - self._busy[kind]) / max(since * count, 1e-9)
                text += f" {min(share, 1.0):.0%} busy"
            self._busy[kind] = seconds
            shares.append(text)
        if shares or staleness:
            info += "  [" + ", ".join(shares + ([staleness] if staleness else [])) + "]"
        if self._bar is not None:
            self._bar.update(self._task, completed=env_step, info=info)
        else:
            print(f"step {env_step:,}/{self.total:,}  {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
