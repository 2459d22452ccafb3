"""Acting in chunks, locally and on Ray: the schedule, never the speed, decides which weights act
on which env step, so `run.backend=ray` logs exactly what `run.backend=local` logs with the same
settings; runs move between backends on resume; a killed worker is replaced without changing the
result. Ray is started here with two CPUs and stopped at the end (`-m "not ray"` skips these)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from test_agent_contract import FAST, _stable

import frugal
from frugal.errors import FrugalError, Interrupted
from frugal.runner import Runner

ray = pytest.importorskip("ray")

ENV = "gym/CartPole-v1"
COMMON = ["run.progress=false", "env.num_envs=4", "run.eval_episodes=2", "run.eval_envs=2"]
EVERY = ["run.eval_every=128", "run.log_every=32", "run.checkpoint_every=64"]
# chunks of 8 vectorised steps, each acted on with the weights of two chunk ends before
SCHEDULE = ["run.act_chunk=8", "run.act_lag=1", "run.act_slices=2"]
ON_RAY = ["run.backend=ray", "run.actors=2"]
STEPS = 256


def _train(algo: str, run_dir, steps: int = STEPS, extra: list[str] = ()):
    torch.set_num_threads(1)
    overrides = COMMON + FAST.get(algo, []) + EVERY + SCHEDULE + list(extra)
    return frugal.train(algo, ENV, steps=steps, seed=7, run_dir=run_dir, overrides=overrides)


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """Each agent's run on the local backend, trained once for the comparisons."""
    root = tmp_path_factory.mktemp("local")
    cache: dict[tuple[str, int], list[dict]] = {}

    def get(algo: str, steps: int = STEPS) -> list[dict]:
        if (algo, steps) not in cache:
            cache[algo, steps] = _stable(_train(algo, root / f"{algo}-{steps}", steps).metrics)
        return cache[algo, steps]

    return get


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
        logging_level="error",
    )  # fmt: skip
    yield
    ray.shutdown()


def test_chunks_of_one_step_at_lag_0_are_the_unchunked_runner(tmp_path):
    torch.set_num_threads(1)
    for algo in ("dqn", "ppo"):
        overrides = COMMON + FAST[algo] + EVERY
        runs = [
            frugal.train(algo, ENV, steps=256, seed=7, run_dir=tmp_path / f"{algo}{i}",
                         overrides=overrides + extra)
            for i, extra in enumerate([[], ["run.act_chunk=1", "run.act_lag=0"]])
        ]  # fmt: skip
        assert _stable(runs[0].metrics) == _stable(runs[1].metrics), algo


def test_a_stop_mid_chunk_resumes_to_the_same_log(local_runs, tmp_path, monkeypatch):
    collect = Runner._collect_step

    def collect_then_stop(self):
        collect(self)
        if self.env_step == 4 * 37:  # inside a chunk: the run ends it, then saves
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Runner, "_collect_step", collect_then_stop)
    with pytest.raises(Interrupted, match="at env step 160"):
        _train("ppo", tmp_path / "split")
    monkeypatch.undo()
    assert _stable(frugal.resume(tmp_path / "split", steps=STEPS).metrics) == local_runs("ppo")


def test_the_schedule_cannot_change_on_resume(tmp_path):
    run = _train("dqn", tmp_path / "r", steps=64)
    with pytest.raises(FrugalError, match="run.act_lag cannot change when resuming"):
        frugal.resume(run.dir, steps=128, overrides=["run.act_lag=2"])
    with pytest.raises(FrugalError, match="run.actors=2 needs as many env slices"):
        frugal.train("dqn", ENV, steps=64, run_dir=tmp_path / "x", overrides=["run.actors=2"])


@pytest.mark.ray
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_ray_logs_what_local_logs(algo, local_runs, cluster, tmp_path):
    assert _stable(_train(algo, tmp_path / "ray", extra=ON_RAY).metrics) == local_runs(algo)


@pytest.mark.ray
@pytest.mark.parametrize("algo", ["dreamerv3", "efficientzero"])
def test_ray_acts_as_local_acts(algo, local_runs, cluster, tmp_path):
    ray_run = _stable(_train(algo, tmp_path / "ray", extra=ON_RAY).metrics)
    local = local_runs(algo)
    acted = ("env_step", "train/episode_return", "train/episode_length", "train/episodes")
    assert [{k: p.get(k) for k in acted} for p in ray_run] == [
        {k: p.get(k) for k in acted} for p in local
    ]
    assert ray_run == local


