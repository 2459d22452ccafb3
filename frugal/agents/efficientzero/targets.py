"""EfficientZero's learning targets: the pure, batched target functions (numpy, exact) and the
reanalysis that turns sampled replay positions into a batch of unroll targets.

The targets follow EfficientZero: an n-step TD target that stops at a terminal (no bootstrap) or
a truncation (bootstrap from the final observation); rewards or value prefixes (sums of rewards
since the last LSTM reset) for each unroll step; zero reward and value targets after a terminal,
and masks after a truncation. V1 shortens the TD horizon of old data (`off_policy_td_steps`),
V2 replaces the value target of old data by the root value of a fresh search
(`search_value_mask`, SVE); which applies is the version's choice (v1.py, v2.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from frugal.nets import precision

if TYPE_CHECKING:
    from frugal.agents.efficientzero.agent import Agent

# ------------------------------------------------------------------------------ target functions


def alive_mask(terminated: np.ndarray, truncated: np.ndarray, positions: int) -> np.ndarray:
    """bool [B, positions]: position t+k still belongs to the game of position t (no end among
    moves t .. t+k-1). terminated / truncated: bool [B, L] for moves t .. t+L-1, L >= P - 1."""
    ended = terminated | truncated
    out = np.ones((len(ended), positions), dtype=bool)
    if positions > 1:
        out[:, 1:] = ~np.cumsum(ended[:, : positions - 1], axis=1).astype(bool)
    return out


def after_terminal_mask(
    terminated: np.ndarray, truncated: np.ndarray, positions: int
) -> np.ndarray:
    """bool [B, positions]: the game of position t ended with a terminal before position t+k
    (so t+k is an absorbing state: value 0, reward 0). After a truncation it is False."""
    alive = alive_mask(terminated, truncated, positions)
    if positions <= 1:
        return np.zeros_like(alive)
    head = (terminated | truncated)[:, : positions - 1]
    first = head.argmax(1)
    first_terminal = head.any(1) & terminated[np.arange(len(head)), first]
    return ~alive & first_terminal[:, None]


def reward_targets(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    unroll: int,
    value_prefix: bool = False,
    horizon: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets of the reward head at unroll steps k = 1..K (the move t+k-1 led there).

    rewards, terminated, truncated: [B, L] for moves t .. t+L-1, L >= K.
    Returns (targets float32 [B, K], mask bool [B, K]). A move of the game of t gives its reward;
    after a terminal the reward is 0; after a truncation the step is masked. With value_prefix,
    target k is the sum of the per-step targets since the last reset, the LSTM being reset after
    every `horizon` steps (steps 1..h, h+1..2h, ...)."""
    alive = alive_mask(terminated, truncated, unroll)  # move t+k-1 is in the game
    absorbing = after_terminal_mask(terminated, truncated, unroll)
    per_step = np.where(alive, rewards[:, :unroll], 0.0).astype(np.float32)
    mask = alive | absorbing
    if not value_prefix:
        return per_step, mask
    out = np.zeros_like(per_step)
    running = np.zeros(len(per_step), dtype=np.float32)
    for k in range(unroll):
        if k % horizon == 0:
            running = np.zeros_like(running)
        running = running + per_step[:, k]
        out[:, k] = running
    return out, mask


@dataclass
class TDTargets:
    """n-step value targets without their bootstrap values, for positions k = 0..P-1.

    partial: float64 [B, P] discounted rewards up to the bootstrap.
    boot_row: int64 [B, P] offset from t of the bootstrap: the row whose observation
        (from_final False) or whose move's final observation (from_final True) is valued.
    from_final: bool [B, P] bootstrap from the final observation of a truncated move.
    discount: float64 [B, P] gamma^steps, 0 where there is no bootstrap (terminal, or masked).
    valid: bool [B, P] the target is known (False after a truncation ended the game of t).
    Target = partial + discount * V(bootstrap observation)."""

    partial: np.ndarray
    boot_row: np.ndarray
    from_final: np.ndarray
    discount: np.ndarray
    valid: np.ndarray


