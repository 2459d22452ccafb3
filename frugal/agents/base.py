"""The contract between the runner and every agent.

The runner owns time (env steps, evaluation, checkpoints); an agent owns its networks,
optimisers and replay. One loop serves off-policy and on-policy agents alike: after each
vectorised env step the runner asks `updates_due(env_step)` and calls `update()` until that many
updates have run, so the replay ratio is a pure function of the env step count and never of
machine speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import torch

from frugal.config import Preset
from frugal.envs.base import EnvSpec

__all__ = [
    "ActState", "Agent", "AgentPackage", "EnvSpec", "Transition", "detached", "preset_by_suite",
    "ratio_updates_due",
]  # fmt: skip


@dataclass
class Transition:
    """One vectorised env step, every array with leading dim num_envs.

    reward is the raw env reward (agents clip it themselves when their protocol says so).
    terminated: the learner's episode ended with no bootstrap (includes a life loss when the
    protocol uses episodic life). truncated: ended by a time limit (bootstrap from final_obs).
    reset: the env really started a new episode, so `next_obs` is a reset observation.
    final_obs: the true successor of `obs` (equals next_obs where not reset).
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    reset: np.ndarray
    next_obs: np.ndarray
    final_obs: np.ndarray


ActState = dict[str, torch.Tensor] | None


class Agent(Protocol):
    """What the runner calls. `state_dict()` returns nested dicts whose leaves are tensors, numpy
    arrays or JSON values (no pickled objects); `load_state_dict` restores it exactly.

    Optional: `video_panels()` returns None or an object whose `panel(obs, state, first)` draws
    an image [h, w, 3] that evaluation videos show beside each frame.

    Optional: `view_record() -> dict[str, np.ndarray] | None`: what the last `act()` call
    computed, one row per env, for the episode viewer; None when the agent has nothing to show.
    Keys, each agent giving the ones that apply: `q_values` [n, A] (DQN); `action_probs` [n, A]
    (discrete) or `action_mean` [n, d] and `action_std` [n, d], with `value` [n] (PPO; SAC gives
    the tanh of its Gaussian mean, the pre-tanh std and the min of twin Q at the action taken;
    TD3/DDPG the deterministic action and its value); `root_value` [n], `visit_counts` [n, K],
    `improved_policy` [n, K], `predicted_reward` [n] and, for sampled search,
    `candidate_actions` [n, K, d] (EfficientZero); `predicted_reward` [n], `continue_prob` [n],
    `value` [n] (DreamerV3). Acting keeps references to what it computed anyway and this
    converts them on request, so acting costs the same when no viewer asks."""

    def initial_act_state(self, num_envs: int) -> ActState: ...

    def act(
        self,
        obs: np.ndarray,
        state: ActState,
        first: np.ndarray,
        *,
        explore: bool,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, ActState]:
        """Actions for a batch of observations. `first` marks envs whose episode just began
        (recurrent agents reset their state there); `rng` is the caller's, so evaluation never
        disturbs the training random stream."""
        ...

    def observe(self, transition: Transition) -> None: ...

    def acting_state(self) -> dict[str, Any]:
        """A snapshot of only what `act` reads (weights, normalisers, exploration counters; no
        replay, no optimiser), detached from the live networks: later updates leave it as it
        is. Acting workers act with it on their own copy of the agent."""
        ...

    def load_acting_state(self, state: dict[str, Any]) -> None:
        """Act from now on as the agent did when `acting_state()` was taken."""
        ...

    def act_record(self) -> dict[str, np.ndarray] | None:
        """What the last `act(explore=True)` computed that `observe` stores (log-probabilities,
        search statistics), as numpy arrays with one row per env; None when observe needs
        nothing of act. A worker sends it with the transition to the learner."""
        ...

    def load_act_record(
        self, record: dict[str, np.ndarray] | None, obs: np.ndarray, action: np.ndarray
    ) -> None:
        """The learner takes a worker's `act_record` for the step (obs, action) that it will
        `observe` next, as if it had acted itself."""
        ...

    def restart(self, obs: np.ndarray) -> None:
        """Envs whose state could not be restored after a resume started new games at `obs`:
        the games in progress are cut as if truncated there."""
        ...

    def updates_due(self, env_step: int) -> int:
        """Total updates owed once `env_step` env steps have been collected."""
        ...

    def final_updates_due(self, total_env_steps: int) -> int:
        """Total updates owed when collection has ended (more than updates_due when the
        algorithm keeps training after the last env step, as EfficientZero does)."""
        ...

    def update(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class AgentPackage(Protocol):
    """What `frugal.agents.<algo>` exports: its config dataclass, named presets, the preset an
    env gets when none is named, and the agent class."""

    Config: type
    PRESETS: dict[str, Preset]

    def default_preset(self, spec: EnvSpec) -> str: ...

    def Agent(  # noqa: N802 - the class, called as a constructor
        self, cfg: Any, spec: EnvSpec, num_envs: int, device: torch.device, seed: int
    ) -> Agent: ...


def detached(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of a module's weights that later updates leave as it is (for acting_state)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def ratio_updates_due(env_step: int, replay_ratio: float, learning_starts: int) -> int:
    """Updates owed after `env_step` env steps: replay_ratio per step once learning starts.

    Computed from integers so no float drift: floor((env_step - start) * ratio)."""
    if env_step < learning_starts:
        return 0
    return int((env_step - learning_starts) * Fraction(replay_ratio).limit_denominator(10_000))


def preset_by_suite(spec: EnvSpec, atari: str, dmc: str | None = None) -> str:
    """The preset an agent uses when none is named: by suite, then by action space. DeepMind
    Control tasks get `dmc` where the agent has such a preset, else its continuous-action one."""
    if spec.suite == "atari":
        return atari
    if spec.suite == "minatar":
        return "minatar"
    if spec.suite == "dmc" and dmc:
        return dmc
    return "cartpole" if spec.discrete else "pendulum"
