"""Finding run directories and reading them: `config.yaml` (who, where, under which protocol) and
`metrics.jsonl` (what happened, one JSON object per line)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from frugal.errors import FrugalError, closest

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
X_KEYS = ("env_step", "update", "wall_s")
# Env settings that do not change what a score means (how the training envs are stepped).
NOT_PROTOCOL = ("id", "protocol", "num_envs", "vectorization")
_RUN_HINT = "pass a run directory (with config.yaml and metrics.jsonl) or a folder that holds runs"


@dataclass
class Run:
    """One run directory, read."""

    path: Path
    algo: str
    preset: str
    env_id: str
    seed: int | None
    protocol: str
    settings: dict[str, Any]  # what defines the protocol: 'env.<key>' and 'run.eval_episodes'
    records: list[dict[str, Any]] = field(default_factory=list)
    env_steps: int = 0  # on the last metrics line
    wall_s: float = 0.0
    bad_lines: int = 0  # unreadable lines before the last one (the last one may be in progress)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def group_key(self) -> tuple[str, str, str]:
        return (self.algo, self.env_id, self.preset)

    def metric_names(self) -> set[str]:
        names: set[str] = set()
        for rec in self.records:
            names.update(rec)
        return names - set(X_KEYS)

    def series(self, metric: str, x: str = "env_step") -> tuple[np.ndarray, np.ndarray]:
        """(xs, ys) of every line that has both `x` and a finite numeric `metric`, sorted by x; of
        lines with the same x the last one counts."""
        pts: dict[float, float] = {}
        for rec in self.records:
            xv, yv = rec.get(x), rec.get(metric)
            if _is_number(xv) and _is_number(yv):
                pts[float(xv)] = float(yv)
        xs = np.array(sorted(pts), dtype=float)
        return xs, np.array([pts[v] for v in xs], dtype=float)

    def final(self, metric: str) -> tuple[float, int] | None:
        """(value, env_step) of the last line that has `metric` (the last evaluation for eval/*)."""
        for rec in reversed(self.records):
            if _is_number(rec.get(metric)):
                return float(rec[metric]), int(rec.get("env_step", 0))
        return None


def setting_key(v: Any) -> tuple:
    """What makes two config values the same setting: 0 and 0.0 are, true and 1 are not."""
    if isinstance(v, bool) or v is None:
        return ("const", v)
    if isinstance(v, int | float):
        return ("number", float(v))
    return ("other", str(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def is_run(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / METRICS).is_file()


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
        has = [n for n in (CONFIG, METRICS) if (path / n).is_file()]
        if has:
            missing = METRICS if has == [CONFIG] else CONFIG
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


def load_run(path: Path) -> Run:
    cfg_path = path / CONFIG
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrugalError(
            f"cannot read {cfg_path}: {first}; it must be the YAML mapping frugal wrote"
        ) from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("env"), dict):
        raise FrugalError(
            f"{cfg_path} is not a frugal run config; expected a YAML mapping with algo, preset, "
            f"env (a mapping with id) and run"
        )
    env = cfg["env"]
    run_cfg = cfg.get("run") if isinstance(cfg.get("run"), dict) else {}
    settings = {f"env.{k}": v for k, v in env.items() if k not in NOT_PROTOCOL}
    settings["run.eval_episodes"] = run_cfg.get("eval_episodes")
    seed = run_cfg.get("seed")
    run = Run(
        path=path,
        algo=str(cfg.get("algo", "?")),
        preset=str(cfg.get("preset", "?")),
        env_id=str(env.get("id", "?")),
        seed=seed if isinstance(seed, int) else None,
        protocol=str(env.get("protocol", "?")),
        settings=settings,
    )
    run.records, run.bad_lines = read_metrics(path / METRICS)
    if run.records:
        last = run.records[-1]
        run.env_steps = int(last.get("env_step", 0))
        walls = [r["wall_s"] for r in run.records if _is_number(r.get("wall_s"))]
        run.wall_s = float(walls[-1]) if walls else 0.0
    return run


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


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The lines of a metrics file as dicts, and how many lines before the last were unreadable.

    An unreadable last line is a run still writing it and is skipped silently. If `env_step` goes
    back (a run resumed from an earlier checkpoint), the lines it had logged at or past that step
    are dropped: the resumed run logs them again.
    """
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


def resolve_metric(metric: str, runs: list[Run]) -> str:
    """An exact metric name; else `<metric>_mean` (so `eval/return` is `eval/return_mean`); else
    the one metric name that starts with `metric`."""
    names: set[str] = set()
    for r in runs:
        names |= r.metric_names()
    if metric in names:
        return metric
    if f"{metric}_mean" in names:
        return f"{metric}_mean"
    matches = sorted(n for n in names if n.startswith(metric))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise FrugalError(
            f"metric '{metric}' is ambiguous: it begins {', '.join(matches)}; give one of them"
        )
    have = ", ".join(sorted(names)) if names else "none (their metrics.jsonl files are empty)"
    raise FrugalError(
        f"no run has metric '{metric}'{closest(metric, names)}; the runs have: {have}"
    )
