"""EfficientZero's batches drawn ahead (agent.prefetch=L): the batch of update v is the one an
update would have drawn for itself as update v - L began (replay, priorities, random stream and
target network of that moment), and a run with batches in flight resumes exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_agent_contract import FAST, _stable
from test_precision import GRID, fill

import frugal
from frugal.agents.efficientzero import PRESETS, Agent, Config
from frugal.agents.efficientzero.prefetch import search_seed
from frugal.agents.efficientzero.targets import assemble, prepare_targets, reanalyse
from frugal.config import apply
from frugal.errors import FrugalError

ENV = "gym/CartPole-v1"
# every 8 updates a new target network, so batches are reanalysed with an older one
PREFETCH = ["agent.prefetch=2", "agent.target_update_interval=8"]
COMMON = ["run.progress=false", "env.num_envs=4", "run.eval_episodes=2", "run.eval_envs=2",
          "run.eval_every=128", "run.log_every=32", "run.checkpoint_every=64"]  # fmt: skip


def _without_prefetch(agent: Agent) -> Agent:
    """A learner that draws its own batches, in `agent`'s state."""
    cfg = copy.deepcopy(agent.cfg)
    cfg.prefetch = 0
    ref = Agent(cfg, GRID, agent.num_envs, torch.device("cpu"), seed=agent.seed)
    ref.load_state_dict(agent.state_dict())
    return ref


def _draw(ref: Agent, update: int):
    """The batch `ref` draws and reanalyses now, its search seeded as that of `update`."""
    sample = ref.replay.sample(ref.cfg.batch_size, ref.rng, beta=ref.per_beta())
    job = prepare_targets(ref, sample.rows, sample.envs)
    frames = torch.as_tensor(job["frames"])
    generator = torch.Generator().manual_seed(search_seed(ref.seed, update))
    targets = assemble(job, reanalyse(ref, job, frames, ref.target, generator), frames)
    return sample.index, sample.weights, targets


def test_the_batch_of_update_v_is_drawn_as_update_v_minus_L_begins():
    torch.set_num_threads(1)
    L = 2
    cfg = Config()
    apply(cfg, "agent", {**PRESETS["minatar"].agent, "num_simulations": 4, "batch_size": 24,
                         "reanalyze_ratio": 0.7, "mixed_value_start": 0,
                         "mixed_value_threshold": 20, "prefetch": L,
                         "target_update_interval": 3})  # fmt: skip
    torch.manual_seed(0)
    agent = Agent(cfg, GRID, 3, torch.device("cpu"), seed=1)
    fill(agent, GRID, 60, episode=11)
    consumed, expected = {}, {}
    take = agent.prefetch.batch

    def recording():
        consumed[agent.updates] = take()
        return consumed[agent.updates]

    agent.prefetch.batch = recording
    for u in range(7):
        # as update u begins, batch u + L is drawn (the first update draws batches 0..L)
        ref = _without_prefetch(agent)
        for v in range(L + 1) if u == 0 else [u + L]:
            expected[v] = _draw(ref, v)
        agent.update()
        fill(agent, GRID, 2, seed=u + 1, episode=11)  # the replay grows between updates
    assert sorted(consumed) == list(range(7))
    for v, (index, weights, targets) in consumed.items():
        want_index, want_weights, want = expected[v]
        np.testing.assert_array_equal(index, want_index, err_msg=f"update {v}")
        np.testing.assert_array_equal(weights, want_weights, err_msg=f"update {v}")
        assert want["search_value_used"].any()
        for key, value in want.items():
            if key != "timings":
                np.testing.assert_array_equal(np.asarray(targets[key]), np.asarray(value),
                                              err_msg=f"{key} of update {v}")  # fmt: skip


def _train(run_dir, steps: int, extra: list[str] = ()):
    torch.set_num_threads(1)
    overrides = COMMON + FAST["efficientzero"] + PREFETCH + list(extra)
    return frugal.train("efficientzero", ENV, steps=steps, seed=3, run_dir=run_dir,
                        overrides=overrides)  # fmt: skip


def test_a_run_with_batches_in_flight_resumes_exactly(tmp_path):
    whole = _train(tmp_path / "whole", 256)
    _train(tmp_path / "split", 128)
    with pytest.raises(FrugalError, match="agent.prefetch cannot change when resuming"):
        frugal.resume(tmp_path / "split", steps=256, overrides=["agent.prefetch=1"])
    resumed = frugal.resume(tmp_path / "split", steps=256)
    assert _stable(resumed.metrics) == _stable(whole.metrics)
    assert any(p.get("train/loss") for p in whole.metrics)


def test_reanalysis_workers_need_an_agent_that_draws_ahead(tmp_path):
    with pytest.raises(FrugalError, match="dqn has no reanalysis to hand out"):
        frugal.train("dqn", ENV, steps=64, run_dir=tmp_path / "a",
                     overrides=["run.reanalysers=1"])  # fmt: skip
    with pytest.raises(FrugalError, match="set agent.prefetch to 1 or more"):
        frugal.train("efficientzero", ENV, steps=64, run_dir=tmp_path / "b",
                     overrides=["run.reanalysers=1"])  # fmt: skip


def test_progress_shows_the_workers_busy_share_and_the_staleness(capsys):
    from frugal.metrics import Progress

    staleness = "act lag 1 chunk of 8, prefetch 2"
    progress = Progress(total_steps=100, start_step=0, enabled=True)
    progress.update(10, 0, 0, None, {"act": (2, 1.0), "reanalyse": (1, 0.5)}, staleness)
    assert "[act 2x, reanalyse 1x, act lag 1 chunk of 8, prefetch 2]" in capsys.readouterr().err
    progress._last_print -= 4.0  # four seconds later: 6 s of acting on 2 workers, 1 s of 1
    progress.update(100, 0, 0, None, {"act": (2, 7.0), "reanalyse": (1, 1.5)}, staleness)
    assert "[act 2x 75% busy, reanalyse 1x 25% busy, act lag" in capsys.readouterr().err
