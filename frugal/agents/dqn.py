"""DQN (Mnih et al. 2015) with the Rainbow-era upgrades that pay on their own: double Q-learning
(van Hasselt et al. 2016), a dueling head (Wang et al. 2016), n-step returns and optional
prioritised replay (Schaul et al. 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from frugal.agents.base import ActState, EnvSpec, Transition, ratio_updates_due
from frugal.config import Preset, mutable
from frugal.errors import FrugalError
from frugal.nets.layers import mlp
from frugal.nets.torsos import make_torso
from frugal.replay.streams import StreamReplay


@dataclass
class Config:
    gamma: float = 0.99
    n_step: int = 3
    lr: float = mutable(1e-4)
    adam_eps: float = 1.5e-4
    batch_size: int = mutable(32)
    buffer_size: int = 100_000  # transitions, summed over envs
    learning_starts: int = mutable(1_000)  # env steps before the first update
    replay_ratio: float = mutable(0.25)  # updates per env step (0.25 = one update every 4 steps)
    target_update_interval: int = mutable(
        1_000
    )  # updates between hard target copies (when tau = 1)
    tau: float = mutable(1.0)  # 1 = hard copy every interval; < 1 = Polyak averaging every update
    eps_start: float = mutable(1.0)
    eps_end: float = mutable(0.01)
    eps_decay_steps: int = mutable(100_000)  # env steps of the linear decay
    eval_eps: float = mutable(0.0)
    double: bool = True
    dueling: bool = True
    prioritized: bool = False
    per_alpha: float = 0.6
    per_beta_start: float = mutable(0.4)  # annealed linearly to 1 over eps_decay_steps * 10
    per_eps: float = 1e-6
    reward_clip: bool = False  # clip rewards to [-1, 1] in the learner
    grad_clip: float = mutable(10.0)  # max gradient norm
    torso: str = "auto"  # auto | nature | minatar | mlp
    hidden: tuple[int, ...] = (256, 256)  # MLP torso layers
    head_hidden: int = 512  # hidden units of each head stream
    precision: str = "fp32"  # fp32 | bf16 (autocast for the forward passes of an update)
    channels_last: bool = False  # NHWC memory format for convolutions (a CPU speed lever)


# hyperparameters a resumed run may change (the rest shape the networks or the replay)

PRESETS = {
    "cartpole": Preset(
        doc="Classic control: MLP 256-256, 3-step double dueling DQN, one update per env step.",
        run=dict(steps=50_000, eval_every=2_500, eval_episodes=10, checkpoint_every=10_000),
        agent=dict(
            lr=5e-4,
            n_step=3,
            batch_size=64,
            buffer_size=50_000,
            learning_starts=1_000,
            replay_ratio=1.0,
            target_update_interval=500,
            eps_decay_steps=10_000,
            eps_end=0.02,
            hidden=(256, 256),
            head_hidden=128,
        ),
    ),
    "minatar": Preset(
        doc="MinAtar (Young & Tian 2019): 16@3x3 conv + 128 units, replay 100k, eps over 100k, "
        "one update per env step. Adds double/dueling/3-step/PER over their DQN.",
        run=dict(steps=1_000_000, eval_every=25_000, eval_episodes=20),
        agent=dict(
            lr=2.5e-4,
            adam_eps=3.125e-4,
            batch_size=32,
            buffer_size=100_000,
            learning_starts=5_000,
            replay_ratio=1.0,
            target_update_interval=1_000,
            eps_decay_steps=100_000,
            eps_end=0.01,
            head_hidden=128,
            prioritized=True,
        ),
    ),
    "atari": Preset(
        doc="CleanRL dqn_atari settings: Adam 1e-4, batch 32, replay 1M, learning starts 80k, "
        "an update every 4 steps, hard target copy every 1000 steps (250 updates), eps 1->0.01 "
        "over 1M steps, rewards clipped, Nature CNN, 84x84 gray 4-stack, FIRE reset, "
        "no-op starts, life loss ends training episodes. Adds double/dueling/3-step.",
        env=dict(protocol="atari100k", fire_reset=True, obs_size=84, grayscale=True),
        run=dict(steps=10_000_000, eval_every=250_000, eval_episodes=10, eval_envs=5),
        agent=dict(
            lr=1e-4,
            adam_eps=1e-8,
            batch_size=32,
            buffer_size=1_000_000,
            learning_starts=80_000,
            replay_ratio=0.25,
            target_update_interval=250,
            eps_decay_steps=1_000_000,
            eps_end=0.01,
            eval_eps=0.05,
            reward_clip=True,
            n_step=3,
        ),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return {"atari": "atari", "minatar": "minatar"}.get(spec.suite, "cartpole")


class QNetwork(nn.Module):
    """Torso, then either one linear stream or dueling streams: Q = V + A - mean(A)."""

    def __init__(self, spec: EnvSpec, cfg: Config):
        super().__init__()
        self.torso, features = make_torso(spec, cfg.torso, cfg.hidden)
        self.dueling = cfg.dueling
        self.advantage = mlp((features, cfg.head_hidden, spec.num_actions), last_act=False)
        if self.dueling:
            self.value = mlp((features, cfg.head_hidden, 1), last_act=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.torso(obs)
        a = self.advantage(h)
        if not self.dueling:
            return a
        return self.value(h) + a - a.mean(dim=1, keepdim=True)


class Agent:
    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        if not spec.discrete:
            raise FrugalError(
                "dqn needs a discrete action space; use ppo, efficientzero or dreamerv3 for "
                "continuous control"
            )
        self.cfg, self.spec, self.device = cfg, spec, device
        if cfg.precision not in ("fp32", "bf16"):
            raise FrugalError(f"agent.precision must be fp32 or bf16, got '{cfg.precision}'")
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.q = QNetwork(spec, cfg).to(device, memory_format=memory_format)
        self.q_target = QNetwork(spec, cfg).to(device, memory_format=memory_format)
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
            gamma=cfg.gamma,
            prioritized=cfg.prioritized,
            alpha=cfg.per_alpha,
            priority_eps=cfg.per_eps,
        )
        self.rng = np.random.default_rng(seed)  # replay sampling
        self.env_steps = 0
        self.updates = 0

    # ---------------------------------------------------------------------------------- act

    def epsilon(self) -> float:
        frac = min(1.0, self.env_steps / max(1, self.cfg.eps_decay_steps))
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    def initial_act_state(self, num_envs: int) -> ActState:
        return None

    @torch.no_grad()
    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        eps = self.epsilon() if explore else self.cfg.eval_eps
        greedy = self.q(torch.as_tensor(obs, device=self.device)).argmax(1).cpu().numpy()
        random = rng.integers(0, self.spec.num_actions, size=len(obs))
        return np.where(rng.random(len(obs)) < eps, random, greedy), state

    def observe(self, t: Transition) -> None:
        reward = np.clip(t.reward, -1, 1) if self.cfg.reward_clip else t.reward
        self.replay.add(
            t.obs, t.action, reward, t.terminated, t.truncated, t.reset, t.next_obs, t.final_obs
        )
        self.env_steps += len(t.reward)

    def restart(self, obs: np.ndarray) -> None:
        self.replay.restart(obs)

    # ------------------------------------------------------------------------------- update

    def updates_due(self, env_step: int) -> int:
        start = max(self.cfg.learning_starts, self.cfg.batch_size)
        return ratio_updates_due(env_step, self.cfg.replay_ratio, start)

    def final_updates_due(self, total_env_steps: int) -> int:
        return self.updates_due(total_env_steps)

    def per_beta(self) -> float:
        frac = min(1.0, self.env_steps / max(1, 10 * self.cfg.eps_decay_steps))
        return self.cfg.per_beta_start + frac * (1.0 - self.cfg.per_beta_start)

    def update(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self.replay.sample(cfg.batch_size, self.rng, beta=self.per_beta())
        dev = self.device
        obs = torch.as_tensor(batch.obs, device=dev)
        next_obs = torch.as_tensor(batch.next_obs, device=dev)
        actions = torch.as_tensor(batch.action, device=dev).long()
        returns = torch.as_tensor(batch.returns, device=dev)
        discount = torch.as_tensor(batch.discount, device=dev)

        if cfg.channels_last and obs.ndim == 4:
            obs = obs.contiguous(memory_format=torch.channels_last)
            next_obs = next_obs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
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
        grad_norm = nn.utils.clip_grad_norm_(self.q.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if cfg.prioritized:
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