def td_targets(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    n: np.ndarray,
    gamma: float,
    positions: int,
) -> TDTargets:
    """n-step TD targets for positions t+k, k = 0..P-1, each sample with its own horizon.

    rewards, terminated, truncated: [B, L] for moves t .. t+L-1 with L >= P - 1 + max(n).
    n: int [B] horizons (>= 1). The sum stops at the first end of the game: a terminal adds its
    reward and no bootstrap; a truncation adds its reward and bootstraps from that move's final
    observation with gamma^(steps taken). Positions after the game's end: 0 after a terminal,
    invalid after a truncation."""
    batch = len(rewards)
    n = np.asarray(n, dtype=np.int64)
    nmax = int(n.max())
    if rewards.shape[1] < positions - 1 + nmax:
        raise ValueError(f"need {positions - 1 + nmax} moves of rewards, got {rewards.shape[1]}")
    ended = terminated | truncated
    alive = alive_mask(terminated, truncated, positions)
    absorbing = after_terminal_mask(terminated, truncated, positions)
    partial = np.zeros((batch, positions))
    boot_row = np.zeros((batch, positions), dtype=np.int64)
    from_final = np.zeros((batch, positions), dtype=bool)
    discount = np.zeros((batch, positions))
    for k in range(positions):
        running = alive[:, k].copy()  # still summing
        for i in range(nmax):
            step = running & (i < n)
            partial[:, k] += np.where(step, gamma**i * rewards[:, k + i], 0.0)
            trunc = step & truncated[:, k + i] & ~terminated[:, k + i]
            boot_row[:, k] = np.where(trunc, k + i, boot_row[:, k])
            from_final[:, k] |= trunc
            discount[:, k] = np.where(trunc, gamma ** (i + 1), discount[:, k])
            last = step & (i == n - 1) & ~ended[:, k + i]
            boot_row[:, k] = np.where(last, k + n, boot_row[:, k])
            discount[:, k] = np.where(last, gamma**n, discount[:, k])
            running = step & ~ended[:, k + i]
    return TDTargets(partial, boot_row, from_final, discount, alive | absorbing)


def off_policy_td_steps(age: np.ndarray, td_steps: int, auto_td_steps: int) -> np.ndarray:
    """EfficientZero V1's off-policy correction: the TD horizon shrinks by one for every
    `auto_td_steps` transitions of data age, clipped to [1, td_steps]. age: int [B] -> int [B]."""
    shrink = np.asarray(age, dtype=np.int64) // max(1, int(auto_td_steps))
    return np.clip(td_steps - shrink, 1, td_steps).astype(np.int64)


def search_value_mask(
    age: np.ndarray, updates: int, start_updates: int, threshold: int
) -> np.ndarray:
    """EfficientZero V2's mixed value target (SVE): bool [B], True where the value target comes
    from the reanalysis search's root value — once `updates` >= `start_updates`, for data older
    than the newest `threshold` transitions; the rest keep the n-step TD target."""
    age = np.asarray(age)
    if updates < start_updates:
        return np.zeros(age.shape, dtype=bool)
    return age >= threshold


# ------------------------------------------------------------------------------------ reanalysis


@dataclass
class TargetFrames:
    """Every observation one update needs, each stacked once.

    frames: [U, *obs_shape] as stored (numpy): the distinct (row, env) observations, then the
        final observations of truncated moves that are bootstrapped from.
    positions: int64 [B, P] index into frames of position t+k (the unroll's inputs).
    boot: int64 [N] index into frames of each bootstrap observation (td.discount > 0, row-major).
    """

    frames: np.ndarray
    positions: np.ndarray
    boot: np.ndarray


