"""A run directory: `config.yaml` (who, where, under which protocol), `metrics.jsonl` (what
happened, one JSON object per log point) and `checkpoints/`. The one place that writes and reads
them back, for the Python API, the CLI and the reports alike."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from frugal.agents import agent_module
from frugal.config import Config, EnvConfig, RunConfig, from_dict
from frugal.errors import FrugalError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
VIEWER = "viewer"  # episode pages of `frugal eval --viewer`
X_KEYS = ("env_step", "update", "wall_s")
# Env settings that do not change what a score means (how the training envs are stepped).
NOT_PROTOCOL = ("id", "protocol", "num_envs", "vectorization")
_RUN_HINT = "pass a run directory (with config.yaml and metrics.jsonl) or a folder that holds runs"

# ----------------------------------------------------------------------------------- config


def save_config(config: Config, run_dir: Path) -> None:
    tmp = run_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    tmp.replace(run_dir / CONFIG_FILE)


def _read_yaml(run_dir: Path) -> dict[str, Any]:
    """config.yaml as the mapping frugal wrote, or one clear error."""
    path = run_dir / CONFIG_FILE
    if run_dir.is_file():
        raise FrugalError(f"{run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise FrugalError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise FrugalError(f"{run_dir} is not a frugal run directory (no {CONFIG_FILE})")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrugalError(
            f"cannot read {path}: {first}; it is not a valid config (frugal writes a YAML "
            "mapping there)"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("env"), dict):
        raise FrugalError(
            f"{path} is not a frugal run config; expected a YAML mapping with algo, preset, "
            f"env (a mapping with id) and run"
        )
    return raw


def load_config(run_dir: str | Path) -> Config:
    """The run's resolved config, every key checked against today's config classes."""
    raw = _read_yaml(Path(run_dir))
    package = agent_module(raw.get("algo", "?"))
    return Config(
        algo=raw["algo"],
        preset=raw.get("preset", ""),
        env=from_dict(EnvConfig, "env", raw.get("env") or {}),
        run=from_dict(RunConfig, "run", raw.get("run") or {}),
        agent=from_dict(package.Config, "agent", raw.get("agent") or {}),
        history=list(raw.get("history") or []),
        detected=dict(raw.get("detected") or {}),
    )


# ---------------------------------------------------------------------------------- metrics


def _parse(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        # A line cut short by a crash and then continued by the resumed run: keep its tail.
        start = line.rfind('{"', 1)
        if start < 0:
            return None
        try:
            rec = json.loads(line[start:])
        except ValueError:
            return None
    return rec if isinstance(rec, dict) else None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The lines of a metrics file as dicts, and how many lines before the last were unreadable.

    An unreadable last line is a run still writing it and is skipped silently. If `env_step` goes
    back (a run resumed from an earlier checkpoint), the lines it had logged at or past that step
    are dropped: the resumed run logs them again. A missing file reads as no lines.
    """
    if not path.is_file():
        return [], 0
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = [ln for ln in text.split("\n") if ln.strip()]
    records: list[dict[str, Any]] = []
    bad = 0
    for i, line in enumerate(lines):
        rec = _parse(line)
        if rec is None:
            bad += i < len(lines) - 1
            continue
        step = rec.get("env_step")
        if _is_number(step) and records and _is_number(records[-1].get("env_step")):
            if step < records[-1]["env_step"]:
                while records and records[-1].get("env_step", -math.inf) >= step:
                    records.pop()
        records.append(rec)
    return records, bad


# -------------------------------------------------------------------------------------- Run


