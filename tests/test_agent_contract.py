"""The contract every registered agent meets: train, checkpoint, resume exactly, evaluate (with
video), refuse bad checkpoints, survive SIGKILL. A new agent is covered by joining the registry
and adding its small-and-fast settings to FAST below."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import frugal
from frugal.agents import ALGORITHMS
from frugal.errors import FrugalError
from frugal.viewer.pages import read_page

# settings that make each agent cheap enough for a contract test (not for learning)
FAST: dict[str, list[str]] = {
    "dqn": ["agent.learning_starts=64", "agent.batch_size=16", "agent.buffer_size=2000"],
    "ppo": ["agent.num_steps=32", "agent.num_minibatches=2", "agent.update_epochs=2"],
    "dreamerv3": [
        "agent.size=tiny",
        "agent.batch_size=4",
        "agent.batch_length=8",
        "agent.learning_starts=64",
        "agent.train_ratio=4",  # one update every 8 env steps
        "agent.stoch=4",
        "agent.classes=4",
    ],
    "efficientzero": ["agent.num_simulations=4", "agent.batch_size=16", "agent.learning_starts=64"],
}
COMMON = ["run.progress=false", "env.num_envs=2", "run.eval_episodes=2", "run.eval_envs=2"]
STEPS = 256
VOLATILE = ("wall_s",)


def _stable(points: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in p.items() if k not in VOLATILE and not k.startswith("perf/")}
        for p in points
    ]


def _overrides(algo: str, every: int) -> list[str]:
    return (
        COMMON
        + FAST.get(algo, [])
        + [
            f"run.eval_every={every}",
            f"run.log_every={every // 2}",
            f"run.checkpoint_every={every}",
        ]
    )


@pytest.fixture(params=sorted(ALGORITHMS))
def algo(request) -> str:
    return request.param


def test_resume_continues_exactly_as_uninterrupted(algo, tmp_path):
    torch.set_num_threads(1)
    overrides = _overrides(algo, STEPS // 2)
    straight = frugal.train(
        algo,
        "gym/CartPole-v1",
        steps=2 * STEPS,
        seed=3,
        run_dir=tmp_path / "straight",
        overrides=overrides,
    )
    first = frugal.train(
        algo,
        "gym/CartPole-v1",
        steps=STEPS,
        seed=3,
        run_dir=tmp_path / "split",
        overrides=overrides,
    )
    resumed = frugal.resume(first.dir, steps=2 * STEPS)
    a, b = _stable(straight.metrics), _stable(resumed.metrics)
    assert [p["env_step"] for p in a] == [p["env_step"] for p in b]
    assert a == b, "a resumed run must log exactly what the uninterrupted run logs"
    history = resumed.config.history
    assert history and history[-1]["set"] == {"run.steps": 2 * STEPS}


def test_evaluate_reports_raw_scores_and_writes_video(algo, tmp_path):
    import imageio.v2 as imageio

    run = frugal.train(
        algo,
        "gym/CartPole-v1",
        steps=128,
        seed=0,
        run_dir=tmp_path / "r",
        overrides=_overrides(algo, 128),
    )
    result = run.evaluate(episodes=2, video=True, viewer=True)
    assert result["eval/episodes"] == 2
    assert result["eval/return_mean"] >= 1  # CartPole pays 1 per step survived
    video = Path(result["video"])
    frames = imageio.mimread(video, memtest=False)
    assert len(frames) >= 2 and frames[0].ndim == 3
    # the episode pages: every step with its frame and what the agent computed (view_record)
    episodes = [read_page(p) for p in result["viewer"]]
    assert [len(e["steps"]) for e in episodes] == [len(e["frames"]) for e in episodes]
    assert sum(len(e["steps"]) for e in episodes) == 2 * result["eval/length_mean"]
    assert all(step["record"] for e in episodes for step in e["steps"]), f"{algo}: no view_record"


def test_bad_checkpoints_are_refused(algo, tmp_path):
    run = frugal.train(
        algo,
        "gym/CartPole-v1",
        steps=128,
        seed=0,
        run_dir=tmp_path / "r",
        overrides=_overrides(algo, 128),
    )
    ckpt = frugal.checkpoint.latest(run.dir / "checkpoints")
    (ckpt / "tensors.pt").write_bytes(b"not a zip file")
    with pytest.raises(FrugalError, match="cannot be read"):
        frugal.resume(run.dir, steps=256)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    run_dir = tmp_path / "r"
    frugal.train(
        "dqn", "gym/CartPole-v1", steps=128, run_dir=run_dir, overrides=_overrides("dqn", 128)
    )
    ckpt = frugal.checkpoint.latest(run_dir / "checkpoints")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Exploit()}, ckpt / "tensors.pt")
    with pytest.raises(FrugalError):
        frugal.evaluate(run_dir)
    assert not marker.exists(), "loading a checkpoint must not execute pickled code"


def _metrics(run_dir: Path) -> list[dict]:
    return frugal.load_run(run_dir).metrics


def test_sigkill_loses_at_most_one_checkpoint_interval(algo, tmp_path):
    run_dir = tmp_path / "killed"
    interval, total = 128, 4096
    cmd = [
        sys.executable,
        "-m",
        "frugal",
        "train",
        algo,
        "--env",
        "gym/CartPole-v1",
        "--steps",
        str(total),
        "--run-dir",
        str(run_dir),
        *COMMON,
        *FAST.get(algo, []),
        f"run.checkpoint_every={interval}",
        f"run.log_every={interval // 2}",
        "run.eval_every=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        points = _metrics(run_dir) if (run_dir / "config.yaml").exists() else []
        if points and points[-1]["env_step"] >= 2 * interval + interval // 2:
            break  # a checkpoint is written and the run is past it
        time.sleep(0.2)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
    assert time.time() < deadline, "the run made too little progress to be killed mid-way"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged = _metrics(run_dir)[-1]["env_step"]
    saved_step = frugal.checkpoint.load(frugal.checkpoint.latest(run_dir / "checkpoints"))[
        "env_step"
    ]
    assert logged - saved_step <= interval

    resumed = frugal.resume(
        run_dir, steps=saved_step + 2 * interval, overrides=["run.progress=false"]
    )
    steps = [p["env_step"] for p in resumed.metrics]
    assert steps == sorted(set(steps)), "no log point may be duplicated after a resume"
    assert steps[-1] == saved_step + 2 * interval
