"""Atari reference data: random and human scores, published Atari 100k results, and the
human-normalised score HNS = (score - random) / (human - random)."""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
HUMAN_RANDOM = "atari_human_random.csv"
PUBLISHED = "atari100k_published.csv"
# CSV column -> how the report names it
PUBLISHED_NAMES = {
    "efficientzero_v1": "EfficientZero V1",
    "efficientzero_v2": "EfficientZero V2",
    "bbf_rr8": "BBF (RR 8)",
    "dreamerv3": "DreamerV3",
}


def game_key(name: str) -> str:
    """The reference tables' key of an Atari game: `atari/MsPacman`, `MsPacman-v5`,
    `ms_pacman` and `MsPacmanNoFrameskip-v4` are all `mspacman`."""
    name = name.rsplit("/", 1)[-1]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"NoFrameskip$|Deterministic$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def is_atari(env_id: str) -> bool:
    return env_id.lower().startswith("atari/")


def _read(name: str) -> dict[str, dict[str, float]]:
    with open(DATA / name, newline="") as f:
        return {
            game_key(row["game"]): {k: float(v) for k, v in row.items() if k != "game"}
            for row in csv.DictReader(f)
        }


@functools.cache
def human_random() -> dict[str, dict[str, float]]:
    """game -> {"random": ..., "human": ...}"""
    return _read(HUMAN_RANDOM)


@functools.cache
def published() -> dict[str, dict[str, float]]:
    """game -> {csv column: published Atari 100k score}"""
    return _read(PUBLISHED)


def hns(game: str, score: float) -> float:
    """Human-normalised score of a raw score on `game` (a key from `game_key`)."""
    ref = human_random()[game]
    return (score - ref["random"]) / (ref["human"] - ref["random"])


def published_hns(column: str) -> dict[str, float]:
    """game -> HNS of a published method (a column of atari100k_published.csv)."""
    return {g: hns(g, row[column]) for g, row in published().items() if g in human_random()}
