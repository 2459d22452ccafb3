"""DreamerV3 (Hafner et al. 2023): `config` holds the settings, sizes and presets, `agent` the
agent, `losses` the world-model and actor-critic losses, `video` the open-loop video panels;
the networks are in `frugal.nets.dreamer`."""

from frugal.agents.dreamer.agent import Agent
from frugal.agents.dreamer.config import PRESETS, SIZES, Config, default_preset

__all__ = ["PRESETS", "SIZES", "Agent", "Config", "default_preset"]
