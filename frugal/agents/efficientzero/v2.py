"""EfficientZero V2 (Wang et al. 2024, "EfficientZero V2: Mastering Discrete and Continuous
Control with Limited Data").

Search: Gumbel MuZero (Gumbel-top-m and sequential halving at the root), the Gumbel noise on
only while collecting; for Box actions, sampled search over K candidates per node (sampled.py).
Acting: the search's chosen action. Reward head: per-step reward by default. Policy target: the
improved policy softmax(logits + sigma(completed Q)) of a search with the target model. Value
target: search-based value estimation (SVE): once `mixed_value_start` updates have run, data
older than the newest `mixed_value_threshold` transitions takes the root value of that search;
newer data keeps the fixed-horizon n-step TD target.
"""

from __future__ import annotations

import numpy as np
import torch

from frugal.agents.base import EnvSpec
from frugal.agents.efficientzero.config import Config, search_params
from frugal.agents.efficientzero.model import DiscretePrior, Encoded, Prior, SearchModel
from frugal.agents.efficientzero.sampled import SampledPrior
from frugal.agents.efficientzero.targets import search_value_mask
from frugal.nets.muzero import MuZeroNet
from frugal.search import GumbelParams, SearchOutput, gumbel


class V2:
    value_prefix = False

    @staticmethod
    def prior(cfg: Config, spec: EnvSpec) -> Prior:
        if spec.discrete:
            return DiscretePrior()
        return SampledPrior(
            cfg.num_sampled_actions, cfg.policy_sampled_actions, cfg.std_magnification,
            cfg.min_std,
        )  # fmt: skip

    def __init__(self, cfg: Config, model: SearchModel):
        self.cfg, self.model = cfg, model
        common = dict(
            max_considered_actions=cfg.max_considered_actions, c_visit=cfg.c_visit,
            c_scale=cfg.c_scale, rescale=cfg.gumbel_rescale, value_delta_max=cfg.value_delta_max,
        )  # fmt: skip
        self.params = {  # by explore: Gumbel noise only while collecting
            True: search_params(GumbelParams, gumbel_scale=1.0, **common),
            False: search_params(GumbelParams, gumbel_scale=0.0, **common),
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
        return self.model.search(gumbel, net, obs, generator, self.params[explore], encoded)

    def choose(
        self, out: SearchOutput, generator: torch.Generator, updates: int, explore: bool
    ) -> torch.Tensor:
        return out.action.cpu()  # the sequential-halving winner

    def policy_target(self, out: SearchOutput) -> np.ndarray:
        """The improved policy softmax(logits + sigma(completed Q))."""
        return out.action_weights.float().cpu().numpy()

    def td_steps(self, age: np.ndarray) -> np.ndarray:
        return np.full(len(age), self.cfg.td_steps, dtype=np.int64)

    def search_value_mask(self, age: np.ndarray, updates: int) -> np.ndarray:
        cfg = self.cfg
        return search_value_mask(age, updates, cfg.mixed_value_start, cfg.mixed_value_threshold)
