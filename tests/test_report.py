"""frugal.report: comparing runs on small synthetic run directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from frugal.errors import FrugalError
from frugal.report import atari as atari_ref
from frugal.report import compare
from frugal.report.stats import bootstrap_ci, iqm, seed_curve
from frugal.runs import read_metrics

GYM_ENV = dict(
    id="gym/CartPole-v1", num_envs=1, vectorization="sync", protocol="gym",
    sticky_actions=None, frame_skip=None, noop_max=None, episodic_life=None, fire_reset=None,
    max_episode_frames=None, obs_size=84, grayscale=True, frame_stack=4,
)  # fmt: skip
ATARI100K = dict(
    num_envs=1, vectorization="sync", protocol="atari100k", sticky_actions=0.0, frame_skip=4,
    noop_max=30, episodic_life=True, fire_reset=False, max_episode_frames=108000, obs_size=96,
    grayscale=False, frame_stack=4,
)  # fmt: skip


def make_run(
    root: Path,
    name: str,
    evals: list[tuple[int, float]],
    algo: str = "dqn",
    preset: str = "cartpole",
    env: str = "gym/CartPole-v1",
    seed: int = 0,
    env_settings: dict | None = None,
    eval_episodes: int = 10,
    tail: str = "",
    wall_per_step: float = 0.01,
) -> Path:
    """A run directory as frugal's runner writes it: eval lines at `evals` (env_step, return),
    a training line every 500 steps, and `tail` appended verbatim (e.g. a partial line)."""
    d = root / name
    d.mkdir(parents=True)
    env_cfg = dict(GYM_ENV if not env.startswith("atari/") else ATARI100K)
    env_cfg["id"] = env
    env_cfg.update(env_settings or {})
    cfg = dict(
        algo=algo,
        preset=preset,
        env=env_cfg,
        run=dict(steps=max(s for s, _ in evals), seed=seed, eval_every=1000,
                 eval_episodes=eval_episodes),
        agent=dict(lr=1e-3),
        history=[],
    )  # fmt: skip
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = []
    last = max(s for s, _ in evals)
    evals_at = dict(evals)
    for step in sorted(set(range(0, last + 1, 500)) | set(evals_at)):
        base = dict(env_step=step, update=step // 4, wall_s=step * wall_per_step)
        lines.append({**base, "train/loss": 1.0 / (1 + step), "train/episode_return": 1.0})
        if step in evals_at:
            lines.append(
                {**base, "eval/return_mean": evals_at[step], "eval/return_std": 1.0,
                 "eval/episodes": eval_episodes}
            )  # fmt: skip
    (d / "metrics.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines) + tail)
    return d


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


# ------------------------------------------------------------------------------------ HNS, IQM


def test_game_key_converts_env_ids_to_reference_rows():
    for name, key in [
        ("atari/Breakout", "breakout"),
        ("atari/MsPacman", "mspacman"),
        ("atari/PrivateEye", "privateeye"),
        ("atari/DemonAttack", "demonattack"),
        ("ms_pacman", "mspacman"),
        ("MsPacmanNoFrameskip-v4", "mspacman"),
        ("ALE/KungFuMaster-v5", "kungfumaster"),
    ]:
        assert atari_ref.game_key(name) == key
        assert key in atari_ref.human_random()
    assert len(atari_ref.human_random()) == 26
    assert set(atari_ref.published()) == set(atari_ref.human_random())


def test_hns_exact_values():
    assert atari_ref.hns("breakout", 1.7) == 0.0
    assert atari_ref.hns("breakout", 30.5) == pytest.approx(1.0)
    assert atari_ref.hns("breakout", 16.1) == pytest.approx(0.5)
    assert atari_ref.hns("pong", -20.7) == 0.0
    assert atari_ref.hns("pong", 14.6) == pytest.approx(1.0)
    assert atari_ref.hns("mspacman", 307.3 + 6644.3 * 2) == pytest.approx(2.0)
    assert atari_ref.hns("alien", 227.8 - 6899.9) == pytest.approx(-1.0)


def test_iqm_is_trim_mean_025():
    assert iqm([1, 2, 3]) == 2.0  # fewer than 4: nothing trimmed
    assert iqm([4, 1, 3, 2]) == 2.5  # drop 1 and 4
    assert iqm([5, 1, 4, 2, 3]) == 3.0  # floor(5/4) = 1 each side: mean(2, 3, 4)
    assert iqm([0, 0, 0, 100]) == 0.0
    assert iqm(list(range(1, 9))) == 4.5  # drop 2 each side: mean(3, 4, 5, 6)
    v = np.arange(26.0) ** 2  # 26 games: drop 6 at each end, average the middle 14
    assert iqm(v) == pytest.approx(np.mean(v[6:20]))
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n in (4, 5, 7, 26, 27):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))


def test_published_aggregates_match_the_reference():
    # the figures quoted in atari100k.md, recomputed from the CSV
    expected = {
        "efficientzero_v1": (1.943, 1.090),
        "efficientzero_v2": (2.680, 1.235),
        "bbf_rr8": (2.247, 0.917),
        "dreamerv3": (1.247, 0.494),
    }
    for col, (mean, median) in expected.items():
        h = np.array(list(atari_ref.published_hns(col).values()))
        assert len(h) == 26
        assert round(h.mean(), 3) == mean
        assert round(float(np.median(h)), 3) == median


# ------------------------------------------------------------------------------------ statistics


def test_bootstrap_ci_verifiable_cases():
    # one seed: no interval, the value itself, exactly
    lo, hi = bootstrap_ci([3.7])
    assert lo == 3.7 and hi == 3.7
    # all-equal seeds
    assert bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    # two seeds {0, 1}: resampled means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are exactly 0 and 1
    lo, hi = bootstrap_ci([0.0, 1.0])
    assert (lo, hi) == (0.0, 1.0)
    # three seeds {1, 2, 3}: P(mean = 1) = 1/27 > 2.5%, so the interval is [1, 3]
    assert bootstrap_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)
    # many seeds: close to the normal-theory interval, and reproducible
    x = np.random.default_rng(0).normal(10, 2, size=40)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.15)
    assert hi == pytest.approx(x.mean() + half, abs=0.15)
    assert bootstrap_ci(x) == (lo, hi)
    # columns share the resampled seeds: a column and its double give doubled bounds
    lo2, hi2 = bootstrap_ci(np.stack([x, 2 * x], axis=1))
    assert lo2 == pytest.approx([lo, 2 * lo]) and hi2 == pytest.approx([hi, 2 * hi])


def test_seed_curve_common_grid_with_step_interpolation():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 20.0]))
    b = (np.array([0.0, 15.0, 30.0]), np.array([0.0, 30.0, 60.0]))
    cv = seed_curve([a, b])
    # union of x values within [0, 20] (b is not carried past 30, a not past 20)
    assert cv.x.tolist() == [0.0, 10.0, 15.0, 20.0]
    # a: 0, 10, 10, 20 ; b: 0, 0, 30, 30
    assert cv.mean.tolist() == [0.0, 5.0, 20.0, 25.0]
    assert cv.complete and not cv.aligned and cv.n_seeds.tolist() == [2, 2, 2, 2]
    assert cv.seed_ends == (20.0, 30.0)
    assert cv.lo.tolist() == [0.0, 0.0, 10.0, 20.0] and cv.hi.tolist() == [0.0, 10.0, 30.0, 30.0]
    # one seed: the curve is the seed, interval collapsed
    one = seed_curve([a])
    assert one.mean.tolist() == [0.0, 10.0, 20.0] and np.array_equal(one.lo, one.hi)
    assert one.aligned and seed_curve([a, a]).aligned
    # no common range: each point averages the seeds present
    part = seed_curve([(np.array([1.0]), np.array([4.0])), (np.array([2.0]), np.array([6.0]))])
    assert not part.complete
    assert part.x.tolist() == [1.0, 2.0] and part.mean.tolist() == [4.0, 6.0]
    assert part.n_seeds.tolist() == [1, 1]


# ------------------------------------------------------------------------------------ compare


def _two_groups(root: Path) -> None:
    for seed, finals in enumerate([10.0, 20.0, 30.0]):
        make_run(root, f"dqn_s{seed}", [(0, 0.0), (1000, finals / 2), (2000, finals)], seed=seed)
    for seed, finals in enumerate([100.0, 100.0, 100.0]):
        make_run(
            root, f"ppo_s{seed}", [(0, 0.0), (1000, 50.0), (2000, finals)], algo="ppo", seed=seed
        )


def test_compare_two_groups_three_seeds(tmp_path):
    _two_groups(tmp_path / "runs")
    out = tmp_path / "out"
    res = compare([tmp_path / "runs"], out=out)
    assert res.metric == "eval/return_mean" and res.x == "env_step"
    assert [(g.algo, g.env, g.preset) for g in res.groups] == [
        ("dqn", "gym/CartPole-v1", "cartpole"),
        ("ppo", "gym/CartPole-v1", "cartpole"),
    ]
    dqn, ppo = res.groups
    assert [s.seed for s in dqn.seeds] == [0, 1, 2]
    assert [s.final for s in dqn.seeds] == [10.0, 20.0, 30.0]
    assert dqn.mean == 20.0 and (dqn.ci_low, dqn.ci_high) == (10.0, 30.0)
    assert ppo.mean == 100.0 and (ppo.ci_low, ppo.ci_high) == (100.0, 100.0)
    assert dqn.seeds[0].final_step == 2000 and dqn.seeds[0].env_steps == 2000
    assert dqn.seeds[0].wall_s == pytest.approx(20.0)
    assert dqn.curve.x.tolist() == [0.0, 1000.0, 2000.0]
    assert dqn.curve.mean.tolist() == [0.0, 10.0, 20.0]
    assert res.warnings == [] and res.notes == []
    # files
    assert res.report == out / "report.md" and res.scores_csv == out / "scores.csv"
    png = res.plots["gym/CartPole-v1"]
    assert png == out / "curves_gym_CartPole-v1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = res.report.read_text()
    assert "![eval/return_mean on gym/CartPole-v1](curves_gym_CartPole-v1.png)" in md
    assert "| dqn | cartpole | gym | 3 | 20.00 | [10.00, 30.00] | 2,000 | 20.0 s |" in md
    assert "| ppo | cartpole | 1 | 100.0 | 2,000 | 2,000 | 20.0 s | gym |" in md
    assert "env.sticky_actions=null" in md and "run.eval_episodes=10" in md
    assert "Atari" not in md
    text = res.summary()  # what the CLI prints
    assert (
        "gym/CartPole-v1  dqn (cartpole)  eval/return_mean 20.00  [10.00, 30.00]  (3 seeds)" in text
    )
    assert f"report: {out / 'report.md'}" in text
    rows = list(csv.DictReader(res.scores_csv.open()))
    assert len(rows) == 6 and rows[0]["algo"] == "dqn" and float(rows[2]["final"]) == 30.0


def test_grouping_by_algo_env_preset_and_run_discovery(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a/s0", [(1000, 1.0)], seed=0)
    make_run(root, "a/s1", [(1000, 3.0)], seed=1)
    make_run(root, "b", [(1000, 5.0)], preset="fast")  # other preset: other group
    make_run(root, "c", [(1000, 7.0)], env="gym/Acrobot-v1")  # other env
    make_run(root, "d", [(1000, 9.0)], algo="ppo")
    make_run(root, "a/s0/nested", [(1000, 99.0)])  # inside a run: not searched
    make_run(root, "x/y/too_deep", [(1000, 99.0)])  # three levels down: not searched
    res = compare([root], out=tmp_path / "out")
    keys = [(g.algo, g.env, g.preset, g.mean) for g in res.groups]
    assert keys == [
        ("dqn", "gym/Acrobot-v1", "cartpole", 7.0),
        ("dqn", "gym/CartPole-v1", "cartpole", 2.0),
        ("dqn", "gym/CartPole-v1", "fast", 5.0),
        ("ppo", "gym/CartPole-v1", "cartpole", 9.0),
    ]
    assert set(res.plots) == {"gym/Acrobot-v1", "gym/CartPole-v1"}
    # a run given directly and again through its parent counts once
    res2 = compare([root / "a" / "s0", root / "a"], out=tmp_path / "out2")
    assert len(res2.groups) == 1 and len(res2.groups[0].seeds) == 2


def test_metric_resolution_exact_mean_and_prefix(tmp_path):
    make_run(tmp_path / "runs", "r", [(0, 1.0), (1000, 2.0)])
    assert compare([tmp_path / "runs" / "r"], "eval/return", out=tmp_path / "o").metric == (
        "eval/return_mean"
    )
    assert compare([tmp_path / "runs"], "eval/return_std", out=tmp_path / "o").metric == (
        "eval/return_std"
    )
    res = compare([tmp_path / "runs"], "train/lo", out=tmp_path / "o")
    assert res.metric == "train/loss"
    assert res.groups[0].seeds[0].final == pytest.approx(1 / 1001)
    with pytest.raises(FrugalError) as e:
        compare([tmp_path / "runs"], "train/", out=tmp_path / "o")
    assert one_line(e) == (
        "metric 'train/' is ambiguous: it begins train/episode_return, train/loss; give one of them"
    )
    with pytest.raises(FrugalError) as e:
        compare([tmp_path / "runs"], "eval/score", out=tmp_path / "o")
    msg = one_line(e)
    assert msg.startswith("no run has metric 'eval/score'")
    assert msg.endswith(
        "the runs have: eval/episodes, eval/return_mean, eval/return_std, "
        "train/episode_return, train/loss"
    )


def test_x_update_and_wall_time(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "fast", [(0, 0.0), (1000, 10.0)], seed=0, wall_per_step=0.01)
    make_run(root, "slow", [(0, 0.0), (1000, 20.0)], seed=1, wall_per_step=0.02)
    res = compare([root], x="update", out=tmp_path / "o")
    assert res.groups[0].curve.x.tolist() == [0.0, 250.0]
    res = compare([root], x="wall_s", out=tmp_path / "o")
    cv = res.groups[0].curve
    # union of x within the common range [0, 10]: the slow seed is still at 0 at 10 s
    assert cv.x.tolist() == [0.0, 10.0] and cv.mean.tolist() == [0.0, 5.0]
    assert res.notes == []  # in wall time, seeds ending apart is expected


def test_protocol_mismatch_warning_names_the_setting(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "ez", [(100000, 20.0)], "efficientzero", "atari100k", "atari/Breakout")
    make_run(root, "ez1", [(100000, 20.0)], "efficientzero", "atari100k", "atari/Breakout", 1)
    make_run(
        root, "ppo", [(100000, 10.0)], "ppo", "machado", "atari/Breakout",
        env_settings=dict(sticky_actions=0.25, protocol="machado", num_envs=8),
    )  # fmt: skip
    make_run(root, "dqn", [(100000, 5.0)], "dqn", "atari100k", "atari/Breakout", eval_episodes=32)
    res = compare([root], out=tmp_path / "o")
    w = res.warnings
    assert w == [
        "atari/Breakout: runs differ in protocol (atari100k: dqn (atari100k) seed 0 + "
        "efficientzero (atari100k) seeds 0, 1; machado: ppo (machado) seed 0); "
        "scores under different protocols are not comparable",
        "atari/Breakout: runs differ in env.sticky_actions (0.0: dqn (atari100k) seed 0 + "
        "efficientzero (atari100k) seeds 0, 1; 0.25: ppo (machado) seed 0); "
        "scores under different protocols are not comparable",
        "atari/Breakout: runs differ in run.eval_episodes (32: dqn (atari100k) seed 0; "
        "10: efficientzero (atari100k) seeds 0, 1 + ppo (machado) seed 0); "
        "scores under different protocols are not comparable",
    ]  # num_envs differs too, but does not change what a score means
    md = res.report.read_text()
    assert "## Warnings" in md and "**env.sticky_actions=0.25**" in md
    assert "atari100k (P1)" in md


def test_no_warning_for_vectorization_or_equal_values(tmp_path):
    make_run(tmp_path, "a", [(1000, 1.0)], env_settings=dict(num_envs=4, vectorization="async"))
    make_run(tmp_path, "b", [(1000, 2.0)], preset="x")
    # 0 and 0.0 are the same setting
    make_run(tmp_path, "c", [(1000, 3.0)], env="atari/Pong", env_settings=dict(sticky_actions=0))
    make_run(tmp_path, "d", [(1000, 4.0)], "ppo", env="atari/Pong")
    (tmp_path / "o").mkdir()  # not a run: ignored when searching tmp_path
    res = compare([tmp_path], out=tmp_path / "o")
    assert [(g.algo, g.preset) for g in res.groups] == [
        ("dqn", "cartpole"), ("ppo", "cartpole"), ("dqn", "cartpole"), ("dqn", "x")
    ]  # fmt: skip
    assert res.warnings == []
    assert "(P1)" not in res.report.read_text()  # one protocol per env: no P labels


def test_truncated_last_line_is_skipped_silently(tmp_path):
    run = make_run(tmp_path, "r", [(0, 1.0), (1000, 2.0)], tail='{"env_step": 1500, "upd')
    records, bad = read_metrics(run / "metrics.jsonl")
    assert bad == 0 and records[-1]["env_step"] == 1000
    res = compare([run], out=tmp_path / "o")
    assert res.groups[0].seeds[0].final == 2.0 and res.warnings == [] and res.notes == []
    # an eval line cut short is not an evaluation: the final stays at the last complete one
    run2 = make_run(tmp_path, "r2", [(0, 1.0), (1000, 2.0)], tail='{"env_step": 2000, "eval/ret')
    assert compare([run2], out=tmp_path / "o").groups[0].seeds[0].final == 2.0


def test_unreadable_middle_lines_are_counted_and_resumed_lines_recovered(tmp_path):
    run = make_run(tmp_path, "r", [(0, 1.0), (1000, 2.0)])
    with open(run / "metrics.jsonl", "a") as f:
        f.write("garbage\n")
        # a line cut by a crash, continued by the resumed run on the same line
        f.write('{"env_step": 1500, "upd{"env_step": 1500, "update": 375, "wall_s": 15.0, ')
        f.write('"eval/return_mean": 3.0}\n')
        f.write('{"env_step": 1600, "update": 400, "wall_s": 16.0}\n')
    res = compare([run], out=tmp_path / "o")
    assert res.groups[0].seeds[0].final == 3.0 and res.groups[0].seeds[0].env_steps == 1600
    assert len(res.warnings) == 1
    assert res.warnings[0].endswith("skipped 1 unreadable line(s) of metrics.jsonl")


def test_resume_from_earlier_checkpoint_drops_stale_lines(tmp_path):
    run = make_run(tmp_path, "r", [(0, 1.0), (1000, 2.0), (2000, 9.0)])
    with open(run / "metrics.jsonl", "a") as f:  # resumed from the checkpoint at 1000
        f.write(json.dumps({"env_step": 1500, "update": 375, "wall_s": 30.0}) + "\n")
    records, _ = read_metrics(run / "metrics.jsonl")
    assert [r["env_step"] for r in records][-3:] == [1000, 1000, 1500]
    assert compare([run], out=tmp_path / "o").groups[0].seeds[0].final == 2.0


def test_running_runs_compare_with_what_they_have(tmp_path):
    make_run(tmp_path, "done", [(0, 0.0), (1000, 10.0), (2000, 20.0)], seed=0)
    make_run(tmp_path, "going", [(0, 0.0), (1000, 30.0)], seed=1, tail='{"env_st')
    make_run(tmp_path, "new", [(0, 0.0)], seed=2)
    (tmp_path / "new" / "metrics.jsonl").write_text('{"env_step": 0, "update": 0, "wall_s": 0.1}\n')
    res = compare([tmp_path], out=tmp_path / "o")
    (g,) = res.groups
    assert [s.final for s in g.seeds] == [20.0, 30.0] and g.mean == 25.0
    assert g.curve.x.tolist() == [0.0, 1000.0]  # ends where the shortest seed ends
    notes = "\n".join(res.notes)
    assert "new has no eval/return_mean yet; left out" in notes
    assert "the curve ends at env_step 1,000, where its shortest seed ends" in notes
    assert "final points are at different env steps (1,000, 2,000)" in notes


def test_duplicate_seed_warning(tmp_path):
    make_run(tmp_path, "a", [(1000, 1.0)], seed=3)
    make_run(tmp_path, "b", [(1000, 2.0)], seed=3)
    (w,) = compare([tmp_path], out=tmp_path / "o").warnings
    assert "seed 3 appears in more than one run directory" in w


# ------------------------------------------------------------------------------------ Atari


def _atari_runs(root: Path) -> dict[str, float]:
    """Five games with seed-mean HNS 0.5, 0.25, 1.5, 2.0, 3.0."""
    hns = {"Breakout": 0.5, "MsPacman": 0.25, "Pong": 1.5, "DemonAttack": 2.0, "Freeway": 3.0}
    for game, h in hns.items():
        ref = atari_ref.human_random()[atari_ref.game_key(game)]
        span = ref["human"] - ref["random"]
        for seed, dh in enumerate([-0.1, 0.1]):  # seeds at h -/+ 0.1
            score = ref["random"] + (h + dh) * span
            make_run(
                root, f"ez_{game}_{seed}", [(0, ref["random"]), (100_000, score)],
                "efficientzero", "atari100k", f"atari/{game}", seed,
            )  # fmt: skip
    return hns


def test_atari_hns_per_game_and_over_games(tmp_path):
    hns = _atari_runs(tmp_path / "runs")
    make_run(
        tmp_path / "runs", "ppo_breakout", [(0, 1.7), (100_000, 30.5)], "ppo", "machado",
        "atari/Breakout", env_settings=dict(protocol="machado", sticky_actions=0.25),
    )  # fmt: skip
    make_run(tmp_path / "runs", "tennis", [(0, 0.0), (100_000, 1.0)], env="atari/Tennis")
    res = compare([tmp_path / "runs"], out=tmp_path / "o")
    assert res.hns_metric == "eval/return_mean"
    ez = {g.env: g for g in res.games if g.algo == "efficientzero"}
    assert set(ez) == {f"atari/{g}" for g in hns}
    for game, h in hns.items():
        gs = ez[f"atari/{game}"]
        assert gs.hns == pytest.approx(h)
        assert gs.hns_seeds == pytest.approx([h - 0.1, h + 0.1])
        assert (gs.ci_low, gs.ci_high) == (pytest.approx(h - 0.1), pytest.approx(h + 0.1))
        assert set(gs.published) == set(atari_ref.PUBLISHED_NAMES)
    assert ez["atari/Breakout"].published["efficientzero_v1"] == 414.1
    ppo = [g for g in res.games if g.algo == "ppo"]
    assert len(ppo) == 1 and ppo[0].hns == pytest.approx(1.0)
    assert ppo[0].published == {}  # published figures are for the atari100k protocol only
    assert ppo[0].ci_low == ppo[0].ci_high == ppo[0].hns  # one seed
    summary = {s.name: s for s in res.hns_summary}
    mine = summary["efficientzero (atari100k), atari100k protocol"]
    assert mine.games == ["breakout", "demonattack", "freeway", "mspacman", "pong"]
    assert mine.mean == pytest.approx(1.45)  # (0.25 + 0.5 + 1.5 + 2 + 3) / 5
    assert mine.median == pytest.approx(1.5)
    assert mine.iqm == pytest.approx((0.5 + 1.5 + 2.0) / 3)  # drop 0.25 and 3.0
    assert summary["ppo (machado), machado protocol"].mean == pytest.approx(1.0)
    ez1_all = summary["EfficientZero V1, published (all 26 games)"]
    assert (round(ez1_all.mean, 3), round(ez1_all.median, 3)) == (1.943, 1.090)
    ez1_same = summary["EfficientZero V1, published (same 5 games)"]
    pub = atari_ref.published_hns("efficientzero_v1")
    assert ez1_same.mean == pytest.approx(np.mean([pub[g] for g in mine.games]))
    assert any("no human/random reference score for game 'tennis'" in n for n in res.notes)
    md = res.report.read_text()
    assert "## Atari: human-normalised scores" in md
    assert "| efficientzero (atari100k), atari100k protocol | 5 | 1.450 | 1.500 | 1.333 |" in md
    assert "| DreamerV3, published (all 26 games) | 26 | 1.247 | 0.494 | 0.543 |" in md
    assert "14.319 (414.1)" in md  # EfficientZero V1 on Breakout: HNS (raw score)
    hns_col = {
        r["run_dir"].rsplit("/", 1)[-1]: r["hns"] for r in csv.DictReader(res.scores_csv.open())
    }
    assert float(hns_col["ez_Breakout_0"]) == pytest.approx(0.4) and hns_col["tennis"] == ""


def test_hns_uses_eval_return_when_comparing_a_non_return_metric(tmp_path):
    make_run(tmp_path, "r", [(0, 1.7), (100_000, 16.1)], env="atari/Breakout")
    res = compare([tmp_path], "train/loss", out=tmp_path / "o")
    assert res.metric == "train/loss" and res.hns_metric == "eval/return_mean"
    assert res.games[0].hns == pytest.approx(0.5)


def test_atari100k_budget_note(tmp_path):
    make_run(tmp_path, "r", [(0, 1.7), (50_000, 16.1)], env="atari/Breakout")
    (note,) = compare([tmp_path], out=tmp_path / "o").notes
    assert "ran 50,000 env steps; the published Atari 100k scores are at 100,000" in note


# ------------------------------------------------------------------------------------ errors


def test_errors_are_one_line_and_say_what_is_wrong(tmp_path):
    with pytest.raises(FrugalError) as e:
        compare([])
    assert one_line(e).startswith("no runs given; pass one or more run directories")
    run = make_run(tmp_path, "r", [(0, 1.0)])
    with pytest.raises(FrugalError) as e:
        compare([run], x="steps")
    assert one_line(e) == "x must be one of env_step, update, wall_s, not 'steps'"
    with pytest.raises(FrugalError) as e:
        compare([tmp_path / "nope"])
    assert one_line(e).startswith(f"'{tmp_path / 'nope'}' does not exist; pass a run directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FrugalError) as e:
        compare([run, empty])
    assert one_line(e).startswith(
        f"'{empty}' is not a run directory (no config.yaml and metrics.jsonl) and has no runs "
        "one or two levels below it"
    )
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.yaml").write_text("algo: dqn\n")
    with pytest.raises(FrugalError) as e:
        compare([half])
    assert one_line(e).startswith(
        f"'{half}' is not a complete run directory: it has config.yaml but no metrics.jsonl"
    )
    with pytest.raises(FrugalError) as e:
        compare([run / "metrics.jsonl"])
    assert "is a file, not a run directory" in one_line(e)
    (half / "metrics.jsonl").write_text("")
    with pytest.raises(FrugalError) as e:
        compare([half])
    assert one_line(e).startswith(f"{half / 'config.yaml'} is not a frugal run config")
    (half / "config.yaml").write_text("algo: [unclosed\n")
    with pytest.raises(FrugalError) as e:
        compare([half])
    assert one_line(e).startswith(f"cannot read {half / 'config.yaml'}:")
    (half / "config.yaml").write_text(yaml.safe_dump(dict(algo="dqn", env=GYM_ENV, run={})))
    with pytest.raises(FrugalError) as e:
        compare([half])
    assert one_line(e) == (
        "no run has metric 'eval/return_mean'; the runs have: none (their metrics.jsonl files "
        "are empty)"
    )


def test_default_out_dir_is_compare_in_working_directory(tmp_path, monkeypatch):
    run = make_run(tmp_path, "r", [(0, 1.0), (1000, 2.0)])
    monkeypatch.chdir(tmp_path)
    res = compare(str(run))
    assert res.out_dir == Path("compare") and (tmp_path / "compare" / "report.md").is_file()
    assert "`r`" in res.report.read_text()  # run paths shown relative to the working directory
