"""Agent registry: algorithm name -> package. Each package `frugal.agents.<algo>` exports what
`frugal.agents.base.AgentPackage` names: `Config` (a dataclass; fields declared with
`frugal.config.mutable` may change on resume), `PRESETS`, `default_preset(spec)` and
`Agent(config, spec, num_envs, device, seed)`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

from frugal.errors import unknown

if TYPE_CHECKING:
    from frugal.agents.base import AgentPackage

ALGORITHMS: dict[str, str] = {
    "dqn": "frugal.agents.dqn",
    "ppo": "frugal.agents.ppo",
    "dreamerv3": "frugal.agents.dreamer",
    "efficientzero": "frugal.agents.efficientzero",
}


def agent_module(algo: str) -> AgentPackage:
    if algo not in ALGORITHMS:
        raise unknown("algorithm", algo, ALGORITHMS)
    return cast("AgentPackage", importlib.import_module(ALGORITHMS[algo]))
