"""Comparing runs: learning curves, score tables and human-normalised Atari scores.

`compare(runs, metric, x, out)` reads run directories (each with `config.yaml` and
`metrics.jsonl`; a folder holding runs one or two levels down also works), groups them by
(algorithm, environment, preset) and writes into `out` (default `./compare`):

- `curves_<env>.png`: per environment, one line per group: the mean over seeds with its 95%
  interval, against environment steps, updates or wall time;
- `report.md`: final scores per group and per seed, env steps and wall time used, each run's
  protocol, warnings where runs on the same environment were played under different settings,
  and for Atari the human-normalised scores next to published Atari 100k results;
- `scores.csv`: one row per run with its final score (and HNS for Atari).

`report.md` also links each run's episode pages (`frugal eval RUN_DIR --viewer`) where it has
them, those of its latest evaluation with --viewer.

How the numbers are made:

- Final score of a run: the metric's value on the last line that has it (for `eval/*` metrics: the
  last evaluation). A run still being written counts with what it has logged; its unfinished last
  line is skipped.
- Seeds: mean and a 95% percentile-bootstrap interval of the mean (10,000 resamples of the seeds
  from a fixed RNG seed, so reports are reproducible). With one seed the interval is the value.
- Curves: seeds are evaluated at different x (always so for wall time). The grid is the union of
  all seeds' x values inside the range that every seed covers; between its evaluations a seed keeps
  its last value (step interpolation), so every point averages all seeds and no seed is
  extrapolated past its last evaluation. A curve therefore ends where its shortest seed ends (the
  report says so). Seeds with no range in common fall back to averaging the seeds present at each
  x (drawn dotted, marked "partial"). When all seeds share their evaluation points (the usual case
  for env_step and update) the points are joined by lines; otherwise (wall time) the curve is
  drawn as the step function it is.
- Atari: HNS = (score - random) / (human - random) per game, from the seed-mean score; over games
  the mean, the median and the IQM. IQM is `scipy.stats.trim_mean(hns, 0.25)` as rliable computes
  it: sort, drop floor(n/4) games at each end, average the rest (26 games: the middle 14).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from frugal.errors import FrugalError, closest
from frugal.report import atari
from frugal.report.stats import Curve, bootstrap_ci, iqm, seed_curve
from frugal.runs import X_KEYS, Run, find_runs, load_run, viewer_pages

DEFAULT_OUT = "compare"


@dataclass
class SeedScore:
    """One run's row of the tables."""

    seed: int | None
    run_dir: Path
    protocol: str
    final: float  # the metric at its last logged point
    final_step: int  # env_step of that point
    env_steps: int  # env steps done (last metrics line)
    wall_s: float


@dataclass
class Group:
    """Runs of one algorithm and preset on one environment (its seeds)."""

    algo: str
    env: str
    preset: str
    seeds: list[SeedScore]
    mean: float
    ci_low: float
    ci_high: float
    curve: Curve | None = field(default=None, repr=False)
    runs: list[Run] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"{self.algo} ({self.preset})"


@dataclass
class GameScore:
    """One method (algorithm, preset, protocol) on one Atari game."""

    algo: str
    preset: str
    protocol: str
    env: str
    game: str  # key of the reference tables, e.g. "mspacman"
    score: float  # mean over seeds of the final raw score
    hns_seeds: list[float]
    hns: float  # mean over seeds
    ci_low: float
    ci_high: float
    published: dict[str, float] = field(default_factory=dict)  # csv column -> published score

    @property
    def method(self) -> str:
        return f"{self.algo} ({self.preset})"


@dataclass
class HnsSummary:
    """Human-normalised score of one method over games."""

    name: str
    games: list[str]
    mean: float
    median: float
    iqm: float
    published: bool = False


