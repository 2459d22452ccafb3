"""`report.md`: the tables of a comparison, as Markdown."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from frugal.report import atari
from frugal.report.compare import _show, _value, _who, setting_key
from frugal.report.plot import X_LABELS
from frugal.report.stats import LEVEL, N_BOOT, SEED

if TYPE_CHECKING:
    from frugal.report.compare import CompareResult, Group
    from frugal.runs import Run


def fmt(v: float) -> str:
    """A score, with as many digits as its size deserves."""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1 or a == 0:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_hns(v: float) -> str:
    return f"{v:.3f}"


def fmt_time(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def fmt_range(values: list[float], f=lambda v: f"{v:,}") -> str:
    lo, hi = min(values), max(values)
    return f(lo) if lo == hi else f"{f(lo)} – {f(hi)}"


def _cell(v) -> str:
    return str(v).replace("|", "\\|")


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _ci(lo: float, hi: float, n: int, f=fmt) -> str:
    return "— (1 seed)" if n == 1 else f"[{f(lo)}, {f(hi)}]"


def render(res: CompareResult) -> str:
    n_runs = sum(len(g.seeds) for g in res.groups)
    envs = sorted({g.env for g in res.groups})
    out = [
        f"# Run comparison: {res.metric}",
        "",
        f"{n_runs} run{'s' * (n_runs != 1)} in {len(res.groups)} group"
        f"{'s' * (len(res.groups) != 1)} (algorithm, environment, preset) on {len(envs)} "
        f"environment{'s' * (len(envs) != 1)}; curves against {X_LABELS[res.x]}.",
        "",
        f"- **Final** score of a run: its `{res.metric}` at the last line that has it "
        "(for `eval/*`: the last evaluation); a run still going counts with what it has logged.",
        f"- **Seeds**: mean and {LEVEL:.0%} percentile-bootstrap interval of the mean "
        f"({N_BOOT:,} resamples of the seeds, RNG seed {SEED}); one seed has no interval.",
        "- **Curves**: on the union of the seeds' x values within the range all seeds cover; "
        "between evaluations a seed keeps its last value (drawn as steps where the seeds were "
        "evaluated at different x). A curve ends where its shortest seed ends.",
        "",
    ]
    if res.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in res.warnings] + [""]
    if res.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]
    for env in envs:
        out += _env_section(res, env, [g for g in res.groups if g.env == env], _show)
    if res.hns_metric is not None and (res.games or res.hns_summary):
        out += _atari_section(res)
    if res.viewer:
        out += _viewer_section(res)
    return "\n".join(out).rstrip() + "\n"


def _protocol_ids(runs: list[Run]) -> tuple[dict[str, str], list[tuple[str, str, list[Run]]]]:
    """Distinct (protocol, settings) of the runs: run path -> label, and the table rows."""
    distinct: dict[tuple, list[Run]] = {}
    for r in runs:
        key = (r.protocol, tuple(sorted((k, setting_key(v)) for k, v in r.settings.items())))
        distinct.setdefault(key, []).append(r)
    # settings that differ between the protocols are shown in bold
    keys = {k for _, settings in distinct for k, _ in settings}
    unset = setting_key(None)
    differ = {k for k in keys if len({dict(s).get(k, unset) for _, s in distinct}) > 1}
    labels: dict[str, str] = {}
    rows = []
    for i, ((name, _), rs) in enumerate(distinct.items()):
        label = name if len(distinct) == 1 else f"{name} (P{i + 1})"
        for r in rs:
            labels[str(r.dir)] = label
        text = ", ".join(
            f"**{k}={_value(v)}**" if k in differ else f"{k}={_value(v)}"
            for k, v in rs[0].settings.items()
        )
        rows.append((label, text, rs))
    return labels, rows


def _env_section(res: CompareResult, env: str, groups: list[Group], show) -> list[str]:
    runs = [r for g in groups for r in g.runs]
    labels, protocols = _protocol_ids(runs)
    out = [f"## {env}", ""]
    if env in res.plots:
        out += [f"![{res.metric} on {env}]({res.plots[env].name})", ""]
    rows = []
    for g in groups:
        rows.append(
            [
                g.algo,
                g.preset,
                ", ".join(sorted({labels[str(r.dir)] for r in g.runs})),
                len(g.seeds),
                fmt(g.mean),
                _ci(g.ci_low, g.ci_high, len(g.seeds)),
                fmt_range([s.env_steps for s in g.seeds]),
                fmt_range([s.wall_s for s in g.seeds], fmt_time),
            ]
        )
    out += table(
        [
            "algorithm",
            "preset",
            "protocol",
            "seeds",
            f"final {res.metric} (mean)",
            "95% CI",
            "env steps",
            "wall time",
        ],
        rows,
    )
    out += ["Per seed:", ""]
    rows = []
    for g in groups:
        for s in g.seeds:
            rows.append(
                [
                    g.algo,
                    g.preset,
                    "?" if s.seed is None else s.seed,
                    fmt(s.final),
                    f"{s.final_step:,}",
                    f"{s.env_steps:,}",
                    fmt_time(s.wall_s),
                    labels[str(s.run_dir)],
                    f"`{show(s.run_dir)}`",
                ]
            )
    out += table(
        [
            "algorithm",
            "preset",
            "seed",
            "final",
            "at env step",
            "env steps",
            "wall time",
            "protocol",
            "run",
        ],
        rows,
    )
    out += ["Protocols (from each run's config.yaml):", ""]
    out += table(["protocol", "settings", "runs"], [[n, s, _who(rs)] for n, s, rs in protocols])
    return out


def _atari_section(res: CompareResult) -> list[str]:
    out = [
        "## Atari: human-normalised scores",
        "",
        f"Score = final `{res.hns_metric}` of each run, averaged over seeds; "
        "HNS = (score − random) / (human − random), with the random and human scores of "
        "`atari_human_random.csv`. Over games: mean, median and IQM (interquartile mean: "
        "`scipy.stats.trim_mean(hns, 0.25)` as in rliable: drop the lowest and the highest "
        "quarter of the games, floor(n/4) each, and average the rest).",
        "",
    ]
    pub_cols = list(atari.PUBLISHED_NAMES)
    any_pub = any(g.published for g in res.games)
    if any_pub:
        out += [
            "Published Atari 100k scores (`atari100k_published.csv`: EfficientZero V1, "
            "EfficientZero V2, BBF at replay ratio 8, DreamerV3 2024) are shown for runs under the "
            "`atari100k` protocol, as HNS (raw score); they are at 100k agent steps (400k frames). "
            "EfficientZero reports the mean of 32 evaluation episodes at the end of training, "
            "DreamerV3 the mean return of its training episodes in the last 10k frames.",
            "",
        ]
    if res.games:
        header = ["game", "method", "protocol", "seeds", "score", "HNS", "95% CI"]
        if any_pub:
            header += [atari.PUBLISHED_NAMES[c] for c in pub_cols]
        rows = []
        for gs in sorted(res.games, key=lambda g: (g.game, g.method)):
            row = [
                gs.env.split("/", 1)[-1],
                gs.method,
                gs.protocol,
                len(gs.hns_seeds),
                fmt(gs.score),
                fmt_hns(gs.hns),
                _ci(gs.ci_low, gs.ci_high, len(gs.hns_seeds), fmt_hns),
            ]
            if any_pub:
                row += [
                    f"{fmt_hns(atari.hns(gs.game, gs.published[c]))} ({fmt(gs.published[c])})"
                    if gs.published
                    else ""
                    for c in pub_cols
                ]
            rows.append(row)
        out += ["### Per game", ""] + table(header, rows)
    if res.hns_summary:
        rows = [
            [s.name, len(s.games), fmt_hns(s.mean), fmt_hns(s.median), fmt_hns(s.iqm)]
            for s in res.hns_summary
        ]
        out += ["### Over games", ""]
        out += table(["method", "games", "mean HNS", "median HNS", "IQM HNS"], rows)
    return out


def _viewer_section(res: CompareResult) -> list[str]:
    """Links, relative to report.md, to each run's episode pages."""
    out = [
        "## Episode viewer",
        "",
        "Each run's latest pages of `frugal eval RUN_DIR --viewer`:",
        "",
    ]
    for run_dir, pages in sorted(res.viewer.items()):
        links = ", ".join(
            f"[episode {p.stem.rsplit('-', 1)[1].lstrip('0') or '0'}]"
            f"({Path(os.path.relpath(p, res.out_dir)).as_posix()})"
            for p in pages
        )
        out.append(f"- `{_show(run_dir)}` (env step {pages[0].name.split('-')[2]}): {links}")
    return out + [""]
