"""EfficientZero V1 (Ye et al. 2021, "Mastering Atari Games with Limited Data").

Search: pUCT (MuZero's) over the discrete actions, with Dirichlet noise on the root prior while
collecting. Acting: an action drawn from the root's visit counts raised to 1 / T, the
temperature T halved at each of `temperature_updates` (1, 0.5, 0.25); greedy evaluation plays
the most visited action. Reward head: the value-prefix LSTM by default. Policy target: the
visit distribution of a search with the target model. Value target: n-step TD whose horizon
shrinks with the age of the data (the off-policy correction), never a search value.
"""

from __future__ import annotations

import numpy as np
import torch

from frugal.agents.base import EnvSpec
from frugal.agents.efficientzero.config import Config, search_params
from frugal.agents.efficientzero.model import DiscretePrior, Encoded, SearchModel
from frugal.agents.efficientzero.targets import off_policy_td_steps
from frugal.nets.muzero import MuZeroNet
from frugal.search import PuctParams, SearchOutput, puct


def visit_temperature(updates: int, thresholds: tuple[int, ...]) -> float:
    """EfficientZero V1's schedule: 1, then halved after each threshold (1, 0.5, 0.25)."""
    return 0.5 ** sum(updates >= t for t in thresholds)


class V1:
    value_prefix = True

    @staticmethod
    def prior(cfg: Config, spec: EnvSpec) -> DiscretePrior:
        return DiscretePrior()  # discrete actions only (checked with the config)

    def __init__(self, cfg: Config, model: SearchModel):
        self.cfg, self.model = cfg, model
        common = dict(
            pb_c_init=cfg.pb_c_init, pb_c_base=cfg.pb_c_base,
            dirichlet_alpha=cfg.dirichlet_alpha, value_delta_max=cfg.value_delta_max,
        )  # fmt: skip
        self.params = {  # by explore: root noise only while collecting
            True: search_params(PuctParams, dirichlet_fraction=cfg.dirichlet_fraction, **common),
            False: search_params(PuctParams, dirichlet_fraction=0.0, **common),
        }

    @torch.inference_mode()
    def search(
        self,
        net: MuZeroNet,
        obs: torch.Tensor,
        generator: torch.Generator,
        explore: bool,
        encoded: Encoded | None = None,
    ) -> tuple[SearchOutput, torch.Tensor | None]:
        return self.model.search(puct, net, obs, generator, self.params[explore], encoded)

    def choose(
        self, out: SearchOutput, generator: torch.Generator, updates: int, explore: bool
    ) -> torch.Tensor:
        if not explore:
            return out.action.cpu()
        temperature = visit_temperature(updates, self.cfg.temperature_updates)
        probs = out.visit_counts.double().cpu() ** (1.0 / temperature)
        return torch.multinomial(probs / probs.sum(1, keepdim=True), 1, generator=generator)[:, 0]

    def policy_target(self, out: SearchOutput) -> np.ndarray:
        """The root's visit distribution N(a) / S."""
        return out.action_weights.float().cpu().numpy()

    def td_steps(self, age: np.ndarray) -> np.ndarray:
        return off_policy_td_steps(age, self.cfg.td_steps, self.cfg.auto_td_steps)

    def search_value_mask(self, age: np.ndarray, updates: int) -> np.ndarray:
        return np.zeros(np.shape(age), dtype=bool)
