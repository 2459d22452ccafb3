"""The Q-network of DQN: a torso, then one linear stream or dueling streams (Wang et al. 2016)."""

from __future__ import annotations

import torch
from torch import nn

from frugal.envs.base import EnvSpec
from frugal.nets.layers import mlp
from frugal.nets.torsos import make_torso


class QNetwork(nn.Module):
    """Q-values [B, num_actions] of observations shaped by `spec`. The torso is `torso` (auto |
    nature | minatar | mlp, with `hidden` layers for mlp); each head stream has one hidden layer
    of `head_hidden` units. Dueling: Q = V + A - mean(A)."""

    def __init__(
        self,
        spec: EnvSpec,
        num_actions: int,
        *,
        torso: str,
        hidden: tuple[int, ...],
        head_hidden: int,
        dueling: bool,
    ):
        super().__init__()
        self.torso, features = make_torso(spec, torso, hidden)
        self.dueling = dueling
        self.advantage = mlp((features, head_hidden, num_actions), last_act=False)
        if dueling:
            self.value = mlp((features, head_hidden, 1), last_act=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.torso(obs)
        a = self.advantage(h)
        if not self.dueling:
            return a
        return self.value(h) + a - a.mean(dim=1, keepdim=True)
