"""EfficientZero's learned model as the tree search sees it: the root of a batched search and
the `recurrent_fn` that expands one node per root, over either version's search.

An embedding is a dict: s (the latent), and for a value-prefix model h, c (the LSTM state),
prefix (the value prefix predicted at the node) and depth (unroll steps since the root); for
sampled search also cand (the node's candidate actions). A latent-only embedding travels as a
bare tensor (the search's fastest path). A value-prefix model predicts sums of rewards since the
LSTM was last reset; the search gets rewards, their differences, and the LSTM restarts every
`lstm_horizon` steps below the root, as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
import torch

from frugal.agents.efficientzero.config import Config
from frugal.nets import precision
from frugal.nets.muzero import MuZeroNet
from frugal.nets.support import Support
from frugal.search import Root, SearchOutput, Step

Embedding = dict[str, torch.Tensor]
# (latent, policy output, value logits) of observations already represented
Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
CPU_CHUNK = 128  # observations per representation pass on a CPU (see encode)


def encode(net: MuZeroNet, obs: torch.Tensor, precision_name: str, device: torch.device) -> Encoded:
    """Representation and prediction of N observations for inference: (latent, policy output,
    value logits) as the network computes them (under autocast at bf16). On a CPU the batch runs
    in chunks of CPU_CHUNK, whose activations stay in the core's cache (a conv torso over 768
    MinAtar grids runs ~2.5x faster so); each sample's result does not depend on the chunking."""
    chunk = len(obs) if device.type != "cpu" or len(obs) == 0 else CPU_CHUNK
    parts = []
    with torch.inference_mode(), precision.autocast(precision_name, device, len(obs)):
        for piece in obs.split(max(1, chunk)) if len(obs) else [obs]:
            s = net.represent(piece)
            parts.append((s, *net.predict(s)))
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(x) for x in zip(*parts, strict=True))  # type: ignore[return-value]


class Prior(Protocol):
    """How a node's policy output becomes the search's prior over its (A or K) slots."""

    def logits(
        self, policy: torch.Tensor, emb: Embedding, generator: torch.Generator
    ) -> torch.Tensor:
        """Prior logits [N, slots]; may add the node's candidates to `emb`."""
        ...

    def action(self, emb: Embedding, slot: torch.Tensor) -> torch.Tensor:
        """The action the dynamics takes for the chosen slot [N] of each node."""
        ...


class DiscretePrior:
    """Discrete actions: the slots are the actions, the prior the policy logits."""

    def logits(
        self, policy: torch.Tensor, emb: Embedding, generator: torch.Generator
    ) -> torch.Tensor:
        return policy.float()

    def action(self, emb: Embedding, slot: torch.Tensor) -> torch.Tensor:
        return slot


