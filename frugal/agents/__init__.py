"""Agent registry: algorithm name -> module. Each module defines `Config` (a dataclass),
`PRESETS`, `default_preset(env_id)` and `Agent(config, spec, num_envs, device, seed)`."""

from __future__ import annotations

import importlib
from types import ModuleType

from frugal.errors import unknown

ALGORITHMS: dict[str, str] = {
    "dqn": "frugal.agents.dqn",
    "ppo": "frugal.agents.ppo",
    "dreamerv3": "frugal.agents.dreamer",
    "efficientzero": "frugal.agents.efficientzero",
}


def agent_module(algo: str) -> ModuleType:
    if algo not in ALGORITHMS:
        raise unknown("algorithm", algo, ALGORITHMS)
    return importlib.import_module(ALGORITHMS[algo])
