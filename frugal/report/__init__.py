"""Comparing runs: learning curves, score tables and human-normalised Atari scores
(`compare`; how the numbers are made is in `frugal.report.compare`)."""

from frugal.report.compare import CompareResult, GameScore, Group, HnsSummary, SeedScore, compare

__all__ = ["CompareResult", "GameScore", "Group", "HnsSummary", "SeedScore", "compare"]
