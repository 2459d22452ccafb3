"""DQN (Mnih et al. 2015) with the Rainbow-era upgrades that pay on their own: double Q-learning
(van Hasselt et al. 2016), a dueling head (Wang et al. 2016), n-step returns and optional
prioritised replay (Schaul et al. 2016)."""

from frugal.agents.dqn.agent import Agent
from frugal.agents.dqn.config import PRESETS, Config, default_preset

__all__ = ["PRESETS", "Agent", "Config", "default_preset"]
