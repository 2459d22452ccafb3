"""The Python API behind the CLI: train, resume, evaluate, load_run."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Any

from frugal import checkpoint
from frugal.agents import agent_module
from frugal.agents.base import AgentPackage
from frugal.config import (
    SCHEDULE_KEYS,
    Config,
    EnvConfig,
    RunConfig,
    apply,
    mutable_keys,
    parse_overrides,
    run_value,
)  # fmt: skip
from frugal.envs import PROTOCOLS, EnvSpec, describe, resolve, suite_of
from frugal.errors import FrugalError, unknown
from frugal.lock import RunLock
from frugal.nets.precision import precision_reason
from frugal.runner import Runner, resolve_device
from frugal.runs import CHECKPOINTS, CONFIG_FILE, VIEWER, Run, load_config, load_run, save_config

NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux file systems allow


def build_config(
    algo: str,
    env: str,
    preset: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Defaults -> preset -> env protocol -> overrides, every key checked."""
    module = agent_module(algo)
    preset = preset or module.default_preset(describe(env))
    if preset not in module.PRESETS:
        raise unknown(f"preset for {algo}", preset, module.PRESETS)
    chosen = module.PRESETS[preset]
    _check_preset_fits(algo, preset, env, module)
    config = Config(algo, preset, EnvConfig(id=env), RunConfig(), module.Config())
    apply(config.env, "env", chosen.env)
    apply(config.run, "run", chosen.run)
    apply(config.agent, "agent", chosen.agent)
    if isinstance(overrides, dict):
        overrides = [f"{k}={v}" for k, v in overrides.items()]
    for section, values in parse_overrides(list(overrides or []), config).items():
        apply(getattr(config, section), section, values)
    if steps is not None:
        config.run.steps = steps
    if seed is not None:
        config.run.seed = seed
    config.env = resolve(config.env)
    validate(config)
    return config


def _check_preset_fits(algo: str, name: str, env: str, package: AgentPackage) -> None:
    """A preset made for one suite (its env protocol says which) does not fit another's envs."""
    protocol = package.PRESETS[name].env.get("protocol", "auto")
    if protocol not in ("auto", *PROTOCOLS[suite_of(env)]):
        raise FrugalError(
            f"preset '{name}' of {algo} is for another env suite (protocol {protocol}); "
            f"for {env} use --preset {package.default_preset(describe(env))} or leave it out"
        )


NONFINITE = ("stop", "skip_update")
MAX_ENVS = 1024  # vectorised envs in one process


def validate(config: Config) -> None:
    run = config.run
    checks = [
        (run.steps > 0, "run.steps must be positive"),
        (0 <= run.seed < 2**63, f"run.seed must be in [0, 2^63), got {run.seed}"),
        (1 <= config.env.num_envs <= MAX_ENVS, f"env.num_envs must be in [1, {MAX_ENVS}]"),
        (run.eval_episodes >= 1, "run.eval_episodes must be at least 1"),
        (run.eval_envs >= 1, "run.eval_envs must be at least 1"),
    ]
    checks += [
        (getattr(run, k) >= 0, f"run.{k} must be 0 or more (0 = {when}), got {getattr(run, k)}")
        for k, when in (
            ("eval_every", "only at the end"),
            ("log_every", "only at evaluations"),
            ("checkpoint_every", "only at the end and on a stop"),
        )
    ]
    checks.append(
        (
            run.on_nonfinite in NONFINITE,
            f"run.on_nonfinite must be {' or '.join(NONFINITE)}, got '{run.on_nonfinite}'",
        )
    )
    prefetch = getattr(config.agent, "prefetch", None)  # agents with reanalysis draw ahead
    checks += [
        (run.reanalysers == 0 or prefetch is not None, f"run.reanalysers: {config.algo} has "
         "no reanalysis to hand out (EfficientZero has); set run.reanalysers=0"),
        (run.reanalysers == 0 or prefetch != 0, f"run.reanalysers={run.reanalysers} "
         "reanalyses batches drawn ahead; set agent.prefetch to 1 or more"),
    ]  # fmt: skip
    checks += _common_agent_checks(config.agent)
    for ok, message in checks:
        if not ok:
            raise FrugalError(message)
    resolve_device(run.device)