@dataclass
class CompareResult:
    out_dir: Path
    report: Path
    plots: dict[str, Path]  # env id -> PNG
    scores_csv: Path
    metric: str  # resolved
    x: str
    groups: list[Group]
    hns_metric: str | None = None  # the metric HNS is computed from (None: no Atari runs)
    games: list[GameScore] = field(default_factory=list)
    hns_summary: list[HnsSummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    viewer: dict[Path, list[Path]] = field(default_factory=dict)  # run dir -> episode pages

    def summary(self) -> str:
        """A few lines for the console: final scores per group, HNS, warnings, where the files
        are."""
        from frugal.report.markdown import fmt, fmt_hns

        lines = []
        width = max((len(f"{g.env}  {g.label}") for g in self.groups), default=0)
        for g in self.groups:
            name = f"{g.env}  {g.label}".ljust(width)
            ci = "" if len(g.seeds) == 1 else f"  [{fmt(g.ci_low)}, {fmt(g.ci_high)}]"
            seeds = f"{len(g.seeds)} seed{'s' * (len(g.seeds) != 1)}"
            lines.append(f"{name}  {self.metric} {fmt(g.mean)}{ci}  ({seeds})")
        for h in self.hns_summary:
            if not h.published:
                lines.append(
                    f"HNS over {len(h.games)} game{'s' * (len(h.games) != 1)}, {h.name}: "
                    f"mean {fmt_hns(h.mean)}, median {fmt_hns(h.median)}, IQM {fmt_hns(h.iqm)}"
                )
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"report: {self.report}")
        lines += [f"curves: {p}" for p in self.plots.values()]
        return "\n".join(lines)


def setting_key(v: Any) -> tuple:
    """What makes two config values the same setting: 0 and 0.0 are, true and 1 are not."""
    if isinstance(v, bool) or v is None:
        return ("const", v)
    if isinstance(v, int | float):
        return ("number", float(v))
    return ("other", str(v))


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


def compare(
    runs: list[str | Path] | str | Path,
    metric: str = "eval/return_mean",
    x: str = "env_step",
    out: str | Path | None = None,
) -> CompareResult:
    """Compare runs; see the module docstring. `metric` is a metric name, or its unique prefix
    (`eval/return` means `eval/return_mean`); `x` is env_step, update or wall_s; `out` defaults to
    `./compare`. Raises FrugalError for bad input."""
    runs = [runs] if isinstance(runs, str | Path) else list(runs)
    if not runs:
        raise FrugalError(
            "no runs given; pass one or more run directories (each with config.yaml and "
            "metrics.jsonl) or a folder that holds runs, e.g. frugal compare runs/"
        )
    if x not in X_KEYS:
        raise FrugalError(f"x must be one of {', '.join(X_KEYS)}, not '{x}'")
    loaded = [load_run(p) for p in find_runs(list(runs))]
    metric = resolve_metric(metric, loaded)
    warnings: list[str] = []
    notes: list[str] = []

    for r in loaded:
        if r.bad_lines:
            warnings.append(
                f"{_show(r.dir)}: skipped {r.bad_lines} unreadable line(s) of metrics.jsonl"
            )
    usable = []
    for r in loaded:
        if r.final(metric) is None:
            notes.append(f"{_show(r.dir)} has no {metric} yet; left out")
        else:
            usable.append(r)

    groups = _groups(usable, metric, x, notes)
    warnings += _protocol_warnings(usable)
    warnings += _duplicate_seeds(groups)

    hns_metric = (
        _hns_metric(metric, usable) if any(atari.is_atari(r.env_id) for r in loaded) else None
    )
    games: list[GameScore] = []
    summary: list[HnsSummary] = []
    if hns_metric is not None:
        games, summary = _atari(loaded, hns_metric, notes)

    out_dir = Path(out if out is not None else DEFAULT_OUT)
    if out_dir.exists() and not out_dir.is_dir():
        raise FrugalError(f"--out {out_dir} is a file; give a directory for the report")
    out_dir.mkdir(parents=True, exist_ok=True)
    from frugal.report.plot import plot_env  # matplotlib only when writing

    plots: dict[str, Path] = {}
    labels = sorted({g.label for g in groups})
    for env in sorted({g.env for g in groups}):
        env_groups = [g for g in groups if g.env == env]
        path = out_dir / f"curves_{_slug(env)}.png"
        plots[env] = plot_env(env, env_groups, metric, x, path, labels)
    result = CompareResult(
        out_dir=out_dir,
        report=out_dir / "report.md",
        plots=plots,
        scores_csv=out_dir / "scores.csv",
        metric=metric,
        x=x,
        groups=groups,
        hns_metric=hns_metric,
        games=games,
        hns_summary=summary,
        warnings=warnings,
        notes=notes,
        viewer={r.dir: pages for r in usable if (pages := viewer_pages(r.dir))},
    )
    _write_csv(result)
    from frugal.report.markdown import render

    result.report.write_text(render(result))
    return result


