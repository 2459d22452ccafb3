"""Evaluation on separate envs: full games, raw scores, and what a person watches: a video (MP4
or GIF) of the best episode, an HTML page per episode with what the agent computed at each
step (frugal.viewer), or a live window."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from frugal.config import EnvConfig
from frugal.envs import make_env

VIDEO_FPS = 30
VIDEO_FORMATS = ("mp4", "gif")
GIF_FRAME_SKIP = 3  # a GIF keeps every 3rd frame, shown for 100 ms: real time, a third the size


@dataclasses.dataclass
class Recording:
    """What an evaluation records besides its scores, all of env 0 with one env playing the
    episodes in turn. video: the best episode's file, in `video_format` (mp4 | gif); pages:
    an HTML page per episode (frugal.viewer.pages.EpisodePages); window: frames shown live
    (frugal.viewer.window.Window)."""

    video: Path | None = None
    video_format: str = "mp4"
    pages: Any = None
    window: Any = None


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


class _GifWriter:
    """Keeps every GIF_FRAME_SKIP-th frame of an episode (frame 0 first, so ceil(length /
    GIF_FRAME_SKIP) frames), 256-colour quantised, and writes the best episode's as an animated
    GIF. The encoder (Pillow) stores a run of identical frames once, shown for their summed
    time, so the file may hold fewer frames while playing as long."""

    def __init__(self, path: Path):
        self.path = path
        self._frames: list[Any] = []
        self._count = 0
        self.best_return = -np.inf

    def frame(self, image: np.ndarray) -> None:
        from PIL import Image

        if self._count % GIF_FRAME_SKIP == 0:
            self._frames.append(Image.fromarray(np.ascontiguousarray(image)).quantize(256))
        self._count += 1

    def episode_end(self, episode_return: float) -> None:
        frames, self._frames, self._count = self._frames, [], 0
        if not frames or episode_return <= self.best_return:
            return
        self.best_return = episode_return
        tmp = self.path.with_name(self.path.stem + ".recording.gif")
        duration = round(1000 * GIF_FRAME_SKIP / VIDEO_FPS)
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=duration, loop=0)
        os.replace(tmp, self.path)


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
    video: str | Path | Recording | None = None,
) -> dict[str, float]:
    """Play `episodes` full games with the greedy policy and return raw-score statistics.

    Episodes are split evenly over the envs up front (an env stops counting once it has played
    its share), so short episodes are not over-represented. `video`: a path for an MP4 of the
    best episode, or a Recording (video as MP4 or GIF, episode pages, a live window); then a
    single env plays the episodes one after another, with the agent's own panel beside each
    frame where it has one (`agent.video_panels()`, e.g. DreamerV3's open-loop predictions).
    Pages also record each step's `agent.view_record()` row."""
    rec = video if isinstance(video, Recording) else Recording(Path(video) if video else None)
    recording = rec.video is not None or rec.pages is not None or rec.window is not None
    num_envs = 1 if recording else max(1, min(num_envs, episodes))
    env = make_env(
        dataclasses.replace(env_config, num_envs=num_envs, vectorization="sync"),
        num_envs,
        training=False,
        render=recording,
    )
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    rng = np.random.default_rng(seed)
    writer = None
    if rec.video is not None:
        writer = (_GifWriter if rec.video_format == "gif" else _VideoWriter)(Path(rec.video))
    make_panels = getattr(agent, "video_panels", None)
    panels = make_panels() if recording and make_panels else None
    view_record = getattr(agent, "view_record", None)
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
            if recording:
                frame = env.render()[0]
                if panels:
                    frame = beside(frame, panels.panel(obs[0], state, bool(first[0])))
                if writer:
                    writer.frame(frame)
                if rec.pages is not None:
                    record = view_record() if view_record else None
                    row = {k: v[0] for k, v in record.items()} if record else None
                    rec.pages.step(frame, actions[0], row)
                if rec.window is not None:
                    rec.window.frame(frame)
            result = env.step(actions)
            if rec.pages is not None:
                rec.pages.reward(result.reward[0])
            ep_return += result.reward
            ep_length += env.spec.frames_per_step  # lengths in env steps, as training counts
            for i in np.flatnonzero(result.reset):
                if done_count[i] < quota[i]:
                    returns.append(float(ep_return[i]))
                    lengths.append(int(ep_length[i]))
                    done_count[i] += 1
                    if writer:
                        writer.episode_end(float(ep_return[i]))
                    if rec.pages is not None:
                        rec.pages.episode_end()
                ep_return[i] = 0.0
                ep_length[i] = 0
            obs, first = result.obs, result.reset
    finally:
        env.close()
        if rec.window is not None:
            rec.window.close()
    return {
        "eval/return_mean": float(np.mean(returns)),
        "eval/return_std": float(np.std(returns)),
        "eval/return_max": float(np.max(returns)),
        "eval/length_mean": float(np.mean(lengths)),
        "eval/episodes": len(returns),
    }
