"""Runs that go wrong: divergence, two processes on one run, deaths before the first checkpoint,
stops at any step, damaged checkpoint dirs, and bad input at the boundary."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_agent_contract import COMMON, FAST

import frugal
from frugal import checkpoint
from frugal.agents import ALGORITHMS
from frugal.cli import main
from frugal.errors import FrugalError, Interrupted
from frugal.runner import Runner

ENV = "gym/CartPole-v1"
# log and checkpoint intervals that are not multiples of each other
EVERY = ["run.log_every=96", "run.checkpoint_every=136", "run.eval_every=448"]
STEPS = 512


def _overrides(algo: str) -> list[str]:
    return COMMON + FAST.get(algo, []) + EVERY


def _stable(points: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in p.items() if k != "wall_s" and not k.startswith("perf/")} for p in points
    ]


class _Killed(BaseException):
    """Ends a run the way SIGKILL does: no handler runs, nothing is saved."""


def _stop_at(monkeypatch, step: int, how: str) -> None:
    """Make the runner receive `how` (SIGTERM, SIGINT or a kill) once it reaches env step `step`."""
    collect = Runner._collect_step

    def collect_then_stop(self):
        collect(self)
        if self.env_step == step:
            if how == "kill":
                raise _Killed
            os.kill(os.getpid(), getattr(signal, how))

    monkeypatch.setattr(Runner, "_collect_step", collect_then_stop)


def _train(algo: str, run_dir: Path, extra: list[str] = ()):
    return frugal.train(
        algo, ENV, steps=STEPS, seed=5, run_dir=run_dir, overrides=_overrides(algo) + list(extra)
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, list[dict]]:
    """Each agent's uninterrupted run, trained once for all the stop tests."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("straight")
    return {algo: _stable(_train(algo, root / algo).metrics) for algo in sorted(ALGORITHMS)}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
@pytest.mark.parametrize("how", ["signal", "kill"])
def test_a_stop_at_any_step_resumes_to_the_same_log(algo, how, straight, tmp_path, monkeypatch):
    rng = np.random.default_rng([sorted(ALGORITHMS).index(algo), how == "kill"])
    # num_envs=2: env steps are even; past the first checkpoint, off every interval
    stop = 2 * int(rng.integers(81, 240))
    if how == "signal":
        how = ("SIGTERM", "SIGINT")[int(rng.integers(2))]
    _stop_at(monkeypatch, stop, how)
    with pytest.raises(_Killed if how == "kill" else Interrupted):
        _train(algo, tmp_path / "split")
    monkeypatch.undo()
    resumed = frugal.resume(tmp_path / "split", steps=STEPS)
    assert _stable(resumed.metrics) == straight[algo], f"{how} at env step {stop}"


@pytest.mark.parametrize("algo", ["dqn", "efficientzero"])
def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_one_before(
    algo, straight, tmp_path, monkeypatch
):
    save, writes = torch.save, []

    def save_then_die(obj, path, *args, **kwargs):
        save(obj, path, *args, **kwargs)
        writes.append(path)
        if len(writes) == 2:  # the second checkpoint's tensors are on disk, its state is not
            raise _Killed

    monkeypatch.setattr(checkpoint.torch, "save", save_then_die)
    with pytest.raises(_Killed):
        _train(algo, tmp_path / "split")
    monkeypatch.undo()
    assert list((tmp_path / "split" / "checkpoints").glob(".*.partial"))
    resumed = frugal.resume(tmp_path / "split", steps=STEPS)
    assert _stable(resumed.metrics) == straight[algo]