# ----------------------------------------------------------------------------------- grouping


def _groups(runs: list[Run], metric: str, x: str, notes: list[str]) -> list[Group]:
    by_key: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        by_key.setdefault(r.group_key, []).append(r)
    groups = []
    for (algo, env, preset), rs in sorted(
        by_key.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])
    ):
        rs.sort(key=lambda r: (r.seed if r.seed is not None else -1, str(r.dir)))
        seeds = []
        for r in rs:
            value, step = r.final(metric)
            seeds.append(SeedScore(r.seed, r.dir, r.protocol, value, step, r.env_steps, r.wall_s))
        finals = np.array([s.final for s in seeds])
        lo, hi = bootstrap_ci(finals)
        g = Group(algo, env, preset, seeds, float(finals.mean()), float(lo), float(hi), runs=rs)
        series = [r.series(metric, x) for r in rs]
        if any(xs.size for xs, _ in series):
            g.curve = seed_curve(series)
            _curve_notes(g, x, notes)
        else:
            notes.append(f"{env} {g.label}: no lines with both {x} and {metric}; no curve")
        steps = sorted({s.final_step for s in seeds})
        if len(steps) > 1:
            notes.append(
                f"{env} {g.label}: the seeds' final points are at different env steps "
                f"({', '.join(f'{s:,}' for s in steps)}); a run may still be going"
            )
        groups.append(g)
    return groups


def _curve_notes(g: Group, x: str, notes: list[str]) -> None:
    cv = g.curve
    shortest, longest = cv.seed_ends
    if not cv.complete:
        notes.append(
            f"{g.env} {g.label}: the seeds share no {x} range; the curve (dotted, 'partial') "
            f"averages the seeds present at each point"
        )
    elif longest > shortest and x != "wall_s":  # in wall time, seeds always end apart
        notes.append(
            f"{g.env} {g.label}: the curve ends at {x} {_num(shortest)}, where its shortest seed "
            f"ends (the longest reaches {_num(longest)})"
        )


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _who(runs: list[Run]) -> str:
    """'dqn (atari100k) seeds 0, 1 + ppo (machado) seed 0'"""
    by: dict[str, list[str]] = {}
    for r in runs:
        by.setdefault(f"{r.algo} ({r.preset})", []).append(
            str(r.seed) if r.seed is not None else r.name
        )
    return " + ".join(f"{k} seed{'s' if len(v) > 1 else ''} {', '.join(v)}" for k, v in by.items())


def _protocol_warnings(runs: list[Run]) -> list[str]:
    """One warning per env and differing setting: runs on the same env under different protocols
    do not measure the same thing."""
    out = []
    for env in sorted({r.env_id for r in runs}):
        rs = sorted(
            (r for r in runs if r.env_id == env), key=lambda r: (r.algo, r.preset, r.seed or 0)
        )
        keys = ["protocol"] + sorted({k for r in rs for k in r.settings})
        for k in keys:
            by: dict[tuple, list[Run]] = {}
            shown: dict[tuple, str] = {}
            for r in rs:
                v = r.protocol if k == "protocol" else r.settings.get(k)
                by.setdefault(setting_key(v), []).append(r)
                shown.setdefault(setting_key(v), _value(v))
            if len(by) > 1:
                parts = "; ".join(f"{shown[v]}: {_who(group)}" for v, group in by.items())
                out.append(
                    f"{env}: runs differ in {k} ({parts}); "
                    f"scores under different protocols are not comparable"
                )
    return out


def _value(v) -> str:
    """A setting as config.yaml writes it."""
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _duplicate_seeds(groups: list[Group]) -> list[str]:
    out = []
    for g in groups:
        seen: dict[int, int] = {}
        for s in g.seeds:
            if s.seed is not None:
                seen[s.seed] = seen.get(s.seed, 0) + 1
        dup = sorted(s for s, n in seen.items() if n > 1)
        if dup:
            out.append(
                f"{g.env} {g.label}: seed {', '.join(map(str, dup))} appears in more than one run "
                f"directory; each is counted as a seed"
            )
    return out


# -------------------------------------------------------------------------------------- Atari


