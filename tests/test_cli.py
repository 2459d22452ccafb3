"""Bad input at the boundary: one clear line, exit status 2, no traceback, nothing lost."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import frugal
from frugal.cli import main
from frugal.config import Config, EnvConfig, RunConfig, convert, parse_overrides
from frugal.errors import FrugalError

FAST = ["run.progress=false", "agent.learning_starts=64", "run.eval_episodes=1"]


def _fail(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, f"expected one line, got:\n{err}"
    assert err.startswith("frugal: error: ")
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "dqn"
    frugal.train("dqn", "gym/CartPole-v1", steps=128, run_dir=run_dir, overrides=FAST)
    return run_dir


def _checkpoint_digest(run_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((run_dir / "checkpoints").rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["train", "dqm", "--env", "gym/CartPole-v1"],
            "unknown algorithm 'dqm' (did you mean dqn?)",
        ),
        (["train", "dqn", "--env", "gym/CartPole-v2"], "did you mean CartPole-v1"),
        (["train", "dqn", "--env", "gim/CartPole-v1"], "unknown env suite 'gim'"),
        (["train", "dqn", "--env", "atari/Breakot"], "did you mean"),
        (["train", "dqn", "--env", "minatar/breakut"], "did you mean breakout"),
        (
            ["train", "dqn", "--env", "gym/CartPole-v1", "--preset", "cartpol"],
            "did you mean cartpole",
        ),
        (["train", "dqn", "--env", "gym/CartPole-v1", "agent.lrr=1"], "did you mean agent.lr,"),
        (["train", "dqn", "--env", "gym/CartPole-v1", "lr=fast"], "'agent.lr' takes float"),
        (["train", "dqn", "--env", "gym/CartPole-v1", "agent.dueling=maybe"], "true or false"),
        (["train", "dqn", "--env", "gym/CartPole-v1", "agent.batch_size=1.5"], "takes int"),
        (["train", "dqn", "--env", "gym/Pendulum-v1", "--steps", "10"], "discrete action"),
        (["train", "dqn", "--env", "gym/CartPole-v1", "env.protocol=machado"], "unknown protocol"),
        (["train", "dqn"], "--env"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["resume", "/nonexistent/run"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert expected in _fail(argv, capsys)
    assert list(tmp_path.iterdir()) == []  # no empty run directory left behind


def test_resume_refuses_bad_overrides_and_keeps_the_checkpoint(finished_run, capsys):
    before = _checkpoint_digest(finished_run)
    assert "cannot change when resuming" in _fail(
        ["resume", str(finished_run), "agent.hidden=32,32"], capsys
    )
    assert "did you mean" in _fail(["resume", str(finished_run), "agent.l=1"], capsys)
    assert "already at env step 128" in _fail(
        ["resume", str(finished_run), "--steps", "64"], capsys
    )
    assert "already holds a run" in _fail(
        ["train", "dqn", "--env", "gym/CartPole-v1", "--run-dir", str(finished_run)], capsys
    )
    assert _checkpoint_digest(finished_run) == before


def test_resume_records_changed_hyperparameters_as_typed_values(finished_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    frugal.resume(run_dir, steps=160, overrides=["agent.lr=5e-4"])
    reloaded = frugal.runs.load_config(run_dir)
    assert reloaded.agent.lr == 5e-4
    assert reloaded.history[-1] == {"env_step": 128, "set": {"agent.lr": 5e-4, "run.steps": 160}}


def test_directory_without_run_or_with_broken_pointer(tmp_path, finished_run, capsys):
    assert "not a frugal run directory" in _fail(["eval", str(tmp_path)], capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    assert "no checkpoint" in _fail(["eval", str(broken)], capsys)
    (broken / "config.yaml").write_text("algo: [unclosed")
    assert "not a valid config" in _fail(["eval", str(broken)], capsys)


def test_real_process_prints_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "frugal", "train", "dqn", "--env", "gym/CartPole-v1", "discount=x"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "frugal: error: config key 'agent.discount' takes float, got 'x'"


def test_key_value_overrides_convert_and_resolve_sections():
    config = Config(
        "dqn", "x", EnvConfig(), RunConfig(), frugal.agents.agent_module("dqn").Config()
    )
    parsed = parse_overrides(["lr=1e-3", "run.steps=2e4", "hidden=64,64", "eval_every=5"], config)
    assert parsed == {
        "env": {},
        "run": {"steps": "2e4", "eval_every": "5"},
        "agent": {"lr": "1e-3", "hidden": "64,64"},
    }
    assert convert("2e4", int, "k") == 20000
    assert convert("64,64", tuple[int, ...], "k") == (64, 64)
    assert convert("none", float | None, "k") is None
    with pytest.raises(FrugalError, match="expected key=value"):
        parse_overrides(["lr"], config)


def test_config_records_what_auto_precision_resolved_to(finished_run):
    from frugal.nets.precision import precision_reason

    detected = frugal.runs.load_config(finished_run).detected
    assert detected == {"agent.precision": precision_reason("auto", "cpu", pixels=False)}
    assert detected["agent.precision"].startswith("fp32: auto")  # vector obs stay fp32 on a CPU
