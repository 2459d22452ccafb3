"""One self-contained HTML page per evaluated episode: the frames as PNG data URIs, and per step
the action, reward, return and the agent's `view_record()` row, in a page that plays, steps and
draws them with a little inline JavaScript (template.html). Nothing is fetched from a network."""

from __future__ import annotations

import base64
import io
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

PLACEHOLDER = "/*FRUGAL_EPISODE*/null"
SIGNIFICANT = 5  # digits kept of each number shown: enough to read, small to store


def frame_uri(image: np.ndarray) -> str:
    """A uint8 image [H, W, 3] as a PNG data URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(x: Any) -> float | int | None:
    """A JSON number rounded to SIGNIFICANT digits; None for NaN or infinity."""
    if isinstance(x, bool | np.bool_):
        return int(x)
    if isinstance(x, int | np.integer):
        return int(x)
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{SIGNIFICANT}g}")


def to_json(value: Any) -> Any:
    """Numbers and (nested) arrays as JSON lists of rounded numbers."""
    array = np.asarray(value)
    if array.ndim == 0:
        return _number(array.item())
    return [to_json(v) for v in array]


def render_page(episode: dict[str, Any]) -> str:
    """The viewer page with `episode` (title, meta, fps, frames, steps) embedded."""
    template = resources.files("frugal.viewer").joinpath("template.html").read_text("utf-8")
    data = json.dumps(episode, separators=(",", ":"), allow_nan=False)
    return template.replace(PLACEHOLDER, data.replace("</", "<\\/"))


def read_page(path: str | Path) -> dict[str, Any]:
    """The episode embedded in a page that render_page wrote (title, meta, fps, frames, steps)."""
    text = Path(path).read_text("utf-8")
    start = text.index("const EPISODE = ") + len("const EPISODE = ")
    data, _ = json.JSONDecoder().raw_decode(text, start)
    return data


class EpisodePages:
    """Collects env 0's steps and writes a page per finished episode to `directory`, named
    `{prefix}-episode-{k}.html`. `meta`: what the page's header lists (algorithm, env, step)."""

    def __init__(self, directory: Path, prefix: str, meta: dict[str, Any], fps: float):
        self.directory, self.prefix, self.meta, self.fps = Path(directory), prefix, meta, fps
        self.paths: list[Path] = []
        self._frames: list[str] = []
        self._steps: list[dict[str, Any]] = []
        self._return = 0.0

    def step(self, frame: np.ndarray, action: Any, record: dict[str, np.ndarray] | None) -> None:
        """Before the env steps: the frame the agent acted on, its action and what it computed
        for env 0 (its view_record row)."""
        self._frames.append(frame_uri(frame))
        self._steps.append(
            {
                "action": to_json(action),
                "record": {k: to_json(v) for k, v in (record or {}).items()},
            }
        )

    def reward(self, reward: float) -> None:
        """After the env stepped: the reward of the step just recorded."""
        self._return += float(reward)
        self._steps[-1].update(reward=_number(reward), **{"return": _number(self._return)})

    def episode_end(self) -> Path:
        number = len(self.paths) + 1
        path = self.directory / f"{self.prefix}-episode-{number:03d}.html"
        episode = {
            "title": f"{self.meta.get('algo', 'agent')} on {self.meta.get('env', 'env')}, "
            f"episode {number}",
            "meta": {
                **self.meta,
                "episode": number,
                "return": _number(self._return),
                "length": len(self._steps),
            },  # fmt: skip
            "fps": self.fps,
            "frames": self._frames,
            "steps": self._steps,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render_page(episode), encoding="utf-8")
        tmp.replace(path)
        self.paths.append(path)
        self._frames, self._steps, self._return = [], [], 0.0
        return path