def _common_agent_checks(agent: Any) -> list[tuple[bool, str]]:
    """Rules for settings that mean the same in every agent (one name for one idea): learning
    rates and the gradient-norm clip are positive, layer widths at least 1."""
    checks = []
    for f in dataclasses.fields(agent):
        name, value = f.name, getattr(agent, f.name)
        if name == "lr" or name.endswith("_lr") or name == "grad_clip":
            checks.append((value > 0, f"agent.{name} must be positive, got {value}"))
        elif name == "hidden":
            ok = all(width >= 1 for width in (value if isinstance(value, tuple) else (value,)))
            checks.append((ok, f"agent.hidden widths must be at least 1, got {value}"))
    return checks


def _new_run_dir(config: Config, root: Path) -> Path:
    env_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.env.id.split("/", 1)[-1])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{config.algo}-{env_name}-s{config.run.seed}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def train(
    algo: str,
    env: str,
    preset: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    run_dir: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Run:
    """Train from scratch; returns the finished run."""
    config = build_config(algo, env, preset, steps, seed, overrides)
    path = Path(run_dir) if run_dir else _new_run_dir(config, Path("runs"))
    _check_run_dir(path)
    _refuse_existing_run(path, config)
    runner = Runner(config, path)  # builds env and agent first: a bad setting leaves no run behind
    config.detected = _detected(config, runner.env.spec)
    started = False
    try:
        path.mkdir(parents=True, exist_ok=True)
        with RunLock(path, "train"):
            _refuse_existing_run(path, config)  # again, now that no other process can write it
            save_config(config, path)
            started = True
            runner.run()
    except BaseException:
        if not started:
            runner.env.close()
        raise
    return load_run(path)


def _settings(config: Config) -> dict[str, Any]:
    """What a run was asked to do (not what its machine detected)."""
    return {k: v for k, v in config.to_dict().items() if k != "detected"}


def _detected(config: Config, spec: EnvSpec) -> dict[str, str]:
    """What `agent.precision=auto` resolves to here, and why, for config.yaml."""
    if not hasattr(config.agent, "precision"):
        return {}
    device = resolve_device(config.run.device)
    reason = precision_reason(config.agent.precision, device, pixels=spec.pixels)
    return {"agent.precision": reason}


def _check_run_dir(path: Path) -> None:
    """A run dir that can be made and written: one line saying why not, before any work."""
    text = str(path)
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise FrugalError(f"--run-dir {text!r} is not valid UTF-8; give a UTF-8 path") from None
    longest = max((len(part.encode("utf-8")) for part in path.parts), default=0)
    if longest > NAME_MAX or len(encoded) > PATH_MAX:
        raise FrugalError(
            f"--run-dir is too long ({len(encoded)} bytes, longest name {longest}); a name may "
            f"have {NAME_MAX} bytes and a path {PATH_MAX}"
        )
    if path.is_file():
        raise FrugalError(f"--run-dir {path} is a file; give a directory (new or empty)")
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FrugalError(f"--run-dir {path} lies under {ancestor}, which is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FrugalError(f"--run-dir {path} cannot be written: {ancestor} is read-only")


def _refuse_existing_run(path: Path, config: Config) -> None:
    """A run dir with a checkpoint holds a run. One with a config but no checkpoint is a run that
    died before its first checkpoint: the same command may start it again, from step 0."""
    if (path / CHECKPOINTS / checkpoint.POINTER).is_file():
        raise FrugalError(
            f"{path} already holds a run; continue it with 'frugal resume {path}' "
            "or pick a new --run-dir"
        )
    if (path / CONFIG_FILE).exists() and _settings(load_config(path)) != _settings(config):
        raise FrugalError(
            f"{path} holds a run that stopped before its first checkpoint with other settings; "
            "train it again with the same command, or pick a new --run-dir"
        )


MUTABLE_SECTIONS = ("run", "agent")


def resume(
    run_dir: str | Path, steps: int | None = None, overrides: list[str] | dict | None = None
) -> Run:
    """Continue a run from its latest checkpoint, optionally to a new total and with changed
    hyperparameters (recorded in the config's history)."""
    path = Path(run_dir)
    config = load_config(path)
    checkpoint.latest(path / CHECKPOINTS)  # fail early, before anything is touched
    if isinstance(overrides, dict):
        overrides = [f"{k}={v}" for k, v in overrides.items()]
    changes = parse_overrides(list(overrides or []), config)
    changeable = mutable_keys(type(config.agent))
    frozen = [f"env.{k}" for k in changes["env"]] + (
        ["run.seed"] if "seed" in changes["run"] else []
    )
    frozen += [f"agent.{k}" for k in changes["agent"] if k not in changeable]
    frozen += [  # the acting schedule decides which weights act where; the backend only speed
        f"run.{k}" for k in SCHEDULE_KEYS
        if k in changes["run"] and run_value(k, changes["run"][k]) != getattr(config.run, k)
    ]  # fmt: skip
    if frozen:
        raise FrugalError(
            f"{', '.join(frozen)} cannot change when resuming (it would change the networks, "
            f"replay, env or acting schedule); changeable: run.* except run.seed and "
            f"run.{{{','.join(SCHEDULE_KEYS)}}}, agent.{{{','.join(sorted(changeable))}}}"
        )
    record: dict[str, Any] = {}
    for section in MUTABLE_SECTIONS:
        target = getattr(config, section)
        apply(target, section, changes[section])
        record.update({f"{section}.{k}": getattr(target, k) for k in changes[section]})
    if steps is not None:
        config.run.steps = steps
        record["run.steps"] = steps
    validate(config)
    with RunLock(path, "resume"):
        runner = Runner(config, path, resume=True)
        config.detected = _detected(config, runner.env.spec)
        if runner.env_step > config.run.steps:
            runner.env.close()
            raise FrugalError(
                f"{path} is already at env step {runner.env_step:,}; give --steps above that"
            )
        if record:
            config.history.append({"env_step": runner.env_step, "set": record})
        save_config(config, path)
        runner.run()
    return load_run(path)


def evaluate(
    run_dir: str | Path,
    episodes: int | None = None,
    video: bool | str | Path = False,
    video_format: str = "mp4",
    viewer: bool = False,
) -> dict[str, Any]:
    """Evaluate the latest checkpoint of a run on full games. `video`: write the best episode
    as `video_format` (mp4 | gif), to `video` if it is a path, else under the run's videos/.
    `viewer`: write an HTML page per episode under the run's viewer/ (frugal.viewer)."""
    from frugal.evaluation import VIDEO_FORMATS, VIDEO_FPS, Recording

    if video_format not in VIDEO_FORMATS:
        raise unknown("video format", video_format, VIDEO_FORMATS)
    path = Path(run_dir)
    config = load_config(path)
    runner = Runner(config, path, resume=True)
    runner.env.close()
    recording = Recording(video_format=video_format)
    name = f"eval-step-{runner.env_step}"
    if video:
        recording.video = (
            Path(video)
            if not isinstance(video, bool)
            else path / "videos" / f"{name}.{video_format}"
        )
        _writable(recording.video.parent, "the video", "--video")
    if viewer:
        from frugal.viewer.pages import EpisodePages

        meta = {"algo": config.algo, "env": config.env.id, "preset": config.preset,
                "env_step": runner.env_step}  # fmt: skip
        _writable(path / VIEWER, "episode pages", "--viewer")
        recording.pages = EpisodePages(path / VIEWER, name, meta, VIDEO_FPS)
    result = runner.evaluate(video=recording, episodes=episodes)
    result["env_step"] = runner.env_step
    if recording.video:
        result["video"] = str(recording.video)
    if recording.pages:
        result["viewer"] = [str(p) for p in recording.pages.paths]
    return result


def _writable(directory: Path, what: str, option: str) -> None:
    """Make `directory` or say in one line why it cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise FrugalError(
            f"cannot write {what} under {directory} ({e.strerror}); evaluate without {option}, "
            "or copy the run somewhere writable"
        ) from None


def watch(run_dir: str | Path, episodes: int = 1, speed: float = 1.0) -> dict[str, Any]:
    """Play the latest checkpoint of a run greedily in a window, `speed` times real time."""
    from frugal.evaluation import VIDEO_FPS, Recording
    from frugal.viewer.window import Window, WindowClosed, has_display

    if not speed > 0:
        raise FrugalError(f"--speed must be positive, got {speed}")
    if not has_display():
        raise FrugalError(
            f"no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset); write "
            f"episode pages to open in a browser instead: frugal eval {run_dir} --viewer"
        )
    path = Path(run_dir)
    config = load_config(path)
    runner = Runner(config, path, resume=True)
    runner.env.close()
    window = Window(VIDEO_FPS * speed, f"frugal: {config.algo} on {config.env.id}")
    try:
        result = runner.evaluate(video=Recording(window=window), episodes=episodes)
    except WindowClosed:
        return {"env_step": runner.env_step, "closed": True}
    result["env_step"] = runner.env_step
    return result
