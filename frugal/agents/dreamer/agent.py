"""DreamerV3 (Hafner et al. 2023, arXiv:2301.04104v1): a world model learned from replayed
sequences, and an actor-critic trained only on trajectories imagined inside it.

World model: an encoder (CNN for pixels, MLP over symlog inputs for vectors), an RSSM with a GRU
state and 32 categorical latents of 32 classes (1% unimix, straight-through samples), and heads
that decode the observation, the reward (twohot over 255 symlog buckets) and the continue flag
(networks in `frugal.nets.dreamer`, losses in `losses`). Acting runs the posterior over the
real observations and samples the actor.

Time runs in env steps: `train_ratio` replayed steps per env step, i.e. train_ratio /
(batch_size * batch_length) updates per env step, enforced by the runner.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from frugal.agents.base import ActState, Transition, detached, ratio_updates_due
from frugal.agents.dreamer import losses
from frugal.agents.dreamer.config import Config, encoder_kind, net_sizes, validate
from frugal.agents.dreamer.video import OpenLoopVideo
from frugal.envs.base import EnvSpec
from frugal.nets import precision
from frugal.nets.distributions import symlog_buckets, twohot_mean
from frugal.nets.dreamer import Actor, Critic, WorldModel
from frugal.nets.optim import clipped_step
from frugal.nets.returns import PercentileNormaliser
from frugal.replay.sequences import SequenceReplay


def _adam(params, lr: float, eps: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, eps=eps, foreach=True)


class Agent:
    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        validate(cfg, spec, num_envs)
        self.cfg, self.spec, self.device = cfg, spec, device
        # resolved once: fp32 | bf16 (autocast of the world model's encoder, decoder and heads)
        self.precision = precision.resolve_precision(cfg.precision, device, pixels=spec.pixels)
        self.num_envs = num_envs
        self.action_dim = spec.num_actions
        self.sizes = sizes = net_sizes(cfg)
        self.wm = WorldModel(
            spec.obs_shape,
            spec.obs_high,
            encoder_kind(cfg, spec),
            sizes,
            self.action_dim,
            cfg.unimix,
            clip_actions=not spec.discrete,
        ).to(device)
        self.actor = Actor(
            sizes, spec.num_actions, spec.discrete, cfg.unimix, cfg.actor_min_std, cfg.actor_max_std
        ).to(device)
        self.critic = Critic(sizes).to(device)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.model_opt = _adam(self.wm.parameters(), cfg.model_lr, cfg.model_eps)
        self.actor_opt = _adam(self.actor.parameters(), cfg.actor_lr, cfg.actor_eps)
        self.critic_opt = _adam(self.critic.parameters(), cfg.critic_lr, cfg.critic_eps)
        self.retnorm = PercentileNormaliser(cfg.retnorm_decay, cfg.retnorm_limit, device=device)
        self.buckets = symlog_buckets(sizes.buckets, -20.0, 20.0, device)
        self.backprop = cfg.actor_grad == "backprop" or (
            cfg.actor_grad == "auto" and not spec.discrete
        )
        if spec.discrete:
            self.replay = SequenceReplay(cfg.replay_size, num_envs, spec.obs_shape, spec.obs_dtype)
        else:  # actions stored in [-1, 1], as the model sees them
            self.replay = SequenceReplay(
                cfg.replay_size,
                num_envs,
                spec.obs_shape,
                spec.obs_dtype,
                (self.action_dim,),
                np.dtype(np.float32),
            )
            self.action_low = np.asarray(spec.action_low, dtype=np.float32)
            self.action_high = np.asarray(spec.action_high, dtype=np.float32)
        self.rng = np.random.default_rng([seed, 7])  # replay sampling
        self.gen = torch.Generator(device=device)  # latent and imagination samples
        self.gen.manual_seed(int(np.random.default_rng([seed, 8]).integers(2**62)))
        self.carry_stoch = torch.zeros(cfg.batch_size, sizes.latent, device=device)
        self.carry_deter = torch.zeros(cfg.batch_size, sizes.deter, device=device)
        self.env_steps = 0
        self.updates = 0
        self.observe_sequence = self.wm.rssm.observe
        self.img_step = self.wm.rssm.img_step
        if cfg.compile:  # the recurrent cells, where many small ops run once per step
            rssm = self.wm.rssm
            rssm.obs_cell = torch.compile(rssm.obs_cell, dynamic=False)
            self.img_step = torch.compile(rssm.img_step, dynamic=False)

    # ---------------------------------------------------------------------------------- act

    def initial_act_state(self, num_envs: int) -> ActState:
        return {
            "deter": torch.zeros(num_envs, self.sizes.deter, device=self.device),
            "stoch": torch.zeros(num_envs, self.sizes.latent, device=self.device),
            "action": torch.zeros(num_envs, self.action_dim, device=self.device),
        }

    def _to_env(self, action: torch.Tensor) -> np.ndarray:
        if self.spec.discrete:
            return action.argmax(-1).cpu().numpy()
        unit = action.clamp(-1.0, 1.0).cpu().numpy()
        return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        n, dev = len(obs), self.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(rng.integers(2**62)))
        if state is None:
            state = self.initial_act_state(n)
        embed = self.wm.encoder(torch.as_tensor(obs, device=dev))
        noise = torch.rand((1, n, self.cfg.stoch), generator=gen, device=dev)
        first_t = torch.as_tensor(np.asarray(first, dtype=bool), device=dev)
        stoch, deter, _ = self.observe_sequence(
            embed[None],
            state["action"].to(dev)[None],
            first_t[None],
            state["stoch"].to(dev),
            state["deter"].to(dev),
            noise,
        )
        stoch, deter = stoch[0], deter[0]
        self._feat = torch.cat([deter, stoch], -1)
        dist = self.actor(self._feat)
        if explore or self.cfg.eval_sample:
            action = self.actor.sample(dist, gen)
        else:
            action = self.actor.mode(dist)
        if not self.spec.discrete:
            action = action.clamp(-1.0, 1.0)
        return self._to_env(action), {"deter": deter, "stoch": stoch, "action": action}

    @torch.no_grad()
    def view_record(self) -> dict[str, np.ndarray] | None:
        """What the model expects at the last act()'s posterior state, for the episode viewer:
        the reward, the probability that the episode continues, and the critic's value."""
        feat = getattr(self, "_feat", None)
        if feat is None:
            return None
        with self.autocast():
            reward_logits = self.wm.reward(feat).float()
            cont_logits = self.wm.cont(feat).float().squeeze(-1)
            value_logits = self.critic(feat).float()
        return {
            "predicted_reward": twohot_mean(reward_logits, self.buckets).cpu().numpy(),
            "continue_prob": torch.sigmoid(cont_logits).cpu().numpy(),
            "value": twohot_mean(value_logits, self.buckets).cpu().numpy(),
        }

    def video_panels(self) -> OpenLoopVideo | None:
        """Evaluation videos of pixel envs show the world model's open-loop predictions."""
        if not self.spec.pixels or self.cfg.video_open_loop <= 0:
            return None
        return OpenLoopVideo(
            self.wm, self.spec, self.cfg.stoch, self.device, self.cfg.video_open_loop
        )

    def observe(self, t: Transition) -> None:
        if self.spec.discrete:
            action = np.asarray(t.action, dtype=np.int64)
        else:  # stored in [-1, 1], as the model sees it
            span = self.action_high - self.action_low
            action = (2.0 * (t.action - self.action_low) / span - 1.0).astype(np.float32)
        self.replay.add(t.obs, action, t.reward, t.terminated, t.reset, t.next_obs, t.final_obs)
        self.env_steps += len(t.reward)

    def restart(self, obs: np.ndarray) -> None:
        self.replay.restart(obs)

    def acting_state(self) -> dict[str, Any]:
        return {"world_model": detached(self.wm), "actor": detached(self.actor)}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.wm.load_state_dict(state["world_model"])
        self.actor.load_state_dict(state["actor"])

    def act_record(self) -> None:
        return None

    def load_act_record(self, record, obs, action) -> None:
        pass

    # ------------------------------------------------------------------------------- update

    def autocast(self):
        return precision.autocast(self.precision, self.device)

    def updates_due(self, env_step: int) -> int:
        cfg = self.cfg
        start = max(cfg.learning_starts, self.num_envs * cfg.batch_length)
        return ratio_updates_due(env_step, self.updates_per_step(), start)

    def updates_per_step(self) -> float:
        """train_ratio replayed steps per env step, in updates of batch_size x batch_length."""
        return self.cfg.train_ratio / (self.cfg.batch_size * self.cfg.batch_length)

    def final_updates_due(self, total_env_steps: int) -> int:
        return self.updates_due(total_env_steps)

    def _batch(self) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        raw = self.replay.sample(cfg.batch_size, cfg.batch_length, self.rng)
        batch = {
            k: precision.to_device(v, dev).transpose(0, 1)  # uint8 frames scaled on the device
            for k, v in raw.items()
            if k != "continued"
        }
        if self.spec.discrete:
            batch["action"] = F.one_hot(batch["action"], self.action_dim).float()
        return batch

    def update(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self._batch()
        model_loss, feat, last, metrics = losses.world_model_loss(self, batch)
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        norm = clipped_step(self.model_opt, self.wm.parameters(), cfg.model_clip)
        self.carry_stoch, self.carry_deter = last[0].detach(), last[1].detach()
        metrics["train/model_grad_norm"] = norm

        actor_loss, critic_loss, behaviour = losses.behaviour_losses(self, feat, batch["terminal"])
        metrics.update(behaviour)
        params = list(self.actor.parameters())
        grads = torch.autograd.grad(actor_loss, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        metrics["train/actor_grad_norm"] = clipped_step(self.actor_opt, params, cfg.actor_clip)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        metrics["train/critic_grad_norm"] = clipped_step(
            self.critic_opt, self.critic.parameters(), cfg.critic_clip
        )
        with torch.no_grad():
            for p, slow in zip(
                self.critic.parameters(), self.slow_critic.parameters(), strict=True
            ):
                slow.lerp_(p, cfg.slow_critic_fraction)
        self.updates += 1
        scalars = [
            torch.as_tensor(v, dtype=torch.float32).detach().reshape(()) for v in metrics.values()
        ]
        return dict(zip(metrics, torch.stack(scalars).cpu().tolist(), strict=True))

    # -------------------------------------------------------------------------------- state

    def _nets_and_optimisers(self) -> dict[str, Any]:
        return {
            "world_model": self.wm,
            "actor": self.actor,
            "critic": self.critic,
            "slow_critic": self.slow_critic,
            "model_opt": self.model_opt,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "retnorm": self.retnorm,
            "replay": self.replay,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **{key: part.state_dict() for key, part in self._nets_and_optimisers().items()},
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
            "carry": {"stoch": self.carry_stoch, "deter": self.carry_deter},
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, part in self._nets_and_optimisers().items():
            part.load_state_dict(state[key])
        for opt, lr in (
            (self.model_opt, self.cfg.model_lr),
            (self.actor_opt, self.cfg.actor_lr),
            (self.critic_opt, self.cfg.critic_lr),
        ):
            for group in opt.param_groups:  # a resumed run may change learning rates
                group["lr"] = lr
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"].cpu())
        self.carry_stoch = state["carry"]["stoch"].to(self.device)
        self.carry_deter = state["carry"]["deter"].to(self.device)
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
