"""Evaluation on separate envs: full games, raw scores, optional video of the best episode."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from frugal.config import EnvConfig
from frugal.envs import make_env

VIDEO_FPS = 30


class _VideoWriter:
    """Streams one episode to a temporary MP4 (constant memory) and keeps the best one."""

    def __init__(self, path: Path):
        self.path = path
        self._tmp = path.with_name(path.stem + ".recording.mp4")
        self._writer = None
        self.best_return = -np.inf

    def frame(self, image: np.ndarray) -> None:
        import imageio.v2 as imageio

        if self._writer is None:
            self._writer = imageio.get_writer(
                self._tmp, fps=VIDEO_FPS, codec="libx264", quality=7, macro_block_size=1
            )
        h, w = image.shape[:2]  # H.264 with yuv420p needs even sizes
        self._writer.append_data(np.pad(image, ((0, h % 2), (0, w % 2), (0, 0))))

    def episode_end(self, episode_return: float) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        if episode_return > self.best_return:
            self.best_return = episode_return
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def beside(frame: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """The rendered frame [H, W, 3] with `panel` [h, w, 3] to its right, the panel scaled up by
    a whole factor to about the frame's height; the shorter of the two is padded below."""
    k = max(1, frame.shape[0] // panel.shape[0])
    panel = panel.repeat(k, 0).repeat(k, 1)
    height = max(frame.shape[0], panel.shape[0])
    pad = [np.pad(x, ((0, height - x.shape[0]), (0, 0), (0, 0))) for x in (frame, panel)]
    return np.concatenate(pad, axis=1)


def evaluate(
    agent: Any,
    env_config: EnvConfig,
    episodes: int,
    num_envs: int,
    seed: int,
    video: str | Path | None = None,
) -> dict[str, float]:
    """Play `episodes` full games with the greedy policy and return raw-score statistics.

    Episodes are split evenly over the envs up front (an env stops counting once it has played
    its share), so short episodes are not over-represented. With `video`, a single env plays the
    episodes one after another and the best one is written there as MP4, with the agent's own
    panel beside each frame where it has one (`agent.video_panels()`, e.g. DreamerV3's open-loop
    predictions)."""
    num_envs = 1 if video else max(1, min(num_envs, episodes))
    env = make_env(
        dataclasses.replace(env_config, num_envs=num_envs, vectorization="sync"),
        num_envs,
        training=False,
        render=video is not None,
    )
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    rng = np.random.default_rng(seed)
    writer = _VideoWriter(Path(video)) if video else None
    make_panels = getattr(agent, "video_panels", None)
    panels = make_panels() if writer and make_panels else None
    returns: list[float] = []
    lengths: list[int] = []
    try:
        obs = env.reset(seed)
        state = agent.initial_act_state(num_envs)
        first = np.ones(num_envs, dtype=bool)
        ep_return = np.zeros(num_envs)
        ep_length = np.zeros(num_envs, dtype=np.int64)
        done_count = np.zeros(num_envs, dtype=np.int64)
        while (done_count < quota).any():
            actions, state = agent.act(obs, state, first, explore=False, rng=rng)
            if writer:
                frame = env.render()[0]
                if panels:
                    frame = beside(frame, panels.panel(obs[0], state, bool(first[0])))
                writer.frame(frame)
            result = env.step(actions)
            ep_return += result.reward
            ep_length += env.spec.frames_per_step  # lengths in env steps, as training counts
            for i in np.flatnonzero(result.reset):
                if done_count[i] < quota[i]:
                    returns.append(float(ep_return[i]))
                    lengths.append(int(ep_length[i]))
                    done_count[i] += 1
                    if writer:
                        writer.episode_end(float(ep_return[i]))
                ep_return[i] = 0.0
                ep_length[i] = 0
            obs, first = result.obs, result.reset
    finally:
        env.close()
    return {
        "eval/return_mean": float(np.mean(returns)),
        "eval/return_std": float(np.std(returns)),
        "eval/return_max": float(np.max(returns)),
        "eval/length_mean": float(np.mean(lengths)),
        "eval/episodes": len(returns),
    }
