"""Short learning test: DQN must learn CartPole well past a random policy (~20) in 6k steps."""

from __future__ import annotations

import pytest
import torch

import frugal


@pytest.mark.learning
def test_dqn_learns_cartpole(tmp_path):
    torch.set_num_threads(1)
    run = frugal.train(
        "dqn",
        "gym/CartPole-v1",
        preset="cartpole",
        steps=6_000,
        seed=0,
        run_dir=tmp_path / "r",
        overrides=[
            "run.progress=false",
            "run.eval_every=2000",
            "run.eval_episodes=5",
            "agent.eps_decay_steps=4000",
        ],
    )
    returns = [p["eval/return_mean"] for p in run.metrics if "eval/return_mean" in p]
    assert max(returns) >= 150, f"DQN did not learn CartPole: eval returns {returns}"