@dataclass
class Run:
    """One run directory. Who and under which protocol come from config.yaml when the run is
    loaded; its metrics are read again whenever metrics.jsonl has changed, so a Run follows a
    run that is still training or was resumed."""

    dir: Path
    algo: str
    preset: str
    env_id: str
    seed: int | None
    protocol: str
    settings: dict[str, Any]  # what defines the protocol: 'env.<key>' and 'run.eval_episodes'
    _cache: tuple[Any, list[dict[str, Any]], int] = field(
        default=(None, [], 0), init=False, repr=False, compare=False
    )

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def group_key(self) -> tuple[str, str, str]:
        return (self.algo, self.env_id, self.preset)

    @property
    def config(self) -> Config:
        return load_config(self.dir)

    def _read(self) -> tuple[list[dict[str, Any]], int]:
        path = self.dir / METRICS_FILE
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._cache[0]:
            self._cache = (stamp, *read_metrics(path))
        return self._cache[1], self._cache[2]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Every log point, in order (after a resume from an earlier checkpoint, the points it
        logged again replace the ones past it)."""
        return self._read()[0]

    @property
    def bad_lines(self) -> int:
        """Unreadable lines before the last one (the last one may be in progress)."""
        return self._read()[1]

    @property
    def env_steps(self) -> int:
        """env_step of the last log point."""
        records = self.metrics
        return int(records[-1].get("env_step", 0)) if records else 0

    @property
    def wall_s(self) -> float:
        """Wall time of the last log point that has one."""
        walls = [r["wall_s"] for r in self.metrics if _is_number(r.get("wall_s"))]
        return float(walls[-1]) if walls else 0.0

    def metric_names(self) -> set[str]:
        names: set[str] = set()
        for rec in self.metrics:
            names.update(rec)
        return names - set(X_KEYS)

    def series(self, metric: str, x: str = "env_step") -> tuple[np.ndarray, np.ndarray]:
        """(xs, ys) of every line that has both `x` and a finite numeric `metric`, sorted by x; of
        lines with the same x the last one counts."""
        pts: dict[float, float] = {}
        for rec in self.metrics:
            xv, yv = rec.get(x), rec.get(metric)
            if _is_number(xv) and _is_number(yv):
                pts[float(xv)] = float(yv)
        xs = np.array(sorted(pts), dtype=float)
        return xs, np.array([pts[v] for v in xs], dtype=float)

    def final(self, metric: str) -> tuple[float, int] | None:
        """(value, env_step) of the last line that has `metric` (the last evaluation for eval/*)."""
        for rec in reversed(self.metrics):
            if _is_number(rec.get(metric)):
                return float(rec[metric]), int(rec.get("env_step", 0))
        return None

    def evaluate(
        self,
        episodes: int | None = None,
        video: bool | str | Path = False,
        video_format: str = "mp4",
        viewer: bool = False,
    ) -> dict:
        """Evaluate the latest checkpoint on full games (see `frugal.evaluate`)."""
        from frugal.api import evaluate

        return evaluate(self.dir, episodes, video, video_format, viewer)


def viewer_pages(run_dir: str | Path) -> list[Path]:
    """The episode pages of a run's latest evaluation with --viewer, in episode order."""
    pages = sorted(Path(run_dir, VIEWER).glob("eval-step-*-episode-*.html"))
    steps = {p: int(p.name.split("-")[2]) for p in pages if p.name.split("-")[2].isdigit()}
    newest = max(steps.values(), default=None)
    return [p for p, step in steps.items() if step == newest]


def load_run(run_dir: str | Path) -> Run:
    """A run directory read back (its config.yaml must be the mapping frugal wrote)."""
    path = Path(run_dir)
    cfg = _read_yaml(path)
    env = cfg["env"]
    run_cfg = cfg.get("run") if isinstance(cfg.get("run"), dict) else {}
    settings = {f"env.{k}": v for k, v in env.items() if k not in NOT_PROTOCOL}
    settings["run.eval_episodes"] = run_cfg.get("eval_episodes")
    seed = run_cfg.get("seed")
    return Run(
        dir=path,
        algo=str(cfg.get("algo", "?")),
        preset=str(cfg.get("preset", "?")),
        env_id=str(env.get("id", "?")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        protocol=str(env.get("protocol", "?")),
        settings=settings,
    )


def is_run(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / METRICS_FILE).is_file()


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories named by `paths`: each is a run, or a folder with runs one or two levels
    below it (a run's own subfolders are not searched). Sorted and without duplicates."""
    found: dict[Path, None] = {}
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise FrugalError(f"'{path}' does not exist; {_RUN_HINT}")
        if path.is_file():
            raise FrugalError(f"'{path}' is a file, not a run directory; {_RUN_HINT}")
        if is_run(path):
            found[path.resolve()] = None
            continue
        has = [n for n in (CONFIG_FILE, METRICS_FILE) if (path / n).is_file()]
        if has:
            missing = METRICS_FILE if has == [CONFIG_FILE] else CONFIG_FILE
            raise FrugalError(
                f"'{path}' is not a complete run directory: it has {has[0]} but no {missing}; "
                f"{_RUN_HINT}"
            )
        below: list[Path] = []
        for child in sorted(c for c in path.iterdir() if c.is_dir()):
            if is_run(child):
                below.append(child)
            else:
                below.extend(g for g in sorted(child.iterdir()) if g.is_dir() and is_run(g))
        if not below:
            raise FrugalError(
                f"'{path}' is not a run directory (no config.yaml and metrics.jsonl) and has no "
                f"runs one or two levels below it; {_RUN_HINT}"
            )
        for r in below:
            found[r.resolve()] = None
    return sorted(found)