def test_a_run_killed_before_its_first_checkpoint_starts_again(straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "early"
    _stop_at(monkeypatch, 100, "kill")
    with pytest.raises(_Killed):
        _train("dqn", run_dir)
    monkeypatch.undo()
    assert (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints" / "latest").exists()
    with pytest.raises(FrugalError, match="stopped before its first checkpoint with other"):
        _train("dqn", run_dir, ["agent.lr=1e-3"])
    assert _stable(_train("dqn", run_dir).metrics) == straight["dqn"]


def test_divergence_stops_with_exit_3_and_keeps_the_last_finite_checkpoint(tmp_path):
    run_dir = tmp_path / "diverged"
    cmd = [
        sys.executable, "-m", "frugal", "train", "dqn", "--env", ENV, "--steps", "4000",
        "--run-dir", str(run_dir), *COMMON, "agent.learning_starts=256", "agent.batch_size=16",
        "run.checkpoint_every=256", "run.eval_every=256", "agent.lr=1e6",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "is not finite at update" in err and "the last finite checkpoint is step-" in err
    state = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    weights = [t for t in _tensors(state["agent"]) if t.is_floating_point()]
    assert weights and all(bool(torch.isfinite(t).all()) for t in weights)
    logged = {p["env_step"]: p for p in frugal.load_run(run_dir).metrics if "eval/return_mean" in p}
    score = frugal.evaluate(run_dir)
    assert score["eval/return_mean"] == logged[state["env_step"]]["eval/return_mean"]


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, list | tuple):
        for v in tree:
            yield from _tensors(v)


def _frugal(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "frugal", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait_for_progress(run_dir: Path, proc: subprocess.Popen, step: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "metrics.jsonl").exists():
            points = frugal.load_run(run_dir).metrics
            if points and points[-1]["env_step"] >= step:
                return
        time.sleep(0.2)
    raise AssertionError(f"the run did not reach env step {step}: {proc.poll()}")


def test_one_writer_per_run_and_a_killed_holder_frees_it(tmp_path):
    run_dir = tmp_path / "locked"
    args = [
        *COMMON,
        *FAST["dqn"],
        "run.log_every=64",
        "run.checkpoint_every=128",
        "run.eval_every=0",
    ]
    first = _frugal(
        "train", "dqn", "--env", ENV, "--steps", "2048", "--run-dir", str(run_dir), *args
    )
    _wait_for_progress(run_dir, first, 128)
    second = _frugal("resume", str(run_dir), "--steps", "4096")
    assert second.wait(120) == 2
    err = second.stderr.read().strip()
    assert len(err.splitlines()) == 1 and f"is in use by frugal train (pid {first.pid} on" in err
    assert first.wait(600) == 0, first.stderr.read()
    steps = [p["env_step"] for p in frugal.load_run(run_dir).metrics]
    assert steps == list(range(64, 2049, 64)), "the holder's log must be untouched"

    holder = _frugal("resume", str(run_dir), "--steps", "8192")
    _wait_for_progress(run_dir, holder, 2048 + 128)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert _frugal("resume", str(run_dir), "--steps", "2560").wait(600) == 0


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "dqn"
    frugal.train("dqn", ENV, steps=128, run_dir=run_dir, overrides=COMMON + FAST["dqn"])
    return run_dir


def test_half_written_checkpoints_are_removed_on_the_next_start(finished, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished, run_dir)
    leftover = run_dir / "checkpoints" / ".step-000000000999.partial"
    leftover.mkdir()
    (leftover / "tensors.pt").write_bytes(b"half")
    frugal.resume(run_dir, steps=192)
    assert not leftover.exists()


@pytest.mark.parametrize(
    "pointer, message",
    [("../../outside", "outside"), ("/etc", "outside"), ("\n", "is empty")],
)
def test_a_bad_latest_pointer_is_refused(finished, tmp_path, pointer, message):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished, run_dir)
    (run_dir / "checkpoints" / "latest").write_text(pointer)
    with pytest.raises(FrugalError, match=message):
        frugal.evaluate(run_dir)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.name != ".lock":
            h.update(str(f.relative_to(path)).encode() + f.read_bytes())
    return h.hexdigest()


BAD_TRAIN = [
    (["--seed", "-1"], "run.seed must be in [0, 2^63)"),
    (["--seed", str(2**63)], "run.seed must be in [0, 2^63)"),
    (["run.device=tpu"], "is not a device"),
    (["run.device=cuda:7"] if torch.cuda.is_available() else ["run.device=cuda"], "CUDA device"),
    (["env.num_envs=10000"], "env.num_envs must be in [1, 1024]"),
    (["run.checkpoint_every=-1"], "run.checkpoint_every must be 0 or more"),
    (["run.log_every=-5"], "run.log_every must be 0 or more"),
    (["--preset", "atari"], "is for another env suite"),
    (["agent.torso=foo"], "unknown torso 'foo'"),
    (["agent.lr=inf"], "takes a finite float"),
    (["agent.lr=nan"], "takes a finite float"),
    (["agent.lr=-1"], "agent.lr must be positive"),
    (["agent.grad_clip=-1"], "agent.grad_clip must be positive"),
    (["agent.hidden=0"], "agent.hidden widths must be at least 1"),
    (["agent.target_update_interval=0"], "agent.target_update_interval must be at least 1"),
    (["agent.n_step=0"], "agent.n_step must be at least 1"),
    (["agent.batch_size=0"], "agent.batch_size must be at least 1"),
    (["agent.buffer_size=0"], "agent.buffer_size must be at least 1"),
    (["agent.discount=2"], "agent.discount must be in [0, 1]"),
    (["agent.replay_ratio=-1"], "agent.replay_ratio must be positive"),
    (["agent.buffer_size=1e12"], "needs more memory than this machine has"),
    (["gamma=0.9"], "unknown config key 'gamma' (renamed to 'discount')"),
    (["run.on_nonfinite=ignore"], "run.on_nonfinite must be stop or skip_update"),
]


@pytest.mark.parametrize("extra, expected", BAD_TRAIN)
def test_bad_train_input_is_one_line_exit_2_and_leaves_nothing(
    extra, expected, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as code:
        main(["train", "dqn", "--env", ENV, "--steps", "64", *extra])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_bad_run_dirs_and_runs_are_one_line_exit_2(finished, tmp_path, capsys):
    before = _digest(finished)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["train", "dqn", "--env", ENV, "--run-dir", str(a_file)], "is a file"),
        (["train", "dqn", "--env", ENV, "--run-dir", str(a_file / "run")], "which is a file"),
        (["train", "dqn", "--env", ENV, "--run-dir", str(tmp_path / ("x" * 300))], "too long"),
        (["train", "dqn", "--env", ENV, "--run-dir", os.fsdecode(b"/tmp/\xff")], "UTF-8"),
        (["eval", str(a_file)], "is a file, not a run directory"),
        (["resume", str(a_file)], "is a file, not a run directory"),
        (["resume", str(finished), "run.seed=3"], "changeable: run.* except run.seed"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as code:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert code.value.code == 2 and len(err.splitlines()) == 1 and expected in err, (argv, err)
    assert _digest(finished) == before


def test_version_and_one_line_per_preset(capsys):
    with pytest.raises(SystemExit) as code:
        main(["--version"])
    assert (
        code.value.code == 0 and capsys.readouterr().out.strip() == f"frugal {frugal.__version__}"
    )
    with pytest.raises(SystemExit):
        main(["list"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "--preset" in ln]
    assert len(lines) == sum(len(frugal.agents.agent_module(a).PRESETS) for a in ALGORITHMS)
    assert all(len(ln) <= 100 for ln in lines)


def test_progress_shows_no_eta_before_it_has_a_rate(capsys):
    from frugal.metrics import Progress

    progress = Progress(total_steps=100, start_step=0, enabled=True)
    progress.update(0, 0, 0, None)
    assert "ETA" not in capsys.readouterr().err
    progress._t0 -= 1.0  # one second later, 50 steps done
    progress._last_print = -math.inf
    progress.update(50, 0, 0, None)
    assert "ETA 0:01" in capsys.readouterr().err


def test_damage_and_edits_after_the_fact_are_one_line(finished, tmp_path, capsys):
    import json

    cases = []
    edited = tmp_path / "edited"
    shutil.copytree(finished, edited)
    config = (edited / "config.yaml").read_text()
    (edited / "config.yaml").write_text(config.replace("head_hidden: 128", "head_hidden: 64"))
    cases.append((["resume", str(edited), "--steps", "256"], "does not fit the networks"))
    lacking = tmp_path / "lacking"
    shutil.copytree(finished, lacking)
    state_file = checkpoint.latest(lacking / "checkpoints") / "state.json"
    meta = json.loads(state_file.read_text())
    meta["state"]["__dict__"] = [kv for kv in meta["state"]["__dict__"] if kv[0] != "updates"]
    state_file.write_text(json.dumps(meta))
    cases.append((["eval", str(lacking)], "lacks 'updates'"))
    a_file = tmp_path / "report-file"
    a_file.write_text("x")
    cases.append((["compare", str(finished), "--out", str(a_file)], "is a file"))
    if importlib.util.find_spec("Box2D") is None:
        cases.append((["train", "dqn", "--env", "gym/LunarLander-v3"], "gymnasium[box2d]"))
    for argv, expected in cases:
        with pytest.raises(SystemExit) as code:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert code.value.code == 2 and len(err.splitlines()) == 1 and expected in err, (argv, err)


def test_a_full_disk_keeps_the_previous_checkpoint(finished, tmp_path, monkeypatch):
    run_dir = tmp_path / "full"
    shutil.copytree(finished, run_dir)
    before = checkpoint.latest(run_dir / "checkpoints")

    def full_disk(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 272448 vs 272400"
        )

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        FrugalError, match=r"cannot write checkpoint .*the previous checkpoint \(step-"
    ):
        frugal.resume(run_dir, steps=256)
    assert checkpoint.latest(run_dir / "checkpoints") == before
    assert not list((run_dir / "checkpoints").glob(".*.partial"))
    monkeypatch.undo()
    assert frugal.evaluate(run_dir)["env_step"] == 128


def test_a_reader_follows_a_checkpoint_rotated_while_it_loads(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    checkpoint.save(directory, "step-1", {"step": 1})
    load = checkpoint.load
    rotated = []

    def load_while_rotating(path):
        if not rotated:  # the trainer publishes step-2 and removes step-1 mid-read
            rotated.append(checkpoint.save(directory, "step-2", {"step": 2}))
            raise FrugalError(f"checkpoint {path} is incomplete: tensors.pt missing")
        return load(path)

    monkeypatch.setattr(checkpoint, "load", load_while_rotating)
    assert checkpoint.load_latest(directory) == {"step": 2}


def test_ctrl_c_during_start_up_is_exit_130_without_a_traceback(tmp_path):
    proc = _frugal("train", "dqn", "--env", ENV, "--run-dir", str(tmp_path / "r"))
    time.sleep(0.5)  # still importing torch and building the env
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and err.strip() == "frugal: interrupted"


def test_a_non_finite_gradient_is_never_applied():
    from frugal.nets.optim import clipped_step

    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    (layer(torch.ones(1, 3)) * float("nan")).sum().backward()
    assert not torch.isfinite(clipped_step(optimizer, layer.parameters(), 1.0))
    assert all(torch.equal(a, p) for a, p in zip(before, layer.parameters(), strict=True))
    assert not optimizer.state, "a skipped step leaves the optimiser's moments untouched"
    layer(torch.ones(1, 3)).sum().backward()
    assert torch.isfinite(clipped_step(optimizer, layer.parameters(), 1.0))
    assert not torch.equal(before[0], layer.weight)


def test_skip_update_trains_on_past_non_finite_updates(tmp_path):
    run = frugal.train(
        "dqn", ENV, steps=512, run_dir=tmp_path / "skip",
        overrides=[*COMMON, *FAST["dqn"], "agent.lr=1e6", "run.on_nonfinite=skip_update",
                   "run.log_every=128", "run.eval_every=0"],
    )  # fmt: skip
    skipped = sum(p.get("train/skipped_updates", 0) for p in run.metrics)
    assert skipped > 0 and run.metrics[-1]["env_step"] == 512
    state = checkpoint.load(checkpoint.latest(run.dir / "checkpoints"))
    assert all(
        bool(torch.isfinite(t).all()) for t in _tensors(state["agent"]) if t.is_floating_point()
    )