class SearchModel:
    """Builds search roots and recurrent_fn from a MuZeroNet (the online or the target one)."""

    def __init__(
        self,
        cfg: Config,
        value_support: Support,
        reward_support: Support,
        value_prefix: bool,
        prior: Prior,
        device: torch.device,
        precision_name: str = "fp32",
    ):
        self.cfg, self.value_prefix, self.prior = cfg, value_prefix, prior
        self.value_support, self.reward_support = value_support, reward_support
        self.device = device
        self.precision = precision_name  # resolved: fp32 | bf16

    def autocast(self, batch: int) -> AbstractContextManager:
        return precision.autocast(self.precision, self.device, batch)

    @torch.inference_mode()
    def root(
        self,
        net: MuZeroNet,
        obs: torch.Tensor,
        generator: torch.Generator,
        encoded: Encoded | None = None,
    ) -> Root:
        """The search root of N observations [N, ...]; `encoded`: their (latent, policy,
        value logits) when already computed (then `obs` is not used)."""
        if encoded is None:
            with self.autocast(len(obs)):
                s = net.represent(obs)
                policy, vlog = net.predict(s)
        else:
            s, policy, vlog = encoded
        emb: Embedding = {"s": s.float()}
        if self.value_prefix:
            n = len(s)
            emb.update(
                h=torch.zeros(n, self.cfg.lstm_hidden, device=s.device),
                c=torch.zeros(n, self.cfg.lstm_hidden, device=s.device),
                prefix=torch.zeros(n, device=s.device),
                depth=torch.zeros(n, device=s.device),
            )
        logits = self.prior.logits(policy, emb, generator)
        value = self.value_support.decode(vlog)
        return Root(prior_logits=logits, value=value, embedding=emb["s"] if len(emb) == 1 else emb)

    def recurrent_fn(
        self, net: MuZeroNet, generator: torch.Generator, batch: int
    ) -> Callable[[Any, torch.Tensor], tuple[Step, Any]]:
        """recurrent_fn for one search over `batch` roots."""
        horizon, prior = self.cfg.lstm_horizon, self.prior
        vs, rs = self.value_support, self.reward_support
        # EfficientZero predicts no terminals: every edge has the configured discount
        discount = torch.full((batch,), self.cfg.discount, dtype=torch.float64)

        def recurrent(emb: Embedding | torch.Tensor, slot: torch.Tensor) -> tuple[Step, Any]:
            if isinstance(emb, torch.Tensor):  # the latent alone (search's fast path)
                emb = {"s": emb}
            s = emb["s"]
            act = prior.action(emb, slot)
            with self.autocast(batch):
                if self.value_prefix:
                    nxt, rlog, (h, c) = net.dynamics(s, act, (emb["h"], emb["c"]))
                else:
                    nxt, rlog, _ = net.dynamics(s, act)
                policy, vlog = net.predict(nxt)
            child: Embedding = {"s": nxt.float()}  # same key order as the root's embedding
            if self.value_prefix:
                prefix = rs.decode(rlog)
                reward = prefix - emb["prefix"]
                depth = emb["depth"] + 1
                reset = (torch.remainder(depth, horizon) == 0)[:, None]
                child.update(
                    h=torch.where(reset, 0.0, h.float()),
                    c=torch.where(reset, 0.0, c.float()),
                    prefix=torch.where(reset[:, 0], 0.0, prefix),
                    depth=depth,
                )
            else:
                reward = rs.decode(rlog)
            logits = prior.logits(policy, child, generator)
            step = Step(
                reward=reward, discount=discount, prior_logits=logits, value=vs.decode(vlog)
            )
            return step, (child["s"] if len(child) == 1 else child)

        return recurrent

    @torch.inference_mode()
    def predicted_reward(
        self, net: MuZeroNet, obs: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        """The reward [N] the model predicts for taking `action` [N] (slot) or [N, D] (Box, in
        [-1, 1]) from observations `obs` [N, ...]: one dynamics step from the root (a value
        prefix after one step from a zero LSTM state is that step's reward)."""
        with self.autocast(len(obs)):
            s = net.represent(obs)
            _, rlog, _ = net.dynamics(s, action, net.initial_reward_state(len(s), s.device))
        return self.reward_support.decode(rlog.float())

    def search(
        self,
        method: Callable[..., SearchOutput],
        net: MuZeroNet,
        obs: torch.Tensor,
        generator: torch.Generator,
        params: Any,
        encoded: Encoded | None = None,
    ) -> tuple[SearchOutput, torch.Tensor | None]:
        """Run `method` (frugal.search's puct or gumbel) from N observations with `params`:
        (SearchOutput, the root candidates [N, K, D] of sampled search, else None). `encoded`:
        the roots' representation when already computed (then obs only gives N)."""
        root = self.root(net, obs, generator, encoded)
        recurrent = self.recurrent_fn(net, generator, len(obs))
        out = method(root, recurrent, self.cfg.num_simulations, params=params, generator=generator)
        cand = root.embedding.get("cand") if isinstance(root.embedding, dict) else None
        return out, cand


class Version(Protocol):
    """What a version of EfficientZero (v1.py, v2.py) decides: its search, how it acts on the
    result, its policy target and its value targets."""

    value_prefix: bool  # the reward head it uses unless agent.value_prefix says otherwise

    def search(
        self,
        net: MuZeroNet,
        obs: torch.Tensor,
        generator: torch.Generator,
        explore: bool,
        encoded: Encoded | None = None,
    ) -> tuple[SearchOutput, torch.Tensor | None]:
        """Batched search from N observations (or their `encoded` representation): (output,
        root candidates or None)."""
        ...

    def choose(
        self, out: SearchOutput, generator: torch.Generator, updates: int, explore: bool
    ) -> torch.Tensor:
        """The root slot [N] (CPU long) to play."""
        ...

    def policy_target(self, out: SearchOutput) -> np.ndarray:
        """Policy targets float32 [N, slots] from a search."""
        ...

    def td_steps(self, age: np.ndarray) -> np.ndarray:
        """TD horizon int64 [B] of positions whose data is `age` transitions old."""
        ...

    def search_value_mask(self, age: np.ndarray, updates: int) -> np.ndarray:
        """bool [B]: the value target is the reanalysis search's root value."""
        ...