@pytest.mark.ray
def test_runs_move_between_backends_on_resume(local_runs, cluster, tmp_path):
    _train("dqn", tmp_path / "to-ray", steps=STEPS // 2)
    on_ray = frugal.resume(tmp_path / "to-ray", steps=STEPS, overrides=ON_RAY)
    assert _stable(on_ray.metrics) == local_runs("dqn")
    _train("dqn", tmp_path / "to-local", steps=STEPS // 2, extra=ON_RAY)
    back = frugal.resume(
        tmp_path / "to-local", steps=STEPS, overrides=["run.backend=local", "run.actors=1"]
    )
    assert _stable(back.metrics) == local_runs("dqn")


@pytest.mark.ray
def test_a_killed_worker_is_replaced_and_the_run_is_unchanged(
    local_runs, cluster, tmp_path, monkeypatch
):
    from frugal.backends.ray import RayBackend

    take, taken = RayBackend.take, []

    def kill_then_take(self):
        taken.append(1)
        if len(taken) == 4:  # mid-run, with requests in flight
            ray.kill(self.workers[1])
        return take(self)

    monkeypatch.setattr(RayBackend, "take", kill_then_take)
    run = _train("dqn", tmp_path / "fault", extra=ON_RAY)
    monkeypatch.undo()
    restarts = [p["workers/restarts"] for p in run.metrics if "workers/restarts" in p]
    assert restarts == [1.0], "the restart is in the log"
    # the envs' state is captured: the new worker continues exactly where the old one was
    assert [
        {k: v for k, v in p.items() if k != "workers/restarts"} for p in _stable(run.metrics)
    ] == local_runs("dqn")
    resumed = frugal.resume(run.dir, steps=STEPS + 64, overrides=ON_RAY)
    assert resumed.metrics[-1]["env_step"] == STEPS + 64


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ray
def test_two_nodes_started_with_ray_start_both_act(tmp_path):
    """A head and a second node on this machine (one CPU each), as on two machines."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    if ray.is_initialized():
        ray.shutdown()  # the run connects to the cluster itself
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    nodes = []
    try:
        for args in (["--head", f"--port={port}", "--include-dashboard=false"],
                     [f"--address=127.0.0.1:{port}"]):  # fmt: skip
            nodes.append(
                subprocess.Popen(
                    [ray_cli, "start", *args, *common],
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            )
            time.sleep(8)  # the head must listen before the second node joins
        run_dir = tmp_path / "two-nodes"
        cmd = [
            sys.executable, "-m", "frugal", "train", "dqn", "--env", ENV, "--steps", "128",
            "--run-dir", str(run_dir), *COMMON, *FAST["dqn"], *SCHEDULE, *ON_RAY,
            f"run.ray_address=127.0.0.1:{port}", "run.log_every=64", "run.eval_every=0",
        ]  # fmt: skip
        proc = subprocess.run(
            cmd, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        points = frugal.load_run(run_dir).metrics
        assert [p["perf/worker_nodes"] for p in points] == [2, 2], "one actor on each node"
    finally:
        for node in reversed(nodes):
            node.terminate()  # ray start --block stops its node's processes
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would remove
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


# EfficientZero drawing batches two updates ahead, its targets computed by a reanalysis worker;
# a new target network every 8 updates, so batches are reanalysed with an older one
PREFETCH = ["agent.prefetch=2", "agent.target_update_interval=8"]
REANALYSE_ON_RAY = ["run.backend=ray", "run.actors=1", "run.reanalysers=1"]


@pytest.fixture(scope="module")
def prefetched(tmp_path_factory):
    """EfficientZero with prefetch on the local backend (reanalysis in the learner's process)."""
    run = _train("efficientzero", tmp_path_factory.mktemp("prefetch") / "local", extra=PREFETCH)
    return _stable(run.metrics)


def _kill_reanalyser_at(monkeypatch, call: int) -> None:
    from frugal.backends.reanalysis import RayReanalysers

    take, taken = RayReanalysers.take, []

    def kill_then_take(self, key):
        taken.append(key)
        if len(taken) == call:  # mid-run, with batches in flight
            ray.kill(self.workers[0])
        return take(self, key)

    monkeypatch.setattr(RayReanalysers, "take", kill_then_take)


@pytest.mark.ray
def test_reanalysis_workers_give_the_targets_of_one_process(prefetched, cluster, tmp_path):
    run = _train("efficientzero", tmp_path / "ray", extra=PREFETCH + REANALYSE_ON_RAY)
    assert _stable(run.metrics) == prefetched
    assert any("train/loss" in p for p in prefetched)


@pytest.mark.ray
def test_a_killed_reanalyser_is_replaced_and_the_run_is_unchanged(
    prefetched, cluster, tmp_path, monkeypatch
):
    _kill_reanalyser_at(monkeypatch, 20)
    run = _train("efficientzero", tmp_path / "fault", extra=PREFETCH + REANALYSE_ON_RAY)
    monkeypatch.undo()
    restarts = [p["workers/restarts"] for p in run.metrics if "workers/restarts" in p]
    assert restarts == [1.0], "the restart is in the log"
    assert [
        {k: v for k, v in p.items() if k != "workers/restarts"} for p in _stable(run.metrics)
    ] == prefetched
    resumed = frugal.resume(run.dir, steps=STEPS + 64, overrides=REANALYSE_ON_RAY)
    assert resumed.metrics[-1]["env_step"] == STEPS + 64


@pytest.mark.ray
def test_a_reanalyser_that_cannot_be_restarted_stops_the_run_saved(
    prefetched, cluster, tmp_path, monkeypatch
):
    from frugal.backends import reanalysis

    monkeypatch.setattr(reanalysis, "TRIES", 0)
    _kill_reanalyser_at(monkeypatch, 20)
    with pytest.raises(FrugalError, match="reanalysis worker 0 failed .* could not be restarted"):
        _train("efficientzero", tmp_path / "lost", extra=PREFETCH + REANALYSE_ON_RAY)
    monkeypatch.undo()
    # the batches in flight are in the checkpoint: the run continues in one process exactly
    local = ["run.backend=local", "run.reanalysers=0"]
    back = frugal.resume(tmp_path / "lost", steps=STEPS, overrides=local)
    assert _stable(back.metrics) == prefetched


@pytest.mark.ray
def test_a_prefetching_run_moves_to_reanalysis_workers_on_resume(prefetched, cluster, tmp_path):
    _train("efficientzero", tmp_path / "to-ray", steps=STEPS // 2, extra=PREFETCH)
    on_ray = frugal.resume(tmp_path / "to-ray", steps=STEPS, overrides=REANALYSE_ON_RAY)
    assert _stable(on_ray.metrics) == prefetched
