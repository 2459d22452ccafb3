"""EfficientZero's reanalysis computes each distinct observation once per update (one target-model
pass for bootstrap values and search roots): its targets equal, bit for bit in fp32, those of the
code path it replaced, kept here as `previous_make_targets`."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_precision import GRID, fill

from frugal.agents.efficientzero import PRESETS, Agent, Config
from frugal.agents.efficientzero.targets import (
    alive_mask,
    make_targets,
    reward_targets,
    td_targets,
)
from frugal.config import apply
from frugal.envs.base import EnvSpec

VECTOR = EnvSpec((4,), np.dtype(np.float32), False, 1, (4,), True, 2)
BOX = EnvSpec((3,), np.dtype(np.float32), False, 1, (3,), False, 1,
              action_low=np.array([-2.0]), action_high=np.array([2.0]))  # fmt: skip


def _values(agent, obs: np.ndarray) -> np.ndarray:
    if len(obs) == 0:
        return np.zeros(0)
    with torch.no_grad():
        net = agent.target
        _, vlog = net.predict(net.represent(torch.as_tensor(obs, device=agent.device)))
    return agent.value_support.decode(vlog).double().cpu().numpy()


def previous_make_targets(agent, rows, envs):
    """The reanalysis before each observation was represented once (fp32): the bootstrap
    observations and the search roots stacked and represented separately."""
    cfg, replay, version, spec = agent.cfg, agent.replay, agent.version, agent.spec
    K, P = cfg.unroll_steps, cfg.unroll_steps + 1
    age = replay.age(rows)
    n = version.td_steps(age)
    win = replay.window_of(rows, envs, K + cfg.td_steps)
    term, trunc = win["terminated"], win["truncated"]
    alive = alive_mask(term, trunc, P)
    td = td_targets(win["rewards"], term, trunc, n, cfg.discount, P)
    reward, reward_mask = reward_targets(
        win["rewards"], term, trunc, K, agent.value_prefix, cfg.lstm_horizon
    )
    pos_rows = rows[:, None] + np.arange(P)[None]
    obs = replay.observations(pos_rows, envs[:, None])
    b_idx, k_idx = np.nonzero(td.discount > 0)
    final = td.from_final[b_idx, k_idx]
    boot_rows = rows[b_idx] + td.boot_row[b_idx, k_idx]
    boot_obs = np.empty((len(b_idx), *spec.obs_shape), dtype=spec.obs_dtype)
    if (~final).any():
        boot_obs[~final] = replay.observations(boot_rows[~final], envs[b_idx][~final])
    if final.any():
        boot_obs[final] = replay.final_observations(boot_rows[final], envs[b_idx][final])
    value = td.partial.copy()
    value[b_idx, k_idx] += td.discount[b_idx, k_idx] * _values(agent, boot_obs)
    stored = replay.search_stats(pos_rows, envs[:, None])
    policy = stored["policy"].copy()
    sampled = stored.get("sampled")
    chosen = alive & (agent.rng.random(len(rows)) < cfg.reanalyze_ratio)[:, None]
    use_search = np.zeros(len(rows), dtype=bool)
    if chosen.any():
        roots = torch.as_tensor(obs[chosen], device=agent.device)
        out, cand = version.search(agent.target, roots, agent.gen, explore=True)
        policy[chosen] = version.policy_target(out)
        if sampled is not None:
            sampled = sampled.copy()
            sampled[chosen] = cand.float().cpu().numpy()
        use_search = version.search_value_mask(age, agent.updates)
        sve = use_search[:, None] & chosen
        if sve.any():
            root_value = np.zeros(chosen.shape)
            root_value[chosen] = out.root_value.double().cpu().numpy()
            value[sve] = root_value[sve]
    out = {
        "obs": obs, "actions": win["actions"][:, :K], "value": value.astype(np.float32),
        "value_mask": td.valid, "reward": reward, "reward_mask": reward_mask, "policy": policy,
        "policy_mask": alive, "td_steps": n, "search_value_used": use_search,
    }  # fmt: skip
    if sampled is not None:
        out["sampled"] = sampled
    return out


def _agent(spec: EnvSpec, preset: str, **settings) -> Agent:
    cfg = Config()
    apply(cfg, "agent", {**PRESETS[preset].agent, "precision": "fp32", "num_simulations": 8,
                         "batch_size": 48, "reanalyze_ratio": 0.7, "mixed_value_start": 0,
                         "mixed_value_threshold": 20, **settings})  # fmt: skip
    torch.manual_seed(0)
    agent = Agent(cfg, spec, 3, torch.device("cpu"), seed=1)
    fill(agent, spec, 90, episode=11)  # many terminals and truncations inside the windows
    agent.target.load_state_dict(agent.net.state_dict())
    return agent


@pytest.mark.parametrize(
    "spec, preset, settings",
    [
        (GRID, "minatar", {}),
        (VECTOR, "cartpole", {"version": "v1"}),  # pUCT, value prefix, shrinking TD horizon
        (BOX, "pendulum", {}),  # sampled search
    ],
    ids=["v2-grid", "v1-vector", "v2-box-sampled"],
)
def test_reanalysis_targets_equal_the_previous_path_bit_for_bit(spec, preset, settings):
    torch.set_num_threads(1)
    agent = _agent(spec, preset, **settings)
    for _ in range(3):  # different batches (and a few updates of the online net between)
        sample = agent.replay.sample(agent.cfg.batch_size, agent.rng, beta=0.5)
        rng, gen = copy.deepcopy(agent.rng), agent.gen.get_state()
        new = make_targets(agent, sample.rows, sample.envs)
        agent.rng, _ = rng, agent.gen.set_state(gen)
        old = previous_make_targets(agent, sample.rows, sample.envs)
        assert old["search_value_used"].any() == (agent.cfg.version == "v2")  # SVE in use
        new["obs"] = new["obs"].cpu().numpy()
        assert set(new) - {"timings"} == set(old)
        for key, expected in old.items():
            np.testing.assert_array_equal(new[key], expected, err_msg=key)
        agent.update()
        agent.target.load_state_dict(agent.net.state_dict())
