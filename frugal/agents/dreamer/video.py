"""Open-loop world-model predictions for DreamerV3's evaluation videos.

At each game start and every `horizon` steps the prediction re-syncs to the agent's posterior
state, which has seen every frame so far. In between, the RSSM runs on its prior alone, fed the
actions that were really taken, and the decoder draws what the model expects to see. Each video
frame gets a panel of three images, as in DreamerV3's own reports: the real observation, the
model's, and their difference.
"""

from __future__ import annotations

import numpy as np
import torch

from frugal.envs.base import EnvSpec
from frugal.nets.dreamer import WorldModel


def observation_image(x: np.ndarray, spec: EnvSpec) -> np.ndarray:
    """An observation scaled to [0, 1], [C, H, W] -> uint8 [H, W, 3] of its newest frame:
    one colour per channel for binary grids (the env's `spec.palette`, MinAtar), else RGB or
    grey."""
    frame = np.clip(x[-spec.frame_shape[0] :], 0.0, 1.0)
    if spec.palette is not None:
        image = np.einsum("chw,cd->hwd", frame, spec.palette / 255.0)
    elif frame.shape[0] == 3:
        image = frame.transpose(1, 2, 0)
    else:
        image = np.repeat(frame[0][..., None], 3, axis=-1)
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


class OpenLoopVideo:
    """Panels [H, 3W, 3] of truth | open-loop model | |error| for env 0 of an evaluation.

    wm: the agent's world model; stoch: its number of categorical latents; the prior's samples
    come from a generator of their own (`seed`), so a video never shifts the agent's streams."""

    def __init__(
        self,
        wm: WorldModel,
        spec: EnvSpec,
        stoch: int,
        device: torch.device,
        horizon: int,
        seed: int = 0,
    ):
        self.wm, self.spec, self.horizon = wm, spec, horizon
        self.stoch_size = stoch
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.stoch = self.deter = self.action = None
        self.since_sync = 0

    @torch.no_grad()
    def panel(self, obs: np.ndarray, state: dict[str, torch.Tensor], first: bool) -> np.ndarray:
        """obs: env 0's observation [*obs_shape]; state: the agent's act state after acting on
        it (posterior and the action just taken); first: a game starts at obs."""
        if first or self.stoch is None or self.since_sync >= self.horizon:
            self.stoch, self.deter = state["stoch"][:1], state["deter"][:1]
            self.since_sync = 0
        else:
            u = torch.rand((1, self.stoch_size), generator=self.gen, device=self.deter.device)
            self.stoch, self.deter = self.wm.rssm.img_step(self.stoch, self.deter, self.action, u)
        self.since_sync += 1
        self.action = state["action"][:1]
        predicted = self.wm.decoder(torch.cat([self.deter, self.stoch], -1))[0].float()
        truth = obs.astype(np.float32) / self.spec.obs_high
        model = predicted.cpu().numpy()
        images = [truth, model, np.abs(truth - model)]
        return np.concatenate([observation_image(x, self.spec) for x in images], axis=1)
