"""The one error type users see: a single line saying what is wrong and what would be right."""

from __future__ import annotations

import difflib
import signal
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


class Interrupted(Exception):
    """A run stopped by SIGINT/SIGTERM, raised once its checkpoint is safely written."""

    def __init__(self, signum: int, env_step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at env step {env_step}")
        self.signum = signum


class Diverged(Exception):
    """A loss, gradient norm or weight became non-finite: the run stops without checkpointing, so
    the last checkpoint (written before it) stays the one pointed to. The CLI exits with 3."""

    def __init__(self, what: str, update: int, env_step: int, last: str):
        super().__init__(
            f"{what} is not finite at update {update:,} (env step {env_step:,}); training "
            f"stopped, the last finite checkpoint is {last} (lower agent.lr, or clip gradients, "
            "and resume)"
        )
