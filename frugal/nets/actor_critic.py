"""PPO's actor-critic network with CleanRL's orthogonal initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from frugal.envs.base import EnvSpec
from frugal.nets.layers import mlp, orthogonal_init
from frugal.nets.torsos import make_torso


class ActorCritic(nn.Module):
    """Pixels: one torso (`torso`, then a ReLU layer of `features` units unless 0) shared by a
    policy and a value head. Vectors: separate tanh MLPs with `hidden` layers for the policy and
    the value (as in the paper's MuJoCo setup).

    `policy(obs)` gives logits [B, A] (discrete) or the Gaussian mean [B, A] (continuous, with a
    state-independent `log_std` parameter starting at `init_log_std`); `forward(obs)` gives
    (policy output, value [B]). Initial weights are drawn from `generator`."""

    def __init__(
        self,
        spec: EnvSpec,
        num_actions: int,
        *,
        discrete: bool,
        torso: str,
        hidden: tuple[int, ...],
        features: int,
        init_log_std: float,
        generator: torch.Generator,
    ):
        super().__init__()
        root2 = math.sqrt(2.0)
        if spec.pixels:
            body, n = make_torso(spec, torso, ())
            layers: list[nn.Module] = [body]
            if features:
                layers += [nn.Linear(n, features), nn.ReLU()]
                n = features
            self.shared: nn.Module | None = nn.Sequential(*layers)
            orthogonal_init(self.shared, root2, generator)
            self.actor: nn.Module = nn.Linear(n, num_actions)
            self.critic: nn.Module = nn.Linear(n, 1)
            actor_last, critic_last = self.actor, self.critic
        else:
            size = math.prod(spec.obs_shape)
            self.shared = None
            self.actor = nn.Sequential(
                nn.Flatten(), mlp((size, *hidden, num_actions), nn.Tanh, last_act=False)
            )
            self.critic = nn.Sequential(
                nn.Flatten(), mlp((size, *hidden, 1), nn.Tanh, last_act=False)
            )
            orthogonal_init(self.actor, root2, generator)
            orthogonal_init(self.critic, root2, generator)
            actor_last, critic_last = self.actor[-1][-1], self.critic[-1][-1]
        # small policy output: near-uniform / near-zero-mean start; unit-scale value output
        orthogonal_init(actor_last, 0.01, generator)
        orthogonal_init(critic_last, 1.0, generator)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((num_actions,), float(init_log_std)))

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
