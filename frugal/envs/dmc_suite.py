"""DeepMind Control Suite tasks (`dmc/cartpole-swingup`, `dmc/ball_in_cup-catch`) through
dm-control, stepped in a Python loop.

The protocol (frugal.envs.protocols, "dmc") is the one DreamerV3 and TD-MPC2 report: each action
is repeated `env.frame_skip` (2) physics control steps and the rewards of those frames summed;
episodes last `env.max_episode_frames` (1000) frames and end by time limit only, so they are
truncated (the learner bootstraps), never terminated. The runner counts env steps in frames
(`EnvSpec.frames_per_step` = the action repeat), as the papers count them. Actions are in
[-1, 1] and rescaled to the task's own bounds where those differ.

Observations: `env.obs=proprio` (default) is the task's observation dict flattened in the order
the task returns its keys (an OrderedDict; a plain dict would be taken in sorted key order, as
dm-control's own flattening does), each array row-major, as float32. `env.obs=pixels` renders
`env.obs_size` square RGB frames from `env.camera` (`frame_stack` of them, zeros before the first
frame of an episode), uint8 [stack*3, H, W].

Rendering needs an OpenGL backend: MuJoCo's `MUJOCO_GL` if set, else EGL or OSMesa where their
libraries are found on a machine without a display. Where none can start, pixels and videos end
with one line saying what to install; proprioceptive runs do not need one.

The state (`get_state`) is exact: MuJoCo's full integration state (time, positions, velocities,
actuator activations, controls, solver warm start), the model fields tasks change per episode
(target positions, sizes, colours, terrain), the task's own counters and random state, and
the episode's frame count and frame stack, all as JSON values.
"""

from __future__ import annotations

import ctypes.util
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from frugal.config import EnvConfig
from frugal.envs.base import EnvSpec, StepResult, VecEnv
from frugal.envs.state import capture_object, decode, encode, restore_object
from frugal.errors import FrugalError, unknown

OBS_KINDS = ("proprio", "pixels")
VIDEO_SIZE = 256  # rendered frames of evaluation videos
# model fields that tasks set in initialize_episode (targets, terrain, colours): captured so a
# restored env is the episode it was, not the freshly loaded model
EPISODE_MODEL_FIELDS = (
    "body_pos", "dof_damping", "geom_pos", "geom_rgba", "geom_size", "light_pos", "mat_rgba",
    "site_pos", "site_rgba", "site_size", "wrap_prm",
)  # fmt: skip
NO_RENDERER = (
    "rendering DeepMind Control needs an OpenGL backend that starts headless: a GPU driver with "
    "EGL (MUJOCO_GL=egl), or OSMesa (apt-get install libosmesa6, then MUJOCO_GL=osmesa)"
)


def default_camera(domain: str) -> int:
    """Camera 0 of the task, except quadruped's camera 2 (the tracking view that DreamerV3 and
    DrQ use; camera 0 watches a fixed spot the quadruped walks out of)."""
    return 2 if domain == "quadruped" else 0


def flatten_observation(observation: Mapping[str, Any]) -> np.ndarray:
    """One float32 vector: the arrays of an OrderedDict in its order (a plain mapping in sorted
    key order), each flattened row-major, scalars as one element."""
    keys = observation.keys() if isinstance(observation, OrderedDict) else sorted(observation)
    return np.concatenate([np.asarray(observation[k], np.float32).ravel() for k in keys])


def _choose_backend() -> None:
    """Before dm-control is imported: on a machine without a display and with no MUJOCO_GL set,
    pick EGL or OSMesa where its library exists, else no renderer (dm-control would otherwise try
    GLFW, which needs a display)."""
    if "MUJOCO_GL" in os.environ or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return
    os.environ["MUJOCO_GL"] = "disable"


