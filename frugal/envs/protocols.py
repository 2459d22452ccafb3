"""Named evaluation protocols: every env setting that changes a score, set explicitly.

Libraries' defaults are never relied on (ale-py's AtariVectorEnv clips rewards and uses no
sticky actions unless told; Gymnasium's ALE v5 ids use sticky actions 0.25). Life loss as
episode end is a training-only device: evaluation always plays full games.
"""

from __future__ import annotations

import dataclasses

from frugal.config import EnvConfig
from frugal.errors import unknown

# settings a protocol fixes; None in EnvConfig means "take the protocol's value"
PROTOCOL_FIELDS = (
    "sticky_actions",
    "frame_skip",
    "noop_max",
    "episodic_life",
    "fire_reset",
    "max_episode_frames",
)

PROTOCOLS: dict[str, dict[str, dict]] = {
    "atari": {
        # Atari 100k as in EfficientZero and DreamerV3: no sticky actions, frame skip 4 with
        # max-pooling, up to 30 no-op starts, life loss ends training episodes, 108k-frame cap.
        "atari100k": dict(
            sticky_actions=0.0,
            frame_skip=4,
            noop_max=30,
            episodic_life=True,
            fire_reset=False,
            max_episode_frames=108_000,
        ),
        # Machado et al. 2018: sticky actions 0.25, full games for training too, no no-ops.
        "machado": dict(
            sticky_actions=0.25,
            frame_skip=4,
            noop_max=0,
            episodic_life=False,
            fire_reset=False,
            max_episode_frames=108_000,
        ),
    },
    # MinAtar's own defaults (Young & Tian 2019): sticky actions 0.1, difficulty ramping on.
    # Episodes are capped at 100k steps, a cap only a near-perfect agent meets.
    "minatar": {
        "minatar": dict(
            sticky_actions=0.1,
            frame_skip=1,
            noop_max=0,
            episodic_life=False,
            fire_reset=False,
            max_episode_frames=100_000,
        ),
    },
    # Gymnasium ids keep their registered time limits and dynamics.
    "gym": {"gym": {}},
    # DeepMind Control as DreamerV3 and TD-MPC2 report it: action repeat 2 (rewards of the two
    # frames summed), 1,000-frame episodes ended by time limit only (truncated, bootstrapped),
    # env steps counted in frames. Sticky actions, no-ops, lives and FIRE do not apply.
    "dmc": {
        "dmc": dict(frame_skip=2, max_episode_frames=1_000),
    },
}

DEFAULT_PROTOCOL = {"atari": "atari100k", "minatar": "minatar", "gym": "gym", "dmc": "dmc"}


def suite_of(env_id: str) -> str:
    suite = env_id.split("/", 1)[0] if "/" in env_id else ""
    if suite not in PROTOCOLS:
        raise unknown("env suite", suite or env_id, [f"{s}/..." for s in PROTOCOLS])
    return suite


def resolve(env: EnvConfig) -> EnvConfig:
    """A copy with the protocol named and each of its settings filled in where left at None."""
    suite = suite_of(env.id)
    name = DEFAULT_PROTOCOL[suite] if env.protocol == "auto" else env.protocol
    if name not in PROTOCOLS[suite]:
        raise unknown(f"protocol for {suite} envs", name, PROTOCOLS[suite])
    resolved = dataclasses.replace(env, protocol=name)
    for key, value in PROTOCOLS[suite][name].items():
        if getattr(resolved, key) is None:
            setattr(resolved, key, value)
    if suite == "dmc" and resolved.camera is None:
        from frugal.envs.dmc_suite import default_camera

        resolved.camera = default_camera(env.id.split("/", 1)[1].partition("-")[0])
    return resolved
