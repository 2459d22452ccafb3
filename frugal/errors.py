"""The one error type users see: a single line saying what is wrong and what would be right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FrugalError(Exception):
    """Bad input at the boundary (config, env id, run dir, checkpoint). The CLI prints it as one
    line and exits with status 2; nothing of a run is lost."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean a, b?)' or '' — the suffix for an unknown-name message."""
    choices = list(choices)
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not near:
        lowered = {c.lower(): c for c in choices}
        near = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=n)]
    return f" (did you mean {', '.join(near)}?)" if near else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> FrugalError:
    choices = sorted(choices)
    return FrugalError(
        f"unknown {kind} '{name}'{closest(name, choices)}; valid: {', '.join(choices)}"
    )
