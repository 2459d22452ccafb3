"""PPO (Schulman et al. 2017) with the details that make it work in practice (Huang et al. 2022,
"The 37 implementation details of PPO"): GAE, a clipped surrogate and a clipped value loss,
several epochs of shuffled minibatches with per-minibatch advantage normalisation, an entropy
bonus, gradient-norm clipping, linear learning-rate annealing, orthogonal initialisation, and
running observation / return normalisation for continuous control.

On the shared runner PPO is a mode of the one loop: `observe` fills a rollout of `num_steps`
vectorised steps and one `update()` runs all epochs over it, so
`updates_due(env_step) = env_step // (num_envs * num_steps)`. Actions are sampled with the `rng`
the caller passes to `act` (never torch's global RNG), and minibatches are shuffled by the agent's
own numpy generator, saved in the checkpoint together with the partial rollout and the
normalisers: a resumed run continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from frugal.agents.base import ActState, Transition, preset_by_suite
from frugal.config import Preset, mutable
from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets.layers import PixelScaler, mlp
from frugal.nets.normalize import RunningMeanStd
from frugal.nets.torsos import make_torso


@dataclass
class Config:
    num_steps: int = 128  # rollout length per env; one update per num_envs * num_steps env steps
    num_minibatches: int = mutable(4)
    update_epochs: int = mutable(4)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = mutable(2.5e-4)
    adam_eps: float = 1e-5
    # Linear annealing horizon in env steps: lr (and the clip range with clip_anneal) decays
    # from its value to 0 over this many env steps, then stays at 0; 0 = no annealing. A field of
    # its own rather than run.steps: the agent never sees the runner's clock, and extending a run
    # with `frugal resume --steps` must not silently rescale a schedule already half followed
    # (to keep learning past it, resume with a larger agent.anneal_steps: a mutable key).
    anneal_steps: int = mutable(0)
    clip_range: float = mutable(0.2)
    clip_anneal: bool = mutable(False)
    clip_value: bool = mutable(
        True
    )  # clip the value update to +-clip_range around the rollout's values
    ent_coef: float = mutable(0.01)
    vf_coef: float = mutable(0.5)
    max_grad_norm: float = mutable(0.5)
    norm_adv: bool = mutable(True)  # normalise advantages per minibatch
    target_kl: float | None = mutable(None)  # stop the epochs early once approx KL exceeds this
    reward_clip: bool = False  # clip raw rewards to [-1, 1] (Atari)
    norm_obs: bool = False  # running mean/std observation normalisation (vector obs)
    norm_reward: bool = False  # divide rewards by the running std of the discounted return
    clip_obs: float = 10.0
    clip_reward: float = 10.0  # bound on normalised rewards
    torso: str = "auto"  # auto | nature | minatar (pixels) | mlp (vectors)
    hidden: tuple[int, ...] = (64, 64)  # tanh MLP layers of actor and critic (vector obs)
    features: int = 512  # ReLU layer after a pixel torso, shared by both heads; 0 = none
    init_log_std: float = 0.0  # Gaussian policies: initial log standard deviation
    channels_last: bool = False  # NHWC memory format for the pixel torso (a CPU speed lever)
    precision: str = mutable("fp32")  # fp32 | bf16 (autocast for the network passes of an update)


# hyperparameters a resumed run may change (the rest shape the networks, rollout or normalisers)

PRESETS = {
    "atari": Preset(
        doc="CleanRL ppo_atari (Huang et al. 2022): 8 envs x 128 steps, 4 minibatches, 4 epochs, "
        "clip 0.1, lr 2.5e-4 annealed to 0 over 10M steps, Adam eps 1e-5, entropy 0.01, value "
        "coef 0.5, grad norm 0.5, GAE 0.99/0.95, rewards clipped, Nature CNN + 512 shared by "
        "both heads (NHWC memory format: faster convolutions on CPU), 84x84 gray 4-stack. Env "
        "protocol atari100k with FIRE reset: no sticky actions, up to 30 no-ops, life loss ends "
        "training episodes -- the NoFrameskip-v4 setup behind the published PPO Breakout scores "
        "(CleanRL 414.7, SB3 zoo 398), which machado's sticky actions and full-game training "
        "would make incomparable. Deviations from the paper (Schulman et al. 2017, Atari table): "
        "4 epochs (paper 3), value coef 0.5 (paper 1), clip range held at 0.1 (paper anneals it "
        "with the lr); value clipping, grad-norm clipping and per-minibatch advantage "
        "normalisation come from OpenAI baselines' PPO2, not the paper.",
        env=dict(
            protocol="atari100k",
            fire_reset=True,
            obs_size=84,
            grayscale=True,
            frame_stack=4,
            num_envs=8,
        ),
        run=dict(
            steps=10_000_000,
            eval_every=250_880,  # multiples of the 1024-step rollout
            eval_episodes=10,
            eval_envs=5,
            log_every=10_240,
            checkpoint_every=102_400,  # rollout boundaries: a resume restarts no rollout
        ),
        agent=dict(
            num_steps=128,
            num_minibatches=4,
            update_epochs=4,
            clip_range=0.1,
            lr=2.5e-4,
            anneal_steps=10_000_000,
            ent_coef=0.01,
            vf_coef=0.5,
            max_grad_norm=0.5,
            gamma=0.99,
            gae_lambda=0.95,
            reward_clip=True,
            channels_last=True,
        ),
    ),
    "minatar": Preset(
        doc="MinAtar: the atari preset's algorithm on the 10x10 grids (16@3x3 conv + 512), "
        "clip 0.2, 5M steps. Not benchmarked; a starting point, not a tuned recipe.",
        env=dict(num_envs=8),
        run=dict(steps=5_000_000, eval_every=102_400, eval_episodes=20, checkpoint_every=102_400),
        agent=dict(
            num_steps=128,
            num_minibatches=4,
            update_epochs=4,
            clip_range=0.2,
            lr=2.5e-4,
            anneal_steps=5_000_000,
            ent_coef=0.01,
        ),
    ),
    "cartpole": Preset(
        doc="Classic control with discrete actions, the RL Zoo's CartPole-v1 PPO: 8 envs x 32 "
        "steps, one minibatch of 256, 20 epochs, lr 1e-3 and clip 0.2 annealed to 0 over 100k "
        "steps, GAE 0.98/0.8, no entropy bonus, no value clipping, separate tanh 64-64 actor and "
        "critic. Solves CartPole (eval 500) in well under 100k steps. Deviations from the "
        "paper: the short-horizon discount and lambda, one large minibatch, many epochs, "
        "no value clipping (clipping unscaled returns of ~50 to +-0.2 steps stalls the critic).",
        env=dict(num_envs=8),
        run=dict(
            steps=100_000,
            eval_every=5_120,
            eval_episodes=10,
            log_every=2_560,
            checkpoint_every=10_240,
        ),
        agent=dict(
            num_steps=32,
            num_minibatches=1,
            update_epochs=20,
            gamma=0.98,
            gae_lambda=0.8,
            lr=1e-3,
            anneal_steps=100_000,
            clip_range=0.2,
            clip_anneal=True,
            clip_value=False,
            ent_coef=0.0,
        ),
    ),
    "pendulum": Preset(
        doc="Continuous control (Pendulum-v1 and similar Box-action tasks): diagonal Gaussian "
        "with state-independent log-std, separate tanh 64-64 actor and critic, running "
        "observation and return normalisation, 4 envs x 512 steps, 32 minibatches of 64, 10 "
        "epochs, lr 1e-3 annealed over 300k steps, GAE 0.9/0.95, no entropy bonus. Deviations "
        "from the paper's MuJoCo settings (1 env x 2048, lr 3e-4, gamma 0.99): Pendulum's dense "
        "reward learns faster with gamma 0.9 (as in the RL Zoo) and a larger learning rate; "
        "with gamma 0.95 one seed in three sat at -550 for 150k steps.",
        env=dict(num_envs=4),
        run=dict(
            steps=300_000,
            eval_every=10_240,
            eval_episodes=10,
            log_every=2_048,
            checkpoint_every=20_480,
        ),
        agent=dict(
            num_steps=512,
            num_minibatches=32,
            update_epochs=10,
            gamma=0.9,
            gae_lambda=0.95,
            lr=1e-3,
            anneal_steps=300_000,
            clip_range=0.2,
            ent_coef=0.0,
            norm_obs=True,
            norm_reward=True,
        ),
    ),
}


def default_preset(spec: EnvSpec) -> str:
    return preset_by_suite(spec, atari="atari")


# ---------------------------------------------------------------------------------- networks


class _ScaledPixels(nn.Module):
    """uint8 [B, C, H, W] -> float in [0, 1], scaled in place: the same values as PixelInput with
    one pass over the batch fewer (a few percent of a CPU update on 256 Atari frames)."""

    def __init__(self, high: float):
        super().__init__()
        self.scale = 1.0 / high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mul_(self.scale)


def _orthogonal(module: nn.Module, gain: float, generator: torch.Generator) -> None:
    """Orthogonal weights with `gain`, zero biases, on every linear and conv layer (CleanRL)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(layer.weight, gain, generator=generator)
            nn.init.zeros_(layer.bias)


