"""The PPO agent (Schulman et al. 2017) with the details that make it work in practice (Huang et
al. 2022, "The 37 implementation details of PPO"): GAE, a clipped surrogate and a clipped value
loss, several epochs of shuffled minibatches with per-minibatch advantage normalisation, an
entropy bonus, gradient-norm clipping, linear learning-rate annealing, orthogonal
initialisation, and running observation / return normalisation for continuous control.

On the shared runner PPO is a mode of the one loop: `observe` fills a rollout of `num_steps`
vectorised steps and one `update()` runs all epochs over it, so
`updates_due(env_step) = env_step // (num_envs * num_steps)`. Actions are sampled with the `rng`
the caller passes to `act` (never torch's global RNG), and minibatches are shuffled by the agent's
own numpy generator, saved in the checkpoint together with the partial rollout and the
normalisers: a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from frugal.agents.base import ActState, Transition, detached
from frugal.agents.ppo.config import PRESETS, Config, check
from frugal.agents.ppo.losses import (
    clipped_policy_loss,
    gae,
    log_prob_entropy,
    sample_categorical,
    value_loss,
)
from frugal.envs.base import EnvSpec
from frugal.nets import precision
from frugal.nets.actor_critic import ActorCritic
from frugal.nets.normalize import RunningMeanStd
from frugal.nets.optim import clipped_step


class Agent:
    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        check(cfg, spec, num_envs)
        self.cfg, self.spec, self.device = cfg, spec, device
        # resolved once: fp32 | bf16 (autocast of the update's network passes)
        self.precision = precision.resolve_precision(cfg.precision, device, pixels=spec.pixels)
        self.num_envs = num_envs
        generator = torch.Generator().manual_seed(seed)
        self.net = ActorCritic(
            spec,
            spec.num_actions,
            discrete=spec.discrete,
            torso=cfg.torso,
            hidden=cfg.hidden,
            features=cfg.features,
            init_log_std=cfg.init_log_std,
            generator=generator,
        ).to(device)
        self._nhwc = cfg.channels_last and spec.pixels
        if self._nhwc:
            self.net = self.net.to(memory_format=torch.channels_last)
        # the fused kernel: one pass over all parameters (4x faster than per-tensor Adam on CPU)
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=device.type in ("cpu", "cuda")
        )
        self.rng = np.random.default_rng(seed)  # minibatch shuffling
        self.obs_rms = RunningMeanStd(spec.obs_shape) if cfg.norm_obs else None
        self.ret_rms = RunningMeanStd(()) if cfg.norm_reward else None
        self.discounted_return = np.zeros(num_envs)  # for reward scaling
        self.env_steps = 0
        self.updates = 0
        # the rollout, [T, N, ...] on the device; rows [0, pos) are filled
        T, N = cfg.num_steps, num_envs
        obs_dtype = torch.uint8 if spec.pixels else torch.float32

        def zeros(*shape, dtype=torch.float32):
            return torch.zeros(shape, dtype=dtype, device=device)

        action_shape = () if spec.discrete else (spec.num_actions,)
        action_dtype = torch.int64 if spec.discrete else torch.float32
        self.buffer: dict[str, torch.Tensor] = {
            "obs": self._obs_storage(T, N, obs_dtype),
            "actions": zeros(T, N, *action_shape, dtype=action_dtype),
            "logprobs": zeros(T, N),
            "values": zeros(T, N),
            "rewards": zeros(T, N),
            "terminated": zeros(T, N, dtype=torch.bool),
            "cut": zeros(T, N, dtype=torch.bool),  # episode ended here (terminated or truncated)
            "bootstrap": zeros(T, N, dtype=torch.bool),  # next value is V(final obs)
            "final_values": zeros(T, N),  # V(final obs) where bootstrap
        }
        self.pos = 0
        # the (prepared) observation after the latest step: bootstraps the rollout's last step
        self.last_next_obs = zeros(N, *spec.obs_shape, dtype=obs_dtype)
        self._pending: tuple | None = None  # what act(explore=True) computed for observe

    def _obs_storage(self, T: int, N: int, dtype: torch.dtype) -> torch.Tensor:
        """[T, N, *obs_shape] zeros; with channels_last, a view of a [T*N, C, H, W] NHWC tensor,
        so minibatches gathered from the flattened rollout are NHWC already."""
        flat = torch.zeros((T * N, *self.spec.obs_shape), dtype=dtype, device=self.device)
        if self._nhwc:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return flat.view(T, N, *self.spec.obs_shape)

    # ---------------------------------------------------------------------------------- act

    def _prepare(self, obs: np.ndarray) -> torch.Tensor:
        """Env observations -> network input (normalised with the current statistics)."""
        if self.obs_rms is not None:
            obs = self.obs_rms.normalize(obs, self.cfg.clip_obs)
        return torch.as_tensor(obs, device=self.device)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of pixel inputs in the torso's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self._nhwc else x

    def _log_prob_entropy(
        self, out: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies [B] under the policy outputs `out` [B, A]."""
        log_std = None if self.spec.discrete else self.net.log_std
        return log_prob_entropy(out, actions, log_std)

    def initial_act_state(self, num_envs: int) -> ActState:
        return None

    @torch.no_grad()
    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        x = self._prepare(obs)
        if not explore:  # evaluation: the mode of the policy (the env clips Gaussian means)
            out = self.net.policy(self._layout(x))
            self._view = (x, out, None)
            if self.spec.discrete:
                return out.argmax(-1).cpu().numpy(), state
            return out.cpu().numpy(), state
        out, value = self.net(self._layout(x))
        self._view = (x, out, value)
        if self.spec.discrete:
            action = sample_categorical(out, rng)
        else:
            mean = out.double().cpu().numpy()
            std = self.net.log_std.double().exp().cpu().numpy()
            action = (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)
        action_t = torch.as_tensor(action, device=self.device)
        logp, _ = self._log_prob_entropy(out, action_t)
        self._pending = (obs, action, x, action_t, logp, value)
        return action, state

    @torch.no_grad()
    def view_record(self) -> dict[str, np.ndarray] | None:
        """The policy and value of the last act(), for the episode viewer (greedy acting skips
        the value head, so it runs here, on the same input)."""
        view = getattr(self, "_view", None)
        if view is None:
            return None
        x, out, value = view
        if value is None:
            value = self.net.value(self._layout(x))
        record = {"value": value.float().cpu().numpy()}
        if self.spec.discrete:
            record["action_probs"] = out.float().softmax(-1).cpu().numpy()
        else:
            record["action_mean"] = out.float().cpu().numpy()
            std = self.net.log_std.float().exp().expand_as(out)
            record["action_std"] = std.cpu().numpy()
        return record

    def observe(self, t: Transition) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is t.obs and pending[1] is t.action:
            _, _, x, action, logp, value = pending
        else:  # not the step act() prepared: evaluate it now, with the same statistics
            x = self._prepare(t.obs)
            action = torch.as_tensor(t.action, device=self.device)
            with torch.no_grad():
                out, value = self.net(self._layout(x))
                logp, _ = self._log_prob_entropy(out, action)
        if self.obs_rms is not None:  # every observation acted on, counted once
            self.obs_rms.update(t.obs)
        cut = t.terminated | t.truncated
        bootstrap = t.truncated & ~t.terminated
        b, p = self.buffer, self.pos
        b["obs"][p] = x
        b["actions"][p] = action
        b["logprobs"][p] = logp
        b["values"][p] = value
        b["rewards"][p] = torch.as_tensor(self._process_rewards(t.reward, cut), device=self.device)
        b["terminated"][p] = torch.as_tensor(t.terminated, device=self.device)
        b["cut"][p] = torch.as_tensor(cut, device=self.device)
        b["bootstrap"][p] = torch.as_tensor(bootstrap, device=self.device)
        b["final_values"][p] = 0.0
        if bootstrap.any():
            rows = np.flatnonzero(bootstrap)
            with torch.no_grad():
                final = self.net.value(self._layout(self._prepare(t.final_obs[rows])))
            b["final_values"][p, torch.as_tensor(rows, device=self.device)] = final
        self.last_next_obs = self._prepare(t.next_obs).clone()
        self.pos += 1
        self.env_steps += len(t.reward)

    def _process_rewards(self, reward: np.ndarray, cut: np.ndarray) -> np.ndarray:
        r = np.asarray(reward, dtype=np.float64)
        if self.cfg.reward_clip:
            r = np.clip(r, -1.0, 1.0)
        if self.ret_rms is not None:  # scale by the std of the discounted return (VecNormalize)
            self.discounted_return = self.discounted_return * self.cfg.discount + r
            self.ret_rms.update(self.discounted_return)
            r = self.ret_rms.scale(r, self.cfg.clip_reward)
            self.discounted_return[cut] = 0.0
        return r.astype(np.float32)

    def restart(self, obs: np.ndarray) -> None:
        """The games in progress were replaced by new ones at `obs`: the partial rollout is kept
        and its last step is cut as a truncation, bootstrapped from the observation that really
        followed it (still held in `last_next_obs`)."""
        self._pending = None
        if self.pos > 0:
            b, p = self.buffer, self.pos - 1
            open_rows = ~b["cut"][p]
            with torch.no_grad():
                final = self.net.value(self._layout(self.last_next_obs))
            b["final_values"][p] = torch.where(open_rows, final, b["final_values"][p])
            b["bootstrap"][p] |= open_rows
            b["cut"][p] |= open_rows
        self.discounted_return[:] = 0.0
        self.last_next_obs = self._prepare(obs).clone()

    def acting_state(self) -> dict[str, Any]:
        return {
            "net": detached(self.net),
            "obs_rms": self.obs_rms.state_dict() if self.obs_rms is not None else None,
        }

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])

    def act_record(self) -> dict[str, np.ndarray] | None:
        """The normalised input, log-probability and value act() computed, one row per env."""
        if self._pending is None:
            return None
        _, _, x, _, logp, value = self._pending
        return {k: v.cpu().numpy() for k, v in (("x", x), ("logp", logp), ("value", value))}

    def load_act_record(self, record, obs, action) -> None:
        if record is None:
            self._pending = None
            return
        dev = self.device
        x, logp, value = (torch.as_tensor(record[k], device=dev) for k in ("x", "logp", "value"))
        self._pending = (obs, action, x, torch.as_tensor(action, device=dev), logp, value)

    # ------------------------------------------------------------------------------- update

    def updates_due(self, env_step: int) -> int:
        return env_step // (self.num_envs * self.cfg.num_steps)

    def final_updates_due(self, total_env_steps: int) -> int:
        return self.updates_due(total_env_steps)

    def schedule_fraction(self) -> float:
        """1 at the start, falling linearly to 0 at anneal_steps env steps (CleanRL's
        `1 - (iteration - 1) / num_iterations`, counted in env steps)."""
        if self.cfg.anneal_steps <= 0:
            return 1.0
        done = self.updates * self.num_envs * self.cfg.num_steps
        return max(0.0, 1.0 - done / self.cfg.anneal_steps)

    @torch.no_grad()
    def advantages(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and returns [T, N] of the full rollout. The successor value of step t
        is V(obs[t+1]) from the rollout, V(final obs) where the episode was truncated, and
        V(last_next_obs) for the last step."""
        b = self.buffer
        last_value = self.net.value(self._layout(self.last_next_obs))
        next_values = torch.cat([b["values"][1:], last_value[None]])
        next_values = torch.where(b["bootstrap"], b["final_values"], next_values)
        return gae(
            b["rewards"],
            b["values"],
            next_values,
            b["terminated"],
            b["cut"],
            self.cfg.discount,
            self.cfg.gae_lambda,
        )

    def update(self) -> dict[str, float]:
        cfg, b = self.cfg, self.buffer
        if self.pos != cfg.num_steps:
            raise RuntimeError(f"PPO update with {self.pos}/{cfg.num_steps} rollout steps")
        frac = self.schedule_fraction()
        lr = cfg.lr * frac
        clip = cfg.clip_range * (frac if cfg.clip_anneal else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        advantages, returns = self.advantages()
        size = cfg.num_steps * self.num_envs
        obs = b["obs"].reshape(size, *self.spec.obs_shape)
        actions = b["actions"].reshape(size, *b["actions"].shape[2:])
        old_logp, old_values = b["logprobs"].reshape(size), b["values"].reshape(size)
        advantages, returns = advantages.reshape(size), returns.reshape(size)

        # kept as tensors and read once at the end: no device sync per minibatch
        stats: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("pg_loss", "v_loss", "entropy", "approx_kl", "clip_frac")
        }
        for _ in range(cfg.update_epochs):
            order = self.rng.permutation(size)
            for idx_np in np.array_split(order, cfg.num_minibatches):
                idx = torch.as_tensor(idx_np, device=self.device)
                with precision.autocast(self.precision, self.device):
                    out, values = self.net(self._layout(obs[idx]))
                out, values = out.float(), values.float()
                logp, entropy = self._log_prob_entropy(out, actions[idx])
                adv = advantages[idx]
                if cfg.norm_adv and len(adv) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss, ratio = clipped_policy_loss(logp, old_logp[idx], adv, clip)
                v_loss = value_loss(
                    values, old_values[idx], returns[idx], clip if cfg.clip_value else None
                )
                entropy = entropy.mean()
                loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clipped_step(self.optimizer, self.net.parameters(), cfg.grad_clip)
                with torch.no_grad():
                    log_ratio = logp - old_logp[idx]
                    approx_kl = ((ratio - 1.0) - log_ratio).mean()  # Schulman's k3 estimator
                    clip_frac = ((ratio - 1.0).abs() > clip).float().mean()
                for key, value in (
                    ("pg_loss", pg_loss),
                    ("v_loss", v_loss),
                    ("entropy", entropy),
                    ("approx_kl", approx_kl),
                    ("clip_frac", clip_frac),
                ):
                    stats[key].append(value.detach())
            if cfg.target_kl is not None and stats["approx_kl"][-1].item() > cfg.target_kl:
                break

        var_returns = returns.var()
        explained = 1.0 - (returns - old_values).var() / var_returns if var_returns > 0 else 0.0
        self.pos = 0
        self.updates += 1
        metrics = {f"train/{k}": torch.stack(v).mean().item() for k, v in stats.items()}
        metrics["train/explained_variance"] = float(explained)
        metrics["train/lr"] = lr
        metrics["train/clip_range"] = clip
        if not self.spec.discrete:
            metrics["train/action_std"] = float(self.net.log_std.detach().exp().mean())
        return metrics

    # -------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        p = self.pos
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "obs_rms": self.obs_rms.state_dict() if self.obs_rms is not None else None,
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms is not None else None,
            "discounted_return": self.discounted_return.copy(),
            "rollout": {k: v[:p].clone() for k, v in self.buffer.items()},
            "pos": p,
            "last_next_obs": self.last_next_obs.clone(),
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
        self.discounted_return = np.array(state["discounted_return"], dtype=np.float64)
        self.pos = int(state["pos"])
        for key, value in state["rollout"].items():
            self.buffer[key][: self.pos] = value.to(self.device)
        self.last_next_obs = state["last_next_obs"].to(self.device)
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self._pending = None