def _hns_metric(metric: str, runs: list[Run]) -> str | None:
    """HNS needs a raw return: the compared metric if it is one, else eval/return_mean."""
    if metric.endswith("return_mean") or metric.endswith("episode_return"):
        return metric
    if any(r.final("eval/return_mean") is not None for r in runs):
        return "eval/return_mean"
    return None


def _atari(runs: list[Run], metric: str, notes: list[str]):
    ref = atari.human_random()
    pub = atari.published()
    by: dict[tuple[str, str, str, str], list[Run]] = {}
    for r in runs:
        if not atari.is_atari(r.env_id) or r.final(metric) is None:
            continue
        game = atari.game_key(r.env_id)
        if game not in ref:
            notes.append(
                f"{r.env_id}: no human/random reference score for game '{game}'; left out of the "
                f"HNS tables"
            )
            continue
        by.setdefault((r.algo, r.preset, r.protocol, game), []).append(r)
    games: list[GameScore] = []
    for (algo, preset, protocol, game), rs in sorted(by.items()):
        scores = np.array([r.final(metric)[0] for r in rs])
        h = np.array([atari.hns(game, s) for s in scores])
        lo, hi = bootstrap_ci(h)
        gs = GameScore(
            algo,
            preset,
            protocol,
            rs[0].env_id,
            game,
            float(scores.mean()),
            h.tolist(),
            float(h.mean()),
            float(lo),
            float(hi),
        )
        if protocol == "atari100k" and game in pub:
            gs.published = dict(pub[game])
        games.append(gs)
        steps = sorted({r.env_steps for r in rs})
        if protocol == "atari100k" and steps != [100_000]:
            notes.append(
                f"{rs[0].env_id} {gs.method}: ran {', '.join(f'{s:,}' for s in steps)} env steps; "
                f"the published Atari 100k scores are at 100,000 agent steps (400k frames)"
            )

    summary: list[HnsSummary] = []
    methods: dict[tuple[str, str, str], list[GameScore]] = {}
    for gs in games:
        methods.setdefault((gs.algo, gs.preset, gs.protocol), []).append(gs)
    game_sets: list[list[str]] = []
    for (algo, preset, protocol), gss in methods.items():
        summary.append(
            _summary(f"{algo} ({preset}), {protocol} protocol", {g.game: g.hns for g in gss})
        )
        names = sorted(g.game for g in gss)
        if protocol == "atari100k" and names not in game_sets:
            game_sets.append(names)
    if game_sets:
        all_games = sorted(pub)
        if all_games not in game_sets:
            game_sets.append(all_games)
        for names in game_sets:
            where = (
                f"all {len(names)} games"
                if names == all_games
                else f"same {len(names)} game" + ("s" if len(names) > 1 else "")
            )
            for col, title in atari.PUBLISHED_NAMES.items():
                per_game = atari.published_hns(col)
                summary.append(
                    _summary(f"{title}, published ({where})", {g: per_game[g] for g in names}, True)
                )
    return games, summary


def _summary(name: str, per_game: dict[str, float], published: bool = False) -> HnsSummary:
    v = np.array(list(per_game.values()))
    return HnsSummary(
        name, sorted(per_game), float(v.mean()), float(np.median(v)), iqm(v), published
    )


# ---------------------------------------------------------------------------------- utilities


def _slug(env: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in env)


def _show(path: Path) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _write_csv(result: CompareResult) -> None:
    hns_of: dict[Path, float] = {}
    if result.hns_metric is not None:
        for g in result.groups:
            for r in g.runs:
                game = atari.game_key(r.env_id)
                f = r.final(result.hns_metric)
                if atari.is_atari(r.env_id) and game in atari.human_random() and f is not None:
                    hns_of[r.dir] = atari.hns(game, f[0])
    with open(result.scores_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "algo",
                "env",
                "preset",
                "protocol",
                "seed",
                "metric",
                "final",
                "final_env_step",
                "env_steps",
                "wall_s",
                "hns",
                "run_dir",
            ]
        )
        for g in result.groups:
            for s in g.seeds:
                h = hns_of.get(s.run_dir)
                w.writerow(
                    [
                        g.algo,
                        g.env,
                        g.preset,
                        s.protocol,
                        "" if s.seed is None else s.seed,
                        result.metric,
                        repr(s.final),
                        s.final_step,
                        s.env_steps,
                        round(s.wall_s, 3),
                        "" if h is None else repr(h),
                        _show(s.run_dir),
                    ]
                )