class ActorCritic(nn.Module):
    """Pixels: one torso (Nature CNN + `features`) shared by a policy and a value head.
    Vectors: separate tanh MLPs for the policy and the value (as in the paper's MuJoCo setup).

    `policy(obs)` gives logits [B, A] (discrete) or the Gaussian mean [B, A] (continuous);
    `forward(obs)` gives (policy output, value [B])."""

    def __init__(self, spec: EnvSpec, cfg: Config, generator: torch.Generator):
        super().__init__()
        root2 = math.sqrt(2.0)
        out = spec.num_actions
        self.discrete = spec.discrete
        if spec.pixels:
            torso, n = make_torso(spec, cfg.torso, ())
            if isinstance(torso[0], PixelScaler):
                torso[0] = _ScaledPixels(spec.obs_high)
            layers: list[nn.Module] = [torso]
            if cfg.features:
                layers += [nn.Linear(n, cfg.features), nn.ReLU()]
                n = cfg.features
            self.shared: nn.Module | None = nn.Sequential(*layers)
            _orthogonal(self.shared, root2, generator)
            self.actor: nn.Module = nn.Linear(n, out)
            self.critic: nn.Module = nn.Linear(n, 1)
            actor_last, critic_last = self.actor, self.critic
        else:
            size = math.prod(spec.obs_shape)
            self.shared = None
            self.actor = nn.Sequential(
                nn.Flatten(), mlp((size, *cfg.hidden, out), nn.Tanh, last_act=False)
            )
            self.critic = nn.Sequential(
                nn.Flatten(), mlp((size, *cfg.hidden, 1), nn.Tanh, last_act=False)
            )
            _orthogonal(self.actor, root2, generator)
            _orthogonal(self.critic, root2, generator)
            actor_last, critic_last = self.actor[-1][-1], self.critic[-1][-1]
        # small policy output: near-uniform / near-zero-mean start; unit-scale value output
        _orthogonal(actor_last, 0.01, generator)
        _orthogonal(critic_last, 1.0, generator)
        if not spec.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(cfg.init_log_std)))

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.shared(obs) if self.shared is not None else obs
        return self.actor(h)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shared is not None:
            h = self.shared(obs)
            return self.actor(h), self.critic(h).squeeze(-1)
        return self.actor(obs), self.critic(obs).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.shared is not None:
            return self.critic(self.shared(obs)).squeeze(-1)
        return self.critic(obs).squeeze(-1)

    def log_prob_entropy(
        self, out: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities [B] of `actions` and entropies [B] of the policies `out`."""
        if self.discrete:
            return categorical_log_prob_entropy(out, actions)
        return gaussian_log_prob(out, self.log_std, actions), gaussian_entropy(self.log_std).expand(
            len(out)
        )


# ----------------------------------------------------------------------------- distributions


def categorical_log_prob_entropy(
    logits: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, A], integer actions [B] -> (log pi(a) [B], entropy [B])."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor):
    """Diagonal Gaussian log-density of `actions` [B, D] (the unclipped samples), summed over D."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian with log standard deviations `log_std` [D] (a scalar)."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum()


def sample_categorical(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One action per row of `logits` [B, A] by inverting the CDF with uniforms from `rng`."""
    probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


# ------------------------------------------------------------------------------------ losses


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    cut: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over a rollout; all inputs [T, N].

    next_values[t]: value of the true successor of step t's observation (V(final_obs) where the
    episode was truncated). terminated[t]: no bootstrap from it. cut[t]: an episode ended at t
    (terminated or truncated), so advantages do not flow back across it.
    Returns (advantages, returns = advantages + values), both [T, N]."""
    not_terminal = 1.0 - terminated.float()
    not_cut = 1.0 - cut.float()
    deltas = rewards + gamma * next_values * not_terminal - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_cut[t] * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped surrogate, to minimise: mean(max(-A r, -A clip(r, 1-c, 1+c))). Returns
    (loss, ratio r = pi/pi_old [B])."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return torch.max(unclipped, clipped).mean(), ratio


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """0.5 * mean squared error to the returns; with `clip`, the pessimistic max of the errors of
    the new value and of the old value moved by at most +-clip (PPO2's value clipping)."""
    error = (values - returns).pow(2)
    if clip is not None:
        moved = old_values + torch.clamp(values - old_values, -clip, clip)
        error = torch.max(error, (moved - returns).pow(2))
    return 0.5 * error.mean()


# ------------------------------------------------------------------------------------- agent


def _check(cfg: Config, spec: EnvSpec, num_envs: int) -> None:
    torsos = ("auto", "nature", "minatar", "mlp")
    if cfg.torso not in torsos:
        raise FrugalError(f"agent.torso must be one of {', '.join(torsos)}, got '{cfg.torso}'")
    if spec.pixels and cfg.torso == "mlp":
        raise FrugalError("agent.torso=mlp needs vector observations; use auto, nature or minatar")
    if not spec.pixels and cfg.torso not in ("auto", "mlp"):
        raise FrugalError(f"agent.torso={cfg.torso} needs pixel observations; use auto or mlp")
    if cfg.norm_obs and spec.pixels:
        raise FrugalError("agent.norm_obs is for vector observations (pixels are scaled by 1/255)")
    if cfg.num_steps < 1:
        raise FrugalError(f"agent.num_steps must be at least 1, got {cfg.num_steps}")
    if not 1 <= cfg.num_minibatches <= cfg.num_steps * num_envs:
        raise FrugalError(
            f"agent.num_minibatches must be between 1 and num_steps * num_envs = "
            f"{cfg.num_steps * num_envs}, got {cfg.num_minibatches}"
        )
    if cfg.update_epochs < 1:
        raise FrugalError(f"agent.update_epochs must be at least 1, got {cfg.update_epochs}")
    if cfg.precision not in ("fp32", "bf16"):
        raise FrugalError(f"agent.precision must be fp32 or bf16, got '{cfg.precision}'")


class Agent:
    Config = Config
    PRESETS = PRESETS

    def __init__(self, cfg: Config, spec: EnvSpec, num_envs: int, device: torch.device, seed: int):
        _check(cfg, spec, num_envs)
        self.cfg, self.spec, self.device = cfg, spec, device
        self.num_envs = num_envs
        generator = torch.Generator().manual_seed(seed)
        self.net = ActorCritic(spec, cfg, generator).to(device)
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

        self.buffer: dict[str, torch.Tensor] = {
            "obs": self._obs_storage(T, N, obs_dtype),
            "actions": zeros(T, N, dtype=torch.int64)
            if spec.discrete
            else zeros(T, N, spec.num_actions),
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

    def initial_act_state(self, num_envs: int) -> ActState:
        return None

    @torch.no_grad()
    def act(self, obs, state, first, *, explore: bool, rng: np.random.Generator):
        x = self._prepare(obs)
        if not explore:  # evaluation: the mode of the policy (the env clips Gaussian means)
            out = self.net.policy(self._layout(x))
            if self.spec.discrete:
                return out.argmax(-1).cpu().numpy(), state
            return out.cpu().numpy(), state
        out, value = self.net(self._layout(x))
        if self.spec.discrete:
            action = sample_categorical(out, rng)
        else:
            mean = out.double().cpu().numpy()
            std = self.net.log_std.double().exp().cpu().numpy()
            action = (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)
        action_t = torch.as_tensor(action, device=self.device)
        logp, _ = self.net.log_prob_entropy(out, action_t)
        self._pending = (obs, action, x, action_t, logp, value)
        return action, state

    def observe(self, t: Transition) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is t.obs and pending[1] is t.action:
            _, _, x, action, logp, value = pending
        else:  # not the step act() prepared: evaluate it now, with the same statistics
            x = self._prepare(t.obs)
            action = torch.as_tensor(t.action, device=self.device)
            with torch.no_grad():
                out, value = self.net(self._layout(x))
                logp, _ = self.net.log_prob_entropy(out, action)
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
            self.discounted_return = self.discounted_return * self.cfg.gamma + r
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
            self.cfg.gamma,
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
        bf16 = cfg.precision == "bf16"
        for _ in range(cfg.update_epochs):
            order = self.rng.permutation(size)
            for idx_np in np.array_split(order, cfg.num_minibatches):
                idx = torch.as_tensor(idx_np, device=self.device)
                with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
                    out, values = self.net(self._layout(obs[idx]))
                out, values = out.float(), values.float()
                logp, entropy = self.net.log_prob_entropy(out, actions[idx])
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
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
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
