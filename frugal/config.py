"""Typed configs: defaults, presets, `key=value` overrides and validation.

A run's config has four parts: `algo` and `preset` (names), `env` (EnvConfig), `run` (RunConfig:
the runner's clock) and `agent` (the algorithm's own dataclass). Resolution order is
dataclass defaults -> preset -> env protocol -> user overrides; the resolved config is written to
the run directory, so every score carries its protocol.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from frugal.errors import FrugalError, closest

# --------------------------------------------------------------------------------------- sections


@dataclass
class EnvConfig:
    """Which environment, and how it is played. Atari fields left at None are filled from the
    protocol (see `frugal.envs.protocols`); setting one explicitly overrides the protocol."""

    id: str = "gym/CartPole-v1"
    num_envs: int = 1  # vectorised training envs
    vectorization: str = "sync"  # gym suite: sync | async (one process per env)
    protocol: str = "auto"  # atari: atari100k | machado; minatar: minatar; gym: gym; dmc: dmc
    # Atari (ale-py AtariVectorEnv), MinAtar and DeepMind Control settings; None = the
    # protocol's value
    sticky_actions: float | None = None  # repeat_action_probability
    frame_skip: int | None = None  # action repeat (dmc: physics control steps per action)
    noop_max: int | None = None
    episodic_life: bool | None = None  # life loss ends the learner's episode (training only)
    fire_reset: bool | None = None
    max_episode_frames: int | None = None  # emulator frames; 108k = 30 minutes of play
    # dmc: proprio (the task's observation dict flattened) | pixels (rendered RGB frames)
    obs: str = "proprio"
    camera: int | None = None  # dmc pixels and videos; None = the task's (0; quadruped 2)
    # observation shape for pixel envs (set by the agent's preset)
    obs_size: int = 84
    grayscale: bool = True
    frame_stack: int = 4


@dataclass
class RunConfig:
    """The runner's clock: all counts are environment steps summed over the vectorised envs,
    counted as the suite's papers count them (frames, i.e. agent steps x action repeat, for
    DeepMind Control; agent steps elsewhere)."""

    steps: int = 50_000
    seed: int = 0
    eval_every: int = 5_000  # 0 = only at the end
    eval_episodes: int = 10
    eval_envs: int = 5
    log_every: int = 1_000
    checkpoint_every: int = 10_000  # 0 = only at the end and on SIGINT/SIGTERM
    keep_checkpoints: bool = False  # also keep step-numbered copies besides `latest`
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True  # console progress display
    # a non-finite loss or gradient norm: stop (exit 3, the last finite checkpoint kept) or
    # skip_update (that update's step is not applied; counted as train/skipped_updates)
    on_nonfinite: str = "stop"
    # Where acting runs. Acting proceeds in chunks of `act_chunk` vectorised env steps; the
    # weights that act on chunk k are those after the updates owed at the end of chunk
    # k - 1 - act_lag, so the schedule, never the speed, decides which weights act where.
    # act_chunk=0 acts every step with the newest weights in the learner's process (chunks of
    # one step, lag 0). The envs are acted on in `act_slices` fixed slices, each with its own
    # random stream; `actors` workers share the slices out. act_chunk, act_lag and act_slices
    # change results; backend, actors, reanalysers, ray_address and worker_timeout change only
    # speed. `reanalysers` Ray workers compute EfficientZero's targets of the batches it draws
    # ahead (agent.prefetch); agents without reanalysis have none (0).
    backend: str = "local"  # local | ray
    actors: int = 1  # acting workers (at most act_slices)
    reanalysers: int = 0  # reanalysis workers (run.backend=ray; EfficientZero with prefetch)
    act_slices: int = 1  # fixed slices of the vectorised envs (at most env.num_envs)
    act_chunk: int = 0  # vectorised env steps per acting chunk; 0 = unchunked, in-process
    act_lag: int = 1  # chunks of staleness of the acting weights (with act_chunk >= 1)
    ray_address: str = "local"  # local (start Ray here) | auto | HOST:PORT of a running head
    worker_timeout: float = 600.0  # seconds a worker may take for one chunk before it is lost


BACKENDS = ("local", "ray")


def schedule_of(run: RunConfig) -> tuple[int, int]:
    """(chunk, lag) in effect: act_chunk=0 is chunks of one step with lag 0."""
    return (1, 0) if run.act_chunk == 0 else (run.act_chunk, run.act_lag)


def check_run(run: RunConfig, num_envs: int) -> None:
    """The acting settings fit together and fit the envs; one line naming the fix if not."""
    address = run.ray_address
    host, _, port = address.rpartition(":")
    checks = [
        (run.backend in BACKENDS, f"run.backend must be one of {', '.join(BACKENDS)}, "
         f"got '{run.backend}'"),
        (run.actors >= 1, f"run.actors must be at least 1, got {run.actors}"),
        (run.reanalysers >= 0, f"run.reanalysers must be 0 or more, got {run.reanalysers}"),
        (1 <= run.act_slices <= num_envs, f"run.act_slices must be in [1, env.num_envs="
         f"{num_envs}], got {run.act_slices}"),
        (run.actors <= run.act_slices, f"run.actors={run.actors} needs as many env slices; "
         f"set run.act_slices={run.actors} (at most env.num_envs={num_envs})"),
        (run.act_chunk >= 0, f"run.act_chunk must be 0 or more, got {run.act_chunk}"),
        (run.act_lag >= 0, f"run.act_lag must be 0 or more, got {run.act_lag}"),
        (run.act_chunk >= 1 or run.act_slices == 1, "run.act_slices > 1 acts in chunks; set "
         "run.act_chunk to 1 or more (vectorised env steps per chunk)"),
        (address in ("local", "auto") or (bool(host) and port.isdigit()), "run.ray_address "
         f"must be local, auto or HOST:PORT, got '{address}'"),
        (run.worker_timeout > 0, f"run.worker_timeout must be positive, got {run.worker_timeout}"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise FrugalError(message)


# settings that change which weights act on which env step: fixed for the life of a run
SCHEDULE_KEYS = ("act_chunk", "act_lag", "act_slices")


def run_value(name: str, value: Any) -> Any:
    """A run setting as its type, from a command-line string."""
    probe = RunConfig()
    set_value(probe, "run", name, value)
    return getattr(probe, name)


def mutable(default: Any) -> Any:
    """A config field that may change when a run is resumed: it changes neither the networks,
    nor the replay, nor the env (learning rates, exploration, loss coefficients)."""
    return field(default=default, metadata={"mutable": True})


def mutable_keys(section: type) -> frozenset[str]:
    """The fields of a config dataclass declared with `mutable`."""
    return frozenset(f.name for f in dataclasses.fields(section) if f.metadata.get("mutable"))


@dataclass(frozen=True)
class Preset:
    """Named settings for one algorithm. `doc` says what it is for and how it deviates from the
    paper; the dicts override defaults of the env, run and agent sections."""

    doc: str
    env: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    algo: str
    preset: str
    env: EnvConfig
    run: RunConfig
    agent: Any  # the algorithm's config dataclass
    history: list[dict[str, Any]] = field(default_factory=list)  # changes made on resume
    # what `auto` settings resolved to on the machine that last ran the run, and why
    detected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "preset": self.preset,
            "env": dataclasses.asdict(self.env),
            "run": dataclasses.asdict(self.run),
            "agent": dataclasses.asdict(self.agent),
            "history": self.history,
            "detected": self.detected,
        }


SECTIONS = ("env", "run", "agent")

# ------------------------------------------------------------------------------ value conversion

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def convert(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (a string from the command line, or a YAML/JSON value) to type `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return convert(value, inner[0], key)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i for i in items if not (isinstance(i, str) and not i.strip())]
        elem = args[0] if args else str
        return tuple(convert(i.strip() if isinstance(i, str) else i, elem, key) for i in items)
    if origin is list or origin is dict:
        if isinstance(value, origin):
            return value
        raise FrugalError(f"config key '{key}' takes a {_type_name(origin)}, got {value!r}")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            text = str(value).strip().replace("_", "")
            number = float(text)  # accepts 1e5
            if not number.is_integer():
                raise ValueError
            return int(number)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(str(value).strip().replace("_", ""))
            if not math.isfinite(number):  # no setting means NaN or infinity
                raise FrugalError(f"config key '{key}' takes a finite float, got {value!r}")
            return number
        if tp is str:
            if not isinstance(value, str | int | float):
                raise ValueError
            return str(value)
    except ValueError:
        raise FrugalError(
            f"config key '{key}' takes {_type_name(tp)}, got {value!r}"
            + (" (true or false)" if tp is bool else "")
        ) from None
    return value


def _fields(section: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(section))
    return {f.name: hints[f.name] for f in dataclasses.fields(section)}


def set_value(section: Any, section_name: str, name: str, value: Any) -> None:
    fields = _fields(section)
    key = f"{section_name}.{name}"
    if name not in fields:
        valid = [f"{section_name}.{f}" for f in fields]
        raise FrugalError(f"unknown config key '{key}'{_renamed(name) or closest(key, valid)}")
    setattr(section, name, convert(value, fields[name], key))


def apply(section: Any, section_name: str, values: dict[str, Any]) -> None:
    for name, value in values.items():
        set_value(section, section_name, name, value)


# Keys renamed since earlier versions -> (new key, value conversion): a config.yaml written by an
# earlier version still loads, and a command line using an old key is told the new one.
RENAMED: dict[str, tuple[str, Any]] = {
    "gamma": ("discount", float),
    "horizon": ("discount", lambda h: 1.0 - 1.0 / float(h)),  # DreamerV3's 1 - 1/horizon
    "max_grad_norm": ("grad_clip", float),
    "amp": ("precision", lambda amp: "bf16" if amp else "fp32"),  # EfficientZero's bool
}


def _renamed(name: str) -> str:
    return f" (renamed to '{RENAMED[name][0]}')" if name in RENAMED else ""


def from_dict(cls: type, section_name: str, values: dict[str, Any]) -> Any:
    """Build a dataclass from plain values (a saved config), converting and checking every key;
    keys that were renamed since are read under their new names."""
    section = cls()
    names = {f.name for f in dataclasses.fields(cls)}
    current = {}
    for key, value in values.items():
        if key not in names and key in RENAMED and RENAMED[key][0] in names:
            key, value = RENAMED[key][0], RENAMED[key][1](value)
        current[key] = value
    apply(section, section_name, current)
    return section


# ---------------------------------------------------------------------------------- overrides


def parse_overrides(pairs: list[str], config: Config) -> dict[str, dict[str, Any]]:
    """['agent.lr=1e-4', 'discount=0.98'] -> {'agent': {'lr': '1e-4', 'discount': '0.98'}}.

    A key without a section is looked up in agent, then run, then env; it must name exactly one.
    """
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for pair in pairs:
        if "=" not in pair:
            raise FrugalError(f"expected key=value, got '{pair}' (for example agent.lr=1e-4)")
        key, value = pair.split("=", 1)
        key = key.strip()
        if "." in key:
            section_name, name = key.split(".", 1)
            if section_name not in SECTIONS:
                raise FrugalError(
                    f"unknown config section '{section_name}' in '{key}'; "
                    f"use one of {', '.join(SECTIONS)}"
                )
        else:
            owners = [s for s in SECTIONS if key in _fields(getattr(config, s))]
            if not owners:
                valid = [f"{s}.{f}" for s in SECTIONS for f in _fields(getattr(config, s))]
                valid += [f for s in SECTIONS for f in _fields(getattr(config, s))]
                hint = _renamed(key) or closest(key, valid)
                raise FrugalError(f"unknown config key '{key}'{hint}")
            if len(owners) > 1:
                raise FrugalError(
                    f"config key '{key}' is ambiguous; write "
                    + " or ".join(f"{s}.{key}" for s in owners)
                )
            section_name, name = owners[0], key
        # validate now so errors name the key before anything runs
        probe = dataclasses.replace(getattr(config, section_name))
        set_value(probe, section_name, name, value)
        out[section_name][name] = value
    return out
