"""PPO (Schulman et al. 2017): categorical or diagonal-Gaussian policies, GAE, clipped policy and
value losses, observation and return normalisation for continuous control."""

from frugal.agents.ppo.agent import Agent
from frugal.agents.ppo.config import PRESETS, Config, default_preset

__all__ = ["PRESETS", "Agent", "Config", "default_preset"]
