"""The EfficientZero learner shared by both versions: acting with the version's search, the
replay of game segments, the unrolled update and the full state for checkpoints.

Every update: sample positions by priority from the game segments, reanalyse them
(targets.make_targets), then unroll the model K steps with the dynamics gradient halved at every
step and minimise reward (or value-prefix), value and policy cross-entropies plus the negative
cosine between the predicted and the (stop-gradient) observed next latent's SimSiam projections.
Priorities are the value error at the sampled position.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from frugal.agents.base import ActState, EnvSpec, Transition, detached, ratio_updates_due
from frugal.agents.efficientzero import losses, sampled
from frugal.agents.efficientzero.augment import augment_pixels
from frugal.agents.efficientzero.config import PRESETS, Config, validate
from frugal.agents.efficientzero.model import Encoded, SearchModel, Version, encode
from frugal.agents.efficientzero.prefetch import Prefetch, Reanalyser
from frugal.agents.efficientzero.targets import make_targets
from frugal.agents.efficientzero.v1 import V1
from frugal.agents.efficientzero.v2 import V2
from frugal.nets import precision
from frugal.nets.muzero import MuZeroNet, NetConfig, scale_gradient
from frugal.nets.optim import clipped_step
from frugal.nets.support import Support
from frugal.replay.segments import SegmentReplay

VERSION_CLASSES: dict[str, type[V1] | type[V2]] = {"v1": V1, "v2": V2}


def net_config(cfg: Config, spec: EnvSpec, value_bins: int, reward_bins: int, prefix: bool):
    """The network's shapes for this env: the body from agent.net ('auto' picks by observation:
    resnet for large pixels, conv for small grids, mlp for vectors)."""
    kind = cfg.net
    if kind == "auto":
        kind = ("conv" if spec.obs_shape[-1] <= 16 else "resnet") if spec.pixels else "mlp"
    return NetConfig(
        obs_shape=tuple(spec.obs_shape), num_actions=spec.num_actions, discrete=spec.discrete,
        kind=kind, obs_scale=float(spec.obs_high) if spec.pixels else 1.0,
        channels=cfg.channels, blocks=cfg.blocks, reduced_channels=cfg.reduced_channels,
        fc=tuple(cfg.fc), hidden=cfg.hidden, latent=cfg.latent, value_bins=value_bins,
        reward_bins=reward_bins, value_prefix=prefix, lstm_hidden=cfg.lstm_hidden,
        proj_hidden=cfg.proj_hidden, proj_out=cfg.proj_out, pred_hidden=cfg.pred_hidden,
        latent_norm=cfg.latent_norm,
    )  # fmt: skip


def support(values: tuple[float, ...]) -> Support:
    return Support(float(values[0]), float(values[1]), int(values[2]))


class Agent:
    """EfficientZero in a run: `version` (V1 or V2) searches, acts and makes the policy and
    value targets; everything else is shared."""

    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        validate(cfg, spec)
        self.cfg, self.spec, self.device, self.num_envs = cfg, spec, device, num_envs
        self.discrete = spec.discrete
        version_class = VERSION_CLASSES[cfg.version]
        self.value_prefix = (
            version_class.value_prefix if cfg.value_prefix is None else cfg.value_prefix
        )
        self.value_support = support(cfg.value_support)
        self.reward_support = support(cfg.reward_support)
        self.net_config = net_config(
            cfg, spec, self.value_support.bins, self.reward_support.bins, self.value_prefix
        )
        self.augment = (self.net_config.kind == "resnet") if cfg.augment is None else cfg.augment
        self.net = MuZeroNet(self.net_config).to(device)
        self.target = copy.deepcopy(self.net).requires_grad_(False).eval()
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                weight_decay=cfg.weight_decay, foreach=True,
            )  # fmt: skip
        else:  # adam (validated)
            self.optimizer = torch.optim.AdamW(
                self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
            )
        # resolved once: fp32 | bf16 (autocast of the network passes)
        self.precision = precision.resolve_precision(cfg.precision, device, pixels=spec.pixels)
        model = SearchModel(
            cfg, self.value_support, self.reward_support, self.value_prefix,
            version_class.prior(cfg, spec), device, self.precision,
        )  # fmt: skip
        self.version: Version = version_class(cfg, model)
        k = cfg.num_sampled_actions
        self.policy_size = spec.num_actions if spec.discrete else k
        self.replay = SegmentReplay(
            cfg.buffer_size, num_envs, spec.frame_shape, spec.obs_dtype, spec.frame_stack,
            policy_size=self.policy_size, window=cfg.unroll_steps + cfg.td_steps,
            action_shape=() if spec.discrete else (spec.num_actions,),
            action_dtype=np.int64 if spec.discrete else np.float32,
            sampled_shape=None if spec.discrete else (k, spec.num_actions),
            alpha=cfg.per_alpha, priority_eps=cfg.per_eps,
        )  # fmt: skip
        self.rng = np.random.default_rng([seed, 11])  # replay sampling, reanalysis choice
        self.gen = torch.Generator().manual_seed(
            int(np.random.default_rng([seed, 12]).integers(2**62))
        )
        self.seed = seed
        self.env_steps = 0
        self.updates = 0
        self._pending: dict[str, np.ndarray] | None = None
        # batches drawn agent.prefetch updates ahead, reanalysed here or on workers (prefetch.py)
        self.prefetch = Prefetch(self, cfg.prefetch) if cfg.prefetch > 0 else None

    def _autocast(self, batch: int | None = None):
        return precision.autocast(self.precision, self.device, batch)

    # ----------------------------------------------------------------------------- act

    def initial_act_state(self, num_envs: int) -> ActState:
        return None

    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.net.eval()
        obs_t = precision.to_device(obs, self.device)
        out, cand = self.version.search(self.net, obs_t, generator, explore)
        slot = self.version.choose(out, generator, self.updates, explore)
        if self.discrete:
            action = slot.numpy().astype(np.int64)
            stored = action
        else:
            stored = cand.cpu()[torch.arange(len(slot)), slot].numpy().astype(np.float32)
            action = sampled.to_env(stored, self.spec.action_low, self.spec.action_high)
        self._view = (obs_t, out, cand, stored)
        if explore:
            self._pending = {
                "action": stored,
                "policy": self.version.policy_target(out),
                "root_value": out.root_value.float().cpu().numpy(),
            }
            if cand is not None:
                self._pending["sampled"] = cand.float().cpu().numpy()
        return action, state

    def view_record(self) -> dict[str, np.ndarray] | None:
        """The last act()'s search, for the episode viewer: root value, visit counts, improved
        policy, candidates (sampled search) and the reward predicted for the action taken."""
        view = getattr(self, "_view", None)
        if view is None:
            return None
        obs_t, out, cand, stored = view
        taken = torch.as_tensor(stored, device=self.device)
        reward = self.version.model.predicted_reward(self.net, obs_t, taken)
        record = {
            "root_value": out.root_value.float().cpu().numpy(),
            "visit_counts": out.visit_counts.cpu().numpy(),
            "improved_policy": out.action_weights.float().cpu().numpy(),
            "predicted_reward": reward.float().cpu().numpy(),
        }
        if cand is not None:
            record["candidate_actions"] = cand.float().cpu().numpy()
        return record

    def observe(self, t: Transition) -> None:
        pending = self._pending
        self._pending = None
        n = len(t.reward)
        if pending is None:  # not produced by act(explore=True): no search statistics
            action = t.action
            if not self.discrete:
                action = sampled.from_env(t.action, self.spec.action_low, self.spec.action_high)
            pending = {
                "action": action,
                "policy": np.full((n, self.policy_size), 1.0 / self.policy_size, np.float32),
                "root_value": np.zeros(n, np.float32),
            }
            if not self.discrete:
                pending["sampled"] = np.repeat(action[:, None], self.policy_size, 1)
        reward = np.clip(t.reward, -1, 1) if self.cfg.reward_clip else t.reward
        self.replay.add(
            t.obs, pending["action"], reward, t.terminated, t.truncated, t.reset, t.next_obs,
            t.final_obs, pending["policy"], pending["root_value"], pending.get("sampled"),
        )  # fmt: skip
        self.env_steps += n

    def restart(self, obs: np.ndarray) -> None:
        self.replay.restart(obs)

    def acting_state(self) -> dict[str, Any]:
        return {"net": detached(self.net), "updates": self.updates}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.updates = int(state["updates"])

    def act_record(self) -> dict[str, np.ndarray] | None:
        """The stored action and the search statistics act() computed, one row per env."""
        return None if self._pending is None else dict(self._pending)

    def load_act_record(self, record, obs, action) -> None:
        self._pending = None if record is None else dict(record)

    # -------------------------------------------------------------------------- schedule

    def updates_due(self, env_step: int) -> int:
        window = self.cfg.unroll_steps + self.cfg.td_steps + 1
        start = max(self.cfg.learning_starts, window * self.num_envs)
        return ratio_updates_due(env_step, self.cfg.replay_ratio, start)

    def final_updates_due(self, total_env_steps: int) -> int:
        extra = int(self.cfg.final_update_ratio * total_env_steps)
        return max(self.updates_due(total_env_steps), extra)

    def learning_rate(self) -> float:
        cfg = self.cfg
        lr = cfg.lr
        if cfg.lr_warmup_updates > 0 and self.updates < cfg.lr_warmup_updates:
            lr *= (self.updates + 1) / cfg.lr_warmup_updates
        if cfg.lr_decay_updates > 0 and self.updates >= cfg.lr_decay_updates:
            lr *= cfg.lr_decay_rate
        return lr

    def per_beta(self) -> float:
        frac = min(1.0, self.updates / max(1, self.cfg.per_beta_updates))
        return self.cfg.per_beta + frac * (1.0 - self.cfg.per_beta)

    # --------------------------------------------------------------------------- update

    def encode(self, net: MuZeroNet, obs: torch.Tensor) -> Encoded:
        """(latent, policy output, value logits) of `net` for observations [N, ...] on the
        device, one inference pass (model.encode)."""
        return encode(net, obs, self.precision, self.device)

    def _unroll(self, obs: torch.Tensor, actions: torch.Tensor):
        """The online model unrolled K steps from obs[:, 0] along `actions`: policy outputs
        [B, K+1, ...], value logits [B, K+1, bins], reward logits [B, K, bins], the predicted
        projections of the K latents and their (stop-gradient) targets, both [K*B, proj]."""
        cfg, net, dev = self.cfg, self.net, self.device
        B = len(obs)
        first = obs[:, 0]
        next_obs = obs[:, 1:].transpose(0, 1).flatten(0, 1)  # [K*B], step-major like latents
        if self.augment:
            first = augment_pixels(first, self.gen)
            next_obs = augment_pixels(next_obs, self.gen)
        with self._autocast():
            with torch.no_grad():  # consistency targets: the online model, stop-gradient
                target_proj = net.project(net.represent(next_obs), with_predictor=False)
            s = net.represent(first)
            policy, vlog = net.predict(s)
            policies, vlogs, rlogs, latents = [policy], [vlog], [], []
            reward_state = net.initial_reward_state(B, dev)
            for k in range(1, cfg.unroll_steps + 1):
                s = scale_gradient(s, 0.5)
                s, rlog, reward_state = net.dynamics(s, actions[:, k - 1], reward_state)
                if self.value_prefix and k % cfg.lstm_horizon == 0:
                    reward_state = net.initial_reward_state(B, dev)
                policy, vlog = net.predict(s)
                policies.append(policy)
                vlogs.append(vlog)
                rlogs.append(rlog)
                latents.append(s)
            predicted_proj = net.project(torch.cat(latents), with_predictor=True)
        stack = [torch.stack(x, 1).float() for x in (policies, vlogs, rlogs)]
        return (*stack, predicted_proj.float(), target_proj.float())

    def update(self) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        K = cfg.unroll_steps
        t_start = time.perf_counter()
        if self.prefetch is None:  # drawn and reanalysed now
            sample = self.replay.sample(cfg.batch_size, self.rng, beta=self.per_beta())
            index, sample_weights = sample.index, sample.weights
            tg = make_targets(self, sample.rows, sample.envs)
        else:
            index, sample_weights, tg = self.prefetch.batch()
        B = len(tg["value"])

        def tensor(x, dtype=None):
            return torch.as_tensor(x, device=dev, dtype=dtype)

        value_t, value_m = tensor(tg["value"]), tensor(tg["value_mask"], torch.float32)
        reward_t, reward_m = tensor(tg["reward"]), tensor(tg["reward_mask"], torch.float32)
        policy_t, policy_m = tensor(tg["policy"]), tensor(tg["policy_mask"], torch.float32)
        weights = tensor(sample_weights)

        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t_net = time.perf_counter()
        self.net.train()
        policy_out, vlogs_t, rlogs_t, predicted_proj, target_proj = self._unroll(
            tensor(tg["obs"]), tensor(tg["actions"])
        )
        value_loss = (self.value_support.cross_entropy(vlogs_t, value_t) * value_m).sum(1)
        reward_loss = (self.reward_support.cross_entropy(rlogs_t, reward_t) * reward_m).sum(1)
        if self.discrete:
            policy_loss, entropy = losses.policy_loss(policy_out, policy_t)
        else:
            policy_loss, entropy = sampled.policy_loss(
                policy_out, policy_t, tg["sampled"], cfg.min_std
            )
        policy_loss = (policy_loss * policy_m).sum(1)
        entropy = (entropy * policy_m).sum(1)
        cons = losses.consistency_loss(predicted_proj, target_proj).view(K, B).T
        consistency = (cons * policy_m[:, 1:]).sum(1)
        per_sample = (
            cfg.reward_coef * reward_loss
            + cfg.value_coef * value_loss
            + cfg.policy_coef * policy_loss
            + cfg.consistency_coef * consistency
            - cfg.entropy_coef * entropy
        )
        loss = (weights * per_sample).mean() / K  # EfficientZero scales the gradient by 1/K

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clipped_step(self.optimizer, self.net.parameters(), cfg.grad_clip)
        t_end = time.perf_counter()

        with torch.no_grad():
            predicted_value = self.value_support.decode(vlogs_t[:, 0])
            errors = (predicted_value - value_t[:, 0]).abs().double().cpu().numpy()
        if torch.isfinite(grad_norm):  # a skipped step leaves the priorities as they were
            self.replay.update_priorities(index, errors)
        self.updates += 1
        if self.updates % cfg.target_update_interval == 0:
            self.target.load_state_dict(self.net.state_dict())
            if self.prefetch is not None:
                self.prefetch.target_refreshed()
        return {
            "train/loss": loss.item(),
            "train/value_loss": value_loss.mean().item(),
            "train/reward_loss": reward_loss.mean().item(),
            "train/policy_loss": policy_loss.mean().item(),
            "train/consistency": consistency.mean().item() / K,
            "train/entropy": entropy.mean().item() / (K + 1),
            "train/value_target": value_t[:, 0].mean().item(),
            "train/value_pred": predicted_value.mean().item(),
            "train/grad_norm": grad_norm.item(),
            "train/lr": lr,
            "train/td_steps": float(tg["td_steps"].mean()),
            "train/search_value_share": float(tg["search_value_used"].mean()),
            "perf/update_s": t_end - t_start,
            "perf/network_s": t_end - t_net,
            **tg["timings"],
        }

    def reanalyser(self) -> Reanalyser:
        """What a reanalysis worker runs: a job's targets from the target weights it names."""
        return Reanalyser(self)

    # ---------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            **({} if self.prefetch is None else {"prefetch": self.prefetch.state_dict()}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        if self.prefetch is not None:
            self.prefetch.load_state_dict(state["prefetch"])