def load_suite() -> Any:
    """dm_control.suite, or one line naming what to install or to change."""
    _choose_backend()
    try:
        from dm_control import suite
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("dm_control", "mujoco"):
            raise FrugalError(
                "dmc envs need dm-control and MuJoCo: pip install 'frugal[dmc]'"
            ) from None
        raise
    except (ImportError, AttributeError, RuntimeError) as e:  # the named GL backend failed
        raise FrugalError(
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL')} cannot start here ({type(e).__name__}); "
            f"unset it for proprioceptive envs; {NO_RENDERER}"
        ) from None
    return suite


def parse_task(env_id: str, suite: Any) -> tuple[str, str]:
    """'dmc/ball_in_cup-catch' -> ('ball_in_cup', 'catch')."""
    name = env_id.split("/", 1)[1]
    domain, _, task = name.partition("-")
    if (domain, task) not in suite.ALL_TASKS:
        raise unknown("DeepMind Control task", name, [f"{d}-{t}" for d, t in suite.ALL_TASKS])
    return domain, task


class DMCVecEnv(VecEnv):
    capturable = True

    def __init__(self, config: EnvConfig, num_envs: int, render: bool = False):
        if config.obs not in OBS_KINDS:
            raise unknown("env.obs", config.obs, OBS_KINDS)
        for key in ("frame_skip", "max_episode_frames"):
            if getattr(config, key) < 1:
                raise FrugalError(f"env.{key} must be at least 1, got {getattr(config, key)}")
        suite = load_suite()
        self._domain, task = parse_task(config.id, suite)
        # the episode's time limit is kept here, in frames; dm-control's own is switched off
        self._envs = [
            suite.load(self._domain, task, task_kwargs={"time_limit": float("inf"), "random": i})
            for i in range(num_envs)
        ]
        self.num_envs = num_envs
        self._repeat = config.frame_skip
        self._max_frames = config.max_episode_frames
        self._frames = np.zeros(num_envs, dtype=np.int64)
        self._pixels = config.obs == "pixels"
        self._size = config.obs_size
        self._camera = default_camera(self._domain) if config.camera is None else config.camera
        self._stack = config.frame_stack if self._pixels else 1
        spec = self._envs[0].action_spec()
        self._low = np.asarray(spec.minimum, np.float64)
        self._high = np.asarray(spec.maximum, np.float64)
        if self._pixels:
            frame = (3, self._size, self._size)
            shape: tuple[int, ...] = (self._stack * 3, self._size, self._size)
        else:
            frame = shape = flatten_observation(self._envs[0].reset().observation).shape
        self._frames_held = np.zeros((num_envs, *shape), np.uint8) if self._pixels else None
        self.spec = EnvSpec(
            obs_shape=shape,
            obs_dtype=np.dtype(np.uint8 if self._pixels else np.float32),
            pixels=self._pixels,
            frame_stack=self._stack,
            frame_shape=frame,
            discrete=False,
            num_actions=int(spec.shape[0]),
            action_low=-np.ones(spec.shape, np.float32),
            action_high=np.ones(spec.shape, np.float32),
            obs_high=255.0 if self._pixels else 1.0,
            suite="dmc",
            frames_per_step=self._repeat,
        )
        if self._pixels or render:
            self._render(0, 8, self._camera)  # fail now, in one line, where nothing renders

    # ------------------------------------------------------------------------- observations

    def _render(self, i: int, size: int, camera: int) -> np.ndarray:
        try:
            return self._envs[i].physics.render(size, size, camera_id=camera)
        except Exception as e:  # dm-control raises RuntimeError, MuJoCo FatalError, GL errors
            backend = os.environ.get("MUJOCO_GL", "unset")
            raise FrugalError(f"{NO_RENDERER} (MUJOCO_GL={backend}: {type(e).__name__})") from None

    def _observe(self, i: int, observation: Mapping[str, Any], first: bool) -> np.ndarray:
        if not self._pixels:
            return flatten_observation(observation)
        held = self._frames_held[i]
        frame = self._render(i, self._size, self._camera).transpose(2, 0, 1)
        if first:
            held[:] = 0
        held[:-3] = held[3:]
        held[-3:] = frame
        return held.copy()

    # ---------------------------------------------------------------------------- stepping

    def reset(self, seed: int) -> np.ndarray:
        obs = []
        for i, env in enumerate(self._envs):
            env.task.random.seed((seed + i) % 2**32)
            obs.append(self._observe(i, env.reset().observation, first=True))
        self._frames[:] = 0
        return np.stack(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        unit = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
        scaled = self._low + (unit + 1.0) * 0.5 * (self._high - self._low)
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final, obs = [], []
        for i, env in enumerate(self._envs):
            total = 0.0
            for _ in range(self._repeat):
                step = env.step(scaled[i])
                total += step.reward or 0.0
                self._frames[i] += 1
                # a task's own end (a physics failure) has discount 0: terminal
                terminated[i] = step.last() and step.discount == 0.0
                if terminated[i] or self._frames[i] >= self._max_frames:
                    break
            truncated[i] = not terminated[i] and self._frames[i] >= self._max_frames
            reward[i] = total
            final.append(self._observe(i, step.observation, first=False))
            if terminated[i] or truncated[i]:
                self._frames[i] = 0
                obs.append(self._observe(i, env.reset().observation, first=True))
            else:
                obs.append(final[-1])
        done = terminated | truncated
        return StepResult(np.stack(obs), reward, terminated, truncated, done, np.stack(final))

    # ------------------------------------------------------------------------------ state

    def get_state(self) -> Any:
        import mujoco

        full = mujoco.mjtState.mjSTATE_INTEGRATION
        envs = []
        for i, env in enumerate(self._envs):
            model = env.physics.model
            envs.append(
                {
                    "physics": encode(env.physics.get_state(full)),
                    "model": {k: encode(getattr(model, k)) for k in EPISODE_MODEL_FIELDS},
                    "hfield": encode(model.hfield_data) if model.nhfield else None,
                    "task": capture_object(env.task),
                    "control": {"step_count": int(env._step_count)},
                    "frames": encode(self._frames_held[i]) if self._pixels else None,
                }
            )
        return {"frames_in_episode": self._frames.tolist(), "envs": envs}

    def set_state(self, state: Any) -> None:
        import mujoco

        self._frames[:] = state["frames_in_episode"]
        for i, (env, saved) in enumerate(zip(self._envs, state["envs"], strict=True)):
            model = env.physics.model
            for key, value in saved["model"].items():
                getattr(model, key)[...] = decode(value)
            if saved["hfield"] is not None:
                model.hfield_data[...] = decode(saved["hfield"])
                self._upload_terrain(env.physics)
            restore_object(env.task, saved["task"])
            full = mujoco.mjtState.mjSTATE_INTEGRATION
            env.physics.set_state(decode(saved["physics"]), full)
            env.physics.forward()  # positions, velocities and contacts derived from the state
            env._step_count = saved["control"]["step_count"]
            env._reset_next_step = False
            if self._pixels:
                self._frames_held[i] = decode(saved["frames"])

    @staticmethod
    def _upload_terrain(physics: Any) -> None:
        """A renderer already made holds the old height fields (quadruped-escape's terrain)."""
        import mujoco

        if not physics.contexts:
            return
        with physics.contexts.gl.make_current() as ctx:
            for h in range(physics.model.nhfield):
                ctx.call(mujoco.mjr_uploadHField, physics.model.ptr, physics.contexts.mujoco.ptr, h)

    def render(self) -> np.ndarray:
        return np.stack([self._render(i, VIDEO_SIZE, self._camera) for i in range(self.num_envs)])

    def close(self) -> None:
        for env in self._envs:
            env.physics.free()  # GL contexts freed now, not by an atexit hook after shutdown
            env.close()
