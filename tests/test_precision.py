"""agent.precision: the shared rule (frugal.nets.precision) and, for every agent, one update at
bf16 against the same update at fp32.

Tolerance: bf16 keeps 8 bits of mantissa (relative error ~4e-3 per op), so one update's loss and
the parameters after it agree with fp32 to a few per cent of the update's size, not bit for bit.
Each check states its bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frugal.agents.base import Transition
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets.precision import autocast, precision_reason, resolve_precision

GRID = EnvSpec((4, 10, 10), np.dtype(np.uint8), True, 1, (4, 10, 10), True, 3, suite="minatar")
CPU = torch.device("cpu")
WITH_BF16 = frozenset({"avx512f", "avx512_bf16"})
AVX2_ONLY = frozenset({"avx2", "fma"})


def fill(agent, spec: EnvSpec, steps: int, seed: int = 0, episode: int = 37, n: int = 0) -> None:
    """Random transitions into the agent's replay through observe(): binary grids or vectors,
    a terminal every `episode` steps and a truncation every `episode + 13` steps (staggered
    over the `n` envs, by default agent.num_envs)."""
    rng = np.random.default_rng(seed)
    n = n or agent.num_envs

    def obs():
        if spec.pixels:
            return rng.integers(0, 2, (n, *spec.obs_shape)).astype(np.uint8)
        return rng.normal(size=(n, *spec.obs_shape)).astype(np.float32)

    current = obs()
    for t in range(steps):
        nxt, final = obs(), obs()
        phase = t + np.arange(n) * 5
        terminated = phase % episode == episode - 1
        truncated = ~terminated & (phase % (episode + 13) == episode + 12)
        reset = terminated | truncated
        final = np.where(reset.reshape(-1, *[1] * len(spec.obs_shape)), final, nxt)
        if spec.discrete:
            action = rng.integers(0, spec.num_actions, n)
        else:
            action = rng.uniform(-1, 1, (n, spec.num_actions)).astype(np.float32)
        agent.observe(
            Transition(current, action, rng.normal(size=n).astype(np.float32), terminated,
                       truncated, reset, nxt, final)
        )  # fmt: skip
        current = nxt


# ------------------------------------------------------------------------------------ the rule


def test_auto_follows_the_hardware_and_the_observations():
    assert resolve_precision("auto", "cpu", pixels=True, flags=WITH_BF16) == "bf16"
    assert resolve_precision("auto", "cpu", pixels=True, flags=AVX2_ONLY) == "fp32"
    assert resolve_precision("auto", "cpu", pixels=False, flags=WITH_BF16) == "fp32"
    assert resolve_precision("auto", "cpu", flags=frozenset({"amx_bf16"})) == "bf16"
    assert resolve_precision("bf16", "cpu", flags=AVX2_ONLY) == "bf16"  # explicit wins
    assert resolve_precision("fp32", "cpu", flags=WITH_BF16) == "fp32"
    assert "avx512_bf16" in precision_reason("auto", "cpu", flags=WITH_BF16)
    assert precision_reason("fp32", "cpu") == "fp32: set explicitly"
    with pytest.raises(FrugalError, match="agent.precision must be auto, fp32 or bf16"):
        resolve_precision("fp16", "cpu")


def test_small_cpu_batches_stay_fp32():
    x, w = torch.randn(8, 16), torch.randn(16, 16)
    with autocast("bf16", CPU, 8):
        assert (x @ w).dtype is torch.float32
    with autocast("bf16", CPU, 64):
        assert (x @ w).dtype is torch.bfloat16
    with autocast("fp32", CPU, 64):
        assert (x @ w).dtype is torch.float32


# ---------------------------------------------------------------------- bf16 against fp32 updates


def _pair(algo: str, spec: EnvSpec, preset: str, settings: dict, steps: int, num_envs: int = 2):
    """The same agent (preset + settings, same seed, same replay) at fp32 and at bf16."""
    from frugal.agents import agent_module
    from frugal.config import apply

    package = agent_module(algo)
    agents = []
    for name in ("fp32", "bf16"):
        cfg = package.Config()
        apply(cfg, "agent", {**package.PRESETS[preset].agent, **settings, "precision": name})
        torch.manual_seed(0)  # the networks' initialisation
        agent = package.Agent(cfg, spec, num_envs, CPU, seed=3)
        fill(agent, spec, steps, n=num_envs)
        agents.append(agent)
    return agents


def _params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _compare(fp32_agent, bf16_agent, module: str, bounds: dict[str, float]) -> None:
    """One update of each: every metric in `bounds` agrees within its relative tolerance (the
    loss and the gradient norm; parameter steps are no measure after Adam's first, sign-like
    step), and the parameters did move differently (bf16 ran)."""
    before = _params(getattr(fp32_agent, module))
    torch.testing.assert_close(before, _params(getattr(bf16_agent, module)))  # same start
    m32, m16 = fp32_agent.update(), bf16_agent.update()
    for metric, rtol in bounds.items():
        assert m16[metric] == pytest.approx(m32[metric], rel=rtol), metric
    assert not torch.equal(
        _params(getattr(fp32_agent, module)), _params(getattr(bf16_agent, module))
    )


def test_efficientzero_bf16_update_matches_fp32():
    """MinAtar-sized EfficientZero V2, batch 64: loss within 5%, gradient norm within 10%."""
    settings = dict(batch_size=64, num_simulations=4, learning_starts=0, lr_warmup_updates=0)
    fp32, bf16 = _pair("efficientzero", GRID, "minatar", settings, steps=60)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    _compare(fp32, bf16, "net", {"train/loss": 0.05, "train/grad_norm": 0.1})


def test_dqn_bf16_update_matches_fp32():
    """MinAtar DQN torso, batch 64: loss within 5%, gradient norm within 10%."""
    settings = dict(batch_size=64, learning_starts=0, buffer_size=1_000)
    fp32, bf16 = _pair("dqn", GRID, "minatar", settings, steps=80)
    _compare(fp32, bf16, "q", {"train/loss": 0.05, "train/grad_norm": 0.1})


def test_dreamer_bf16_update_matches_fp32():
    """A tiny DreamerV3 on grids, batch 4 x 16: model loss within 2%, its gradient norm within
    10% (the world model's encoder, decoder and heads run in bf16; the RSSM state stays fp32)."""
    settings = dict(size="tiny", batch_size=4, batch_length=16, stoch=8, classes=8,
                    learning_starts=0, replay_size=1_000)  # fmt: skip
    fp32, bf16 = _pair("dreamerv3", GRID, "minatar", settings, steps=80, num_envs=1)
    bounds = {"train/model_loss": 0.02, "train/model_grad_norm": 0.1, "train/critic_loss": 0.05}
    _compare(fp32, bf16, "wm", bounds)


def test_ppo_bf16_update_matches_fp32():
    """PPO's check lives with its other update tests (test_ppo.py): losses within 5%."""
    from test_ppo import test_bf16_update_runs_the_network_in_bf16_and_stays_close_to_fp32 as check

    check()
