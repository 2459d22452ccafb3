"""The DQN agent: epsilon-greedy acting, n-step replay (optionally prioritised), double-Q targets
with a Huber loss, and hard or Polyak target updates."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from frugal.agents.base import ActState, EnvSpec, Transition, detached, ratio_updates_due
from frugal.agents.dqn.config import PRESETS, Config, check
from frugal.nets import precision
from frugal.nets.optim import clipped_step
from frugal.nets.q import QNetwork
from frugal.replay.streams import StreamReplay


class Agent:
    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        check(cfg, spec)
        self.cfg, self.spec, self.device = cfg, spec, device
        # resolved once: fp32 | bf16 (autocast of the network passes)
        self.precision = precision.resolve_precision(cfg.precision, device, pixels=spec.pixels)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.q = self._network().to(device, memory_format=memory_format)
        self.q_target = self._network().to(device, memory_format=memory_format)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(
            self.q.parameters(), lr=cfg.lr, eps=cfg.adam_eps, foreach=True
        )
        self.replay = StreamReplay(
            cfg.buffer_size,
            num_envs,
            spec.frame_shape,
            spec.obs_dtype,
            spec.frame_stack,
            n_step=cfg.n_step,
            discount=cfg.discount,
            prioritized=cfg.prioritized,
            alpha=cfg.per_alpha,
            priority_eps=cfg.per_eps,
        )
        self.rng = np.random.default_rng(seed)  # replay sampling
        self.env_steps = 0
        self.updates = 0

    def _network(self) -> QNetwork:
        cfg = self.cfg
        return QNetwork(
            self.spec,
            self.spec.num_actions,
            torso=cfg.torso,
            hidden=cfg.hidden,
            head_hidden=cfg.head_hidden,
            dueling=cfg.dueling,
        )

    # ---------------------------------------------------------------------------------- act

    def epsilon(self) -> float:
        frac = min(1.0, self.env_steps / max(1, self.cfg.eps_decay_steps))
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    def initial_act_state(self, num_envs: int) -> ActState:
        return None

    @torch.no_grad()
    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        eps = self.epsilon() if explore else self.cfg.eval_eps
        with precision.autocast(self.precision, self.device, len(obs)):
            self._q_values = self.q(precision.to_device(obs, self.device))
            greedy = self._q_values.argmax(1).cpu().numpy()
        random = rng.integers(0, self.spec.num_actions, size=len(obs))
        return np.where(rng.random(len(obs)) < eps, random, greedy), state

    def view_record(self) -> dict[str, np.ndarray] | None:
        """The Q-values [n, A] the last act() chose from, for the episode viewer."""
        q = getattr(self, "_q_values", None)
        return None if q is None else {"q_values": q.float().cpu().numpy()}

    def observe(self, t: Transition) -> None:
        reward = np.clip(t.reward, -1, 1) if self.cfg.reward_clip else t.reward
        self.replay.add(
            t.obs, t.action, reward, t.terminated, t.truncated, t.reset, t.next_obs, t.final_obs
        )
        self.env_steps += len(t.reward)

    def restart(self, obs: np.ndarray) -> None:
        self.replay.restart(obs)

    def acting_state(self) -> dict[str, Any]:
        return {"q": detached(self.q), "env_steps": self.env_steps}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.env_steps = int(state["env_steps"])

    def act_record(self) -> None:
        return None

    def load_act_record(self, record, obs, action) -> None:
        pass

    # ------------------------------------------------------------------------------- update

    def updates_due(self, env_step: int) -> int:
        start = max(self.cfg.learning_starts, self.cfg.batch_size)
        return ratio_updates_due(env_step, self.cfg.replay_ratio, start)

    def final_updates_due(self, total_env_steps: int) -> int:
        return self.updates_due(total_env_steps)

    def per_beta(self) -> float:
        """The importance-sampling exponent: per_beta_start, linearly to 1 over per_beta_steps."""
        frac = min(1.0, self.env_steps / max(1, self.cfg.per_beta_steps))
        return self.cfg.per_beta_start + frac * (1.0 - self.cfg.per_beta_start)

    def update(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self.replay.sample(cfg.batch_size, self.rng, beta=self.per_beta())
        dev = self.device
        obs = precision.to_device(batch.obs, dev)  # uint8 frames, scaled by the network
        next_obs = precision.to_device(batch.next_obs, dev)
        actions = torch.as_tensor(batch.action, device=dev).long()
        returns = torch.as_tensor(batch.returns, device=dev)
        discount = torch.as_tensor(batch.discount, device=dev)

        if cfg.channels_last and obs.ndim == 4:
            obs = obs.contiguous(memory_format=torch.channels_last)
            next_obs = next_obs.contiguous(memory_format=torch.channels_last)
        with precision.autocast(self.precision, dev):
            if cfg.double:  # one pass of the online net over obs and next_obs together
                q_both = self.q(torch.cat([obs, next_obs])).float()
                q_all, next_online = q_both[: len(obs)], q_both[len(obs) :].detach()
            else:
                q_all = self.q(obs).float()
            with torch.no_grad():
                next_target = self.q_target(next_obs).float()
        q = q_all.gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            if cfg.double:
                next_actions = next_online.argmax(1, keepdim=True)
            else:
                next_actions = next_target.argmax(1, keepdim=True)
            target = returns + discount * next_target.gather(1, next_actions).squeeze(1)
        td_error = target - q
        weights = torch.as_tensor(batch.weights, device=dev)
        loss = (weights * F.smooth_l1_loss(q, target, reduction="none")).mean()

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clipped_step(self.optimizer, self.q.parameters(), cfg.grad_clip)
        if cfg.prioritized and torch.isfinite(grad_norm):  # a skipped step leaves them as they were
            self.replay.update_priorities(batch.index, td_error.detach().abs().cpu().numpy())
        self.updates += 1
        self._update_target()
        return {
            "train/loss": loss.item(),
            "train/q_mean": q.mean().item(),
            "train/grad_norm": grad_norm.item(),
            "train/epsilon": self.epsilon(),
        }

    @torch.no_grad()
    def _update_target(self) -> None:
        if self.cfg.tau < 1.0:
            for p, tp in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                tp.lerp_(p, self.cfg.tau)
        elif self.updates % self.cfg.target_update_interval == 0:
            self.q_target.load_state_dict(self.q.state_dict())

    # -------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a resumed run may change lr
            group["lr"] = self.cfg.lr
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