def gather_frames(agent: Agent, rows: np.ndarray, envs: np.ndarray, td: TDTargets) -> TargetFrames:
    """Stack each distinct observation among the unroll positions and the bootstrap rows once."""
    replay = agent.replay
    num_envs = replay.num_envs
    positions = td.partial.shape[1]
    b_idx, k_idx = np.nonzero(td.discount > 0)
    final = td.from_final[b_idx, k_idx]
    boot_rows = rows[b_idx] + td.boot_row[b_idx, k_idx]
    pos_rows = rows[:, None] + np.arange(positions)[None]
    keys = np.concatenate([
        (pos_rows * num_envs + envs[:, None]).ravel(),
        boot_rows[~final] * num_envs + envs[b_idx][~final],
    ])  # fmt: skip
    distinct, inverse = np.unique(keys, return_inverse=True)
    frames = replay.observations(distinct // num_envs, distinct % num_envs)
    boot = np.empty(len(b_idx), dtype=np.int64)
    boot[~final] = inverse[pos_rows.size :]
    if final.any():
        finals = replay.final_observations(boot_rows[final], envs[b_idx][final])
        boot[final] = len(frames) + np.arange(len(finals))
        frames = np.concatenate([frames, finals])
    return TargetFrames(frames, inverse[: pos_rows.size].reshape(pos_rows.shape), boot)


def prepare_targets(agent: Agent, rows: np.ndarray, envs: np.ndarray) -> dict[str, Any]:
    """What reanalysing B sampled positions reads from the replay and the learner's random
    stream, as numpy arrays: the job a reanalyser is handed (`reanalyse`), so the observations
    shipped are the distinct ones the batch needs, never the replay.

    frames [U, ...], positions [B, K+1], boot [N] (TargetFrames); chosen bool [B, K+1] (the
    positions whose policy is re-searched, `reanalyze_ratio`); partial, discount float64 and
    valid bool [B, K+1] (TDTargets); policy [B, K+1, P] and sampled [B, K+1, K', D] or None (the
    acting search's statistics); sve bool [B] (the version's search-value mask as of now);
    actions [B, K, ...], reward, reward_mask [B, K], alive [B, K+1], td_steps [B]."""
    cfg, replay, version = agent.cfg, agent.replay, agent.version
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
    frames = gather_frames(agent, rows, envs, td)
    stored = replay.search_stats(pos_rows, envs[:, None])
    chosen = alive & (agent.rng.random(len(rows)) < cfg.reanalyze_ratio)[:, None]
    return {
        "frames": frames.frames,
        "positions": frames.positions,
        "boot": frames.boot,
        "chosen": chosen,
        "partial": td.partial,
        "discount": td.discount,
        "valid": td.valid,
        "policy": stored["policy"],
        "sampled": stored.get("sampled"),
        "sve": version.search_value_mask(age, agent.updates),
        "actions": win["actions"][:, :K],
        "reward": reward,
        "reward_mask": reward_mask,
        "alive": alive,
        "td_steps": n,
    }


def reanalyse(
    agent: Agent,
    job: dict[str, Any],
    frames: torch.Tensor,
    net: torch.nn.Module,
    generator: torch.Generator,
) -> dict[str, Any]:
    """The targets that need the target model `net`: bootstrap values, and one batched search
    over the chosen positions for the policy targets (and V2's search values). The target model
    represents each distinct observation it needs once, for both its bootstrap value and its
    search root. `agent` gives the search version, supports, precision and device (the learner,
    or a reanalysis worker's copy); `frames` is job["frames"] on that device.

    Returns value float32 [B, K+1], policy [B, K+1, P], sampled (or None), search_value_used
    bool [B] and timings."""
    version, device = agent.version, agent.device
    chosen, boot, discount = job["chosen"], job["boot"], job["discount"]
    policy, sampled = job["policy"].copy(), job["sampled"]
    timings: dict[str, float] = {}

    # one target-model pass over the distinct observations that are valued or searched from
    t0 = time.perf_counter()
    roots = job["positions"][chosen]
    needed = np.unique(np.concatenate([boot, roots]))
    latent, policy_out, vlog = agent.encode(net, frames[torch.as_tensor(needed, device=device)])
    value = job["partial"].copy()
    if len(boot):
        at = torch.as_tensor(np.searchsorted(needed, boot), device=device)
        boot_value = agent.value_support.decode(vlog[at]).double().cpu().numpy()
        b_idx, k_idx = np.nonzero(discount > 0)
        value[b_idx, k_idx] += discount[b_idx, k_idx] * boot_value
    timings["perf/bootstrap_s"] = time.perf_counter() - t0

    # policy (and search value) reanalysis: one batched search over the chosen positions
    use_search = np.zeros(len(chosen), dtype=bool)
    t0 = time.perf_counter()
    if chosen.any():
        at = torch.as_tensor(np.searchsorted(needed, roots), device=device)
        encoded = (latent[at], policy_out[at], vlog[at])
        out, cand = version.search(net, latent[at], generator, True, encoded)
        policy[chosen] = version.policy_target(out)
        if sampled is not None:
            sampled = sampled.copy()
            sampled[chosen] = cand.float().cpu().numpy()
        use_search = job["sve"]
        sve = use_search[:, None] & chosen
        if sve.any():
            root_value = np.zeros(chosen.shape)
            root_value[chosen] = out.root_value.double().cpu().numpy()
            value[sve] = root_value[sve]
    timings["perf/reanalysis_s"] = time.perf_counter() - t0
    return {
        "value": value.astype(np.float32),
        "policy": policy,
        "sampled": sampled,
        "search_value_used": use_search,
        "timings": timings,
    }


def assemble(job: dict[str, Any], computed: dict[str, Any], frames: torch.Tensor) -> dict[str, Any]:
    """One update's targets from its job and what reanalysis computed: obs [B, K+1, ...] (a
    tensor on the frames' device, as stored: uint8 frames stay uint8) and numpy arrays:
    actions [B, K, ...], value [B, K+1], value_mask [B, K+1], reward [B, K], reward_mask [B, K],
    policy [B, K+1, P], policy_mask [B, K+1], sampled [B, K+1, K', D] (sampled search),
    td_steps [B], search_value_used [B], and timings."""
    positions = torch.as_tensor(job["positions"], device=frames.device)
    targets = {
        "obs": frames[positions],
        "actions": job["actions"],
        "value": computed["value"],
        "value_mask": job["valid"],
        "reward": job["reward"],
        "reward_mask": job["reward_mask"],
        "policy": computed["policy"],
        "policy_mask": job["alive"],
        "td_steps": job["td_steps"],
        "search_value_used": computed["search_value_used"],
        "timings": computed["timings"],
    }
    if computed["sampled"] is not None:
        targets["sampled"] = computed["sampled"]
    return targets


def make_targets(agent: Agent, rows: np.ndarray, envs: np.ndarray) -> dict[str, Any]:
    """Reanalyse B sampled positions now, in the learner: observations, actions and every target
    of the unroll (see `assemble`). Bootstrap values come from the target model; policy targets
    (and V2's search values) from one batched search with the target model over the positions
    chosen for reanalysis (`reanalyze_ratio`); the others keep the acting search's statistics."""
    job = prepare_targets(agent, rows, envs)
    frames = precision.to_device(job["frames"], agent.device)
    return assemble(job, reanalyse(agent, job, frames, agent.target, agent.gen), frames)
