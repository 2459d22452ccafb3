"""The one loop: collect with vectorised envs, run exactly the updates the agent's replay ratio
owes, evaluate, log and checkpoint. Time is counted in env steps, never in seconds, so a run's
result does not depend on how fast the machine is."""

from __future__ import annotations

import importlib.util
import math
import random
import re
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from frugal import checkpoint
from frugal.agents import agent_module
from frugal.agents.base import Agent, Transition
from frugal.backends import WorkerLost
from frugal.backends.worker import STEP_KEYS
from frugal.config import Config, check_run, schedule_of
from frugal.envs import EnvSpec, make_env
from frugal.errors import Diverged, FrugalError, Interrupted
from frugal.evaluation import evaluate
from frugal.metrics import MetricsWriter, Progress
from frugal.runs import CHECKPOINTS


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N, checked against the machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise FrugalError(f"run.device '{name}' is not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FrugalError(f"run.device={name}, but this machine has no CUDA device; use cpu")
        if (device.index or 0) >= count:
            raise FrugalError(f"run.device={name}, but this machine has {count} CUDA device(s)")
    return device


def build_agent(config: Config, spec: EnvSpec, num_envs: int) -> Agent:
    package = agent_module(config.algo)
    device = resolve_device(config.run.device)
    try:
        return package.Agent(config.agent, spec, num_envs, device, config.run.seed)
    except (MemoryError, RuntimeError) as e:  # numpy raises MemoryError, torch RuntimeError
        text = str(e)
        if not isinstance(e, MemoryError) and "allocate" not in text:
            raise
        need = re.search(
            r"allocate ([0-9.]+ \w+)|allocate memory: you tried to allocate (\d+)", text
        )
        amount = next((g for g in need.groups() if g), None) if need else None
        if amount and amount.isdigit():
            amount = f"{int(amount) / 2**30:.1f} GiB"
        raise FrugalError(
            f"{config.algo} needs more memory than this machine has"
            + (f" (one allocation of {amount})" if amount else "")
            + "; lower agent.buffer_size or the network sizes"
        ) from None


def _crossed(before: int, after: int, every: int) -> bool:
    return every > 0 and before // every != after // every


SKIPPED = "train/skipped_updates"  # updates whose step was skipped (run.on_nonfinite)


def _watched(key: str) -> bool:
    """Update metrics that must stay finite: losses and gradient norms."""
    name = key.rsplit("/", 1)[-1]
    return "loss" in name or "grad" in name


def _nonfinite_tensor(tree: Any, path: str = "agent") -> str | None:
    """The path of the first floating torch tensor (a weight or optimiser state) in `tree` that
    holds a NaN or an infinity; None when all are finite. Replay arrays (numpy) are not weights."""
    if isinstance(tree, torch.Tensor):
        bad = tree.is_floating_point() and not bool(torch.isfinite(tree).all())
        return path if bad else None
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return None
    for key, value in items:
        found = _nonfinite_tensor(value, f"{path}/{key}")
        if found:
            return found
    return None


def _unfit(ckpt_dir: Path, e: BaseException) -> BaseException:
    """A checkpoint that does not fit the run's config (config.yaml edited, state damaged) as one
    line; any other exception as it is."""
    if isinstance(e, KeyError):
        return FrugalError(f"the checkpoint in {ckpt_dir} lacks {e}; it is damaged or not frugal's")
    if isinstance(e, RuntimeError | ValueError | TypeError):
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        detail = next((ln for ln in lines if "mismatch" in ln or "key" in ln.lower()), lines[0])
        return FrugalError(
            f"the checkpoint in {ckpt_dir} does not fit the networks config.yaml describes "
            f"({detail[:160]}); was config.yaml edited?"
        )
    return e


class Runner:
    def __init__(self, config: Config, run_dir: Path, resume: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        run = config.run
        check_run(run, config.env.num_envs)
        # acting in chunks through a backend (frugal.backends), or every step with the learner's
        # own networks in this process (act_chunk=0 on the local backend)
        self.scheduled = run.act_chunk > 0 or run.backend != "local"
        self.chunk, self.lag = schedule_of(run)
        if run.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise FrugalError("run.backend=ray needs Ray: pip install 'frugal[ray]'")
        self.backend = None
        self._snapshots: dict[int, dict] = {}  # acting states by the chunk they follow
        self._start_states: dict[int, dict] | None = None  # slices' states to start from
        self._reset_seed = run.seed
        self._rows: dict[str, Any] | None = None  # the request being observed, [T, N, ...]
        self._row = 0
        self._next_submit = 0  # the first vectorised step not yet submitted for acting
        self._save_due = False
        self._lost: str | None = None  # reanalysis workers lost: stop at the next boundary
        self._reanalyser_restarts = 0  # of the reanalysis workers, already logged
        random.seed(run.seed)
        np.random.seed(run.seed % 2**32)
        torch.manual_seed(run.seed)
        self.env = make_env(config.env, config.env.num_envs, training=True)
        self.agent = build_agent(config, self.env.spec, config.env.num_envs)
        # env steps are counted as the suite's papers count them (frames for dmc); the agent's
        # own schedule (replay ratio, learning starts) counts agent steps
        self.frames = self.env.spec.frames_per_step
        self.step_size = config.env.num_envs * self.frames  # env steps per vectorised step
        self.act_rng = np.random.default_rng([run.seed, 1])
        self.env_step = 0
        self.updates = 0
        self.wall_s = 0.0
        self.episode_returns = np.zeros(config.env.num_envs)
        self.episode_lengths = np.zeros(config.env.num_envs, dtype=np.int64)
        self._metrics_offset: int | None = None
        # running sums since the last log point: checkpointed, so a resumed log averages the same
        self._pending: dict[str, list[float]] = defaultdict(list)
        if resume:
            state = checkpoint.load_latest(self.ckpt_dir)
            try:
                self._metrics_offset = self._restore(state)
            except BaseException as e:
                self.env.close()
                raise _unfit(self.ckpt_dir, e) from None
        else:
            self.obs = self.env.reset(run.seed)
            self.first = np.ones(config.env.num_envs, dtype=bool)
            self.act_state = self.agent.initial_act_state(config.env.num_envs)
            self._snapshots = {-1: self.agent.acting_state()}
        self.metrics: MetricsWriter | None = None
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------------------- the loop

    def run(self) -> None:
        run = self.config.run
        checkpoint.remove_partial(self.ckpt_dir)
        # a fresh start in a run dir whose first run died before its first checkpoint logs anew
        offset = self._metrics_offset if self._metrics_offset is not None else 0
        self.metrics = MetricsWriter(self.run_dir, offset, purge_step=self.env_step)
        progress = Progress(run.steps, self.env_step, run.progress)
        start_updates, last_return = self.updates, None
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.perf_counter() - self.wall_s
        try:
            if self.scheduled:
                self._begin_acting()
                for s in previous:  # starting Ray installs its own SIGTERM handler
                    signal.signal(s, self._on_signal)
            while not self._finished() and (self._stop_signal is None or not self._boundary()):
                before = self.env_step, self.updates
                if self.env_step < run.steps:
                    self._collect_step()
                    due = self.agent.updates_due(self.env_step // self.frames)
                else:  # training that the agent schedules after collection ends
                    due = self.updates + 1
                while self.updates < due:
                    result = self._update()
                    self.updates += 1
                    bad = [k for k, v in result.items() if _watched(k) and not math.isfinite(v)]
                    if bad and run.on_nonfinite == "stop":
                        raise self._diverged(bad[0])
                    if bad:  # the agents skip a non-finite step (frugal.nets.optim)
                        self._pending[SKIPPED].append(1.0)
                        continue
                    for key, value in result.items():
                        self._pending[key].append(value)
                if self.scheduled:
                    self._after_updates()
                self.wall_s = time.perf_counter() - t0
                if self._pending["train/episode_return"]:
                    last_return = self._pending["train/episode_return"][-1]
                progress.update(
                    self.env_step, self.updates, start_updates, last_return, *self._workers()
                )
                # intervals count env steps, and updates once collection has ended
                clock = 0 if before[0] < run.steps else 1
                then, now = before[clock], (self.env_step, self.updates)[clock]
                end = self._finished()
                do_eval = end or _crossed(then, now, run.eval_every)
                if do_eval or _crossed(then, now, run.log_every):
                    self._log(evaluate_now=do_eval)
                if end or _crossed(then, now, run.checkpoint_every) or self._save_due:
                    # acting in chunks: at the end of the request, where the envs' state is known
                    self._save_due = not self._boundary()
                    if not self._save_due:
                        self.save()
                if self._lost is not None and self._boundary():
                    saved = self.save().name
                    raise FrugalError(
                        f"{self._lost}; the run is saved at {saved}: continue it with "
                        f"'frugal resume {self.run_dir}'"
                    )
            if self._stop_signal is not None:
                self.save()
                raise Interrupted(self._stop_signal, self.env_step)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            progress.close()
            self.metrics.close()
            self.env.close()
            if self.backend is not None:
                self.backend.close()

    def _update(self) -> dict[str, float]:
        """One update. Reanalysis workers that cannot be restarted leave the batch to this
        process (the same targets), and the run stops at the next point where it can be saved."""
        pool = getattr(self.backend, "reanalysers", None)
        try:
            result = self.agent.update()
        except WorkerLost as lost:  # raised before the update changed anything
            self._lost = str(lost)
            self.agent.prefetch.use(None)
            result = self.agent.update()
        if pool is not None and pool.restarts > self._reanalyser_restarts:
            new = pool.restarts - self._reanalyser_restarts
            self._pending["workers/restarts"].append(float(new))
            self._reanalyser_restarts = pool.restarts
        return result

    def _workers(self) -> tuple[dict[str, tuple[int, float]], str]:
        """For the progress display: each kind of worker's (count, busy seconds so far) and the
        staleness in effect."""
        busy: dict[str, tuple[int, float]] = {}
        staleness = []
        if self.backend is not None:
            run = self.config.run
            busy["act"] = (run.actors if run.backend == "ray" else 1, self.backend.busy_s)
            staleness.append(f"act lag {self.lag} chunk{'s' * (self.lag != 1)} of {self.chunk}")
            pool = self.backend.reanalysers
            if pool is not None:
                busy["reanalyse"] = (len(pool.workers), pool.busy_s)
        prefetch = getattr(self.agent, "prefetch", None)
        if prefetch is not None:
            staleness.append(f"prefetch {prefetch.depth}")
        return busy, ", ".join(staleness)

    def _finished(self) -> bool:
        steps = self.config.run.steps
        due = self.agent.final_updates_due(steps // self.frames)
        return self.env_step >= steps and self.updates >= due

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum  # finish the current step, checkpoint, then stop

    def _collect_step(self) -> None:
        if self.scheduled:
            return self._observe_acted_step()
        actions, self.act_state = self.agent.act(
            self.obs, self.act_state, self.first, explore=True, rng=self.act_rng
        )
        result = self.env.step(actions)
        self._observe(
            Transition(
                obs=self.obs,
                action=actions,
                reward=result.reward,
                terminated=result.terminated,
                truncated=result.truncated,
                reset=result.reset,
                next_obs=result.obs,
                final_obs=result.final_obs,
            )
        )
        self.obs, self.first = result.obs, result.reset

    def _observe(self, t: Transition) -> None:
        """The learner takes one vectorised step; the episode statistics count it."""
        self.agent.observe(t)
        self.episode_returns += t.reward
        self.episode_lengths += self.frames
        for i in np.flatnonzero(t.reset):
            self._pending["train/episode_return"].append(float(self.episode_returns[i]))
            self._pending["train/episode_length"].append(float(self.episode_lengths[i]))
            self.episode_returns[i] = 0.0
            self.episode_lengths[i] = 0
        self.env_step += self.step_size

    # ------------------------------------------------------------------- acting in chunks

    def _total_steps(self) -> int:
        """Vectorised steps of the whole collection."""
        return -(-self.config.run.steps // self.step_size)

    def _boundary(self) -> bool:
        """Between requests: every slice's state is the one after the last step observed."""
        return not self.scheduled or self._rows is None or self._row == len(self._rows["obs"])

    def _begin_acting(self) -> None:
        from frugal.backends import make_backend

        self.env.close()  # it gave the spec; the backend builds the envs that act
        self.backend = make_backend(self.config)
        states = self.backend.start(self._start_states, self._reset_seed)
        if self.backend.reanalysers is not None:
            self.backend.reanalysers.learner = self.agent.reanalyser()  # helps when it waits
            self.agent.prefetch.use(self.backend.reanalysers)
        if self._start_states is not None and not self.backend.capturable:
            # the envs' state could not be saved: the games in progress restarted
            self.agent.restart(np.concatenate([states[j]["obs"] for j in sorted(states)]))
        self._next_submit = self.env_step // self.step_size
        self._rows, self._row = None, 0
        self._launch()

    def _launch(self) -> None:
        """Submit every request whose acting state the schedule has already produced: chunk c
        acts with the state after the updates owed at the end of chunk c - 1 - lag."""
        total = self._total_steps()
        while self._next_submit < total:
            c = self._next_submit // self.chunk
            key = max(c - 1 - self.lag, -1)
            if key not in self._snapshots:
                return
            stop = min((c + 1) * self.chunk, total)
            self.backend.submit(key, self._snapshots[key], self._next_submit, stop)
            self._next_submit = stop

    def _after_updates(self) -> None:
        """At the end of a chunk, after the updates it owes: the acting state for later chunks."""
        t = self.env_step // self.step_size
        if t % self.chunk == 0 and t // self.chunk - 1 not in self._snapshots:
            self._snapshots[t // self.chunk - 1] = self.agent.acting_state()
            oldest = t // self.chunk - 1 - self.lag
            self._snapshots = {k: v for k, v in self._snapshots.items() if k >= oldest}
            self._launch()

    def _observe_acted_step(self) -> None:
        if self._boundary():
            self._launch()
            waited = time.perf_counter()
            try:
                self._rows, news = self.backend.take()
            except WorkerLost as lost:  # between requests: the slices' states are known
                saved = self.save().name
                raise FrugalError(
                    f"{lost}; the run is saved at {saved}: continue it with "
                    f"'frugal resume {self.run_dir}'"
                ) from None
            self._row = 0
            self._pending["perf/act_wait_s"].append(time.perf_counter() - waited)
            if news.get("restarts"):
                self._pending["workers/restarts"].append(float(news["restarts"]))
            if news.get("reset_obs") is not None:
                self.agent.restart(news["reset_obs"])
        rows, r = self._rows, self._row
        step = {k: rows[k][r] for k in STEP_KEYS}
        record = rows["record"]
        self.agent.load_act_record(
            None if record is None else {k: v[r] for k, v in record.items()},
            step["obs"],
            step["action"],
        )
        self._observe(Transition(**step))
        self._row += 1

    def _save_acting(self, state: dict[str, Any]) -> None:
        """The slices' states as a run acting in one process saves them (one slice: the same
        keys), and the acting states the schedule still owes to chunks not yet observed."""
        slices = self.backend.states() if self.backend is not None else self._start_states
        if slices is None:  # not started: nothing acted yet
            slices = {}
        order = sorted(slices)
        if order:
            state["act_rng"] = slices[0]["rng"]
            state["act_rngs"] = [slices[j]["rng"] for j in order]
        if order and all(slices[j]["env"] is not None for j in order):
            env = {
                "episode_returns": self.episode_returns,
                "episode_lengths": self.episode_lengths,
            }
            parts = [
                {k: slices[j][k2] for k, k2 in (("state", "env"), ("obs", "obs"),
                                                  ("first", "first"), ("act_state", "act_state"))}
                for j in order
            ]  # fmt: skip
            if len(order) == 1:
                env.update(parts[0])
            else:
                env["slices"] = parts
            state["env"] = env
        state["acting"] = {str(k): v for k, v in self._snapshots.items()}

    def _restore_acting(self, state: dict[str, Any]) -> None:
        """Where each slice continues from, and the acting states the schedule owes (taken
        from the learner when a checkpoint of a run acting every step has none: at lag 0 the
        state after the last updates is the one owed)."""
        run = self.config.run
        count = run.act_slices
        rngs = state.get("act_rngs") or [state["act_rng"]]
        saved = state.get("env")
        if saved is not None:
            parts = saved["slices"] if "slices" in saved else [saved]
            self._start_states = {
                j: {"env": p["state"], "obs": p["obs"], "first": p["first"],
                    "act_state": p["act_state"], "rng": rngs[j]}
                for j, p in enumerate(parts)
            }  # fmt: skip
            self.episode_returns = saved["episode_returns"].copy()
            self.episode_lengths = saved["episode_lengths"].copy()
        else:
            self._start_states = {j: {"env": None, "rng": rngs[j]} for j in range(count)}
            self._reset_seed = int(
                np.random.default_rng([run.seed, 3, self.env_step]).integers(2**31)
            )
        self._snapshots = {int(k): v for k, v in state.get("acting", {}).items()}
        c = self.env_step // self.step_size // self.chunk
        for key in range(max(c - 1 - self.lag, -1), c):
            if key not in self._snapshots:
                self._snapshots[key] = self.agent.acting_state()

    def _log(self, evaluate_now: bool) -> None:
        point: dict[str, Any] = {
            "env_step": self.env_step,
            "update": self.updates,
            "wall_s": round(self.wall_s, 3),
        }
        episodes = len(self._pending.get("train/episode_return", []))
        for key, values in self._pending.items():
            if values:  # events and waits are summed over the interval, the rest averaged
                summed = key.startswith("workers/") or key in ("perf/act_wait_s", SKIPPED)
                point[key] = float(np.sum(values) if summed else np.mean(values))
        if episodes:
            point["train/episodes"] = episodes
        self._pending.clear()
        if evaluate_now:
            point.update(self.evaluate())
        if self.wall_s > 0:
            point["perf/env_steps_per_s"] = round(self.env_step / self.wall_s, 2)
        nodes = getattr(self.backend, "nodes", None)
        if nodes:  # the machines the acting workers run on
            point["perf/worker_nodes"] = len(set(nodes))
        self.metrics.write(point)

    def evaluate(self, video: str | Path | None = None, episodes: int | None = None):
        run = self.config.run
        return evaluate(
            self.agent,
            self.config.env,
            episodes or run.eval_episodes,
            run.eval_envs,
            # a fixed stream per evaluation point: the same whether or not the run was resumed
            seed=int(np.random.default_rng([run.seed, 2, self.env_step]).integers(2**31)),
            video=video,
        )

    # ---------------------------------------------------------------------------- checkpoints

    def _diverged(self, what: str) -> Diverged:
        try:
            last = checkpoint.latest(self.ckpt_dir).name
        except FrugalError:
            last = "none: none was written yet"
        return Diverged(what, self.updates, self.env_step, last)

    def save(self) -> Path:
        agent_state = self.agent.state_dict()
        bad = _nonfinite_tensor(agent_state)
        if bad:
            raise self._diverged(bad)
        state = {
            "env_step": self.env_step,
            "updates": self.updates,
            "wall_s": self.wall_s,
            "metrics_offset": self.metrics.offset(),
            "agent": agent_state,
            "pending": {k: v for k, v in self._pending.items() if v},
            "act_rng": self.act_rng.bit_generator.state,
            "rng": {
                "python": _python_rng_state(),
                "numpy": np.random.get_state(legacy=False)["state"]["key"].tolist(),
                "numpy_pos": int(np.random.get_state(legacy=False)["state"]["pos"]),
                "torch": torch.get_rng_state(),
            },
        }
        if self.scheduled:
            self._save_acting(state)
        elif self.env.capturable:
            state["env"] = {
                "state": self.env.get_state(),
                "obs": self.obs,
                "first": self.first,
                "act_state": self.act_state,
                "episode_returns": self.episode_returns,
                "episode_lengths": self.episode_lengths,
            }
        name = f"step-{self.env_step:012d}"
        return checkpoint.save(self.ckpt_dir, name, state, keep=self.config.run.keep_checkpoints)

    def _restore(self, state: dict[str, Any]) -> int:
        self.env_step = int(state["env_step"])
        self.updates = int(state["updates"])
        self.wall_s = float(state["wall_s"])
        self.agent.load_state_dict(state["agent"])
        self.act_rng.bit_generator.state = state["act_rng"]
        if self.scheduled:
            self._restore_acting(state)
        self._pending.update(state.get("pending", {}))
        rng = state["rng"]
        random.setstate(_python_rng_from(rng["python"]))
        np.random.set_state(("MT19937", np.array(rng["numpy"], dtype=np.uint32), rng["numpy_pos"]))
        torch.set_rng_state(rng["torch"])
        n = self.config.env.num_envs
        if self.scheduled:
            pass
        elif "env" in state:
            saved = state["env"]
            self.obs = self.env.reset(self.config.run.seed)
            self.env.set_state(saved["state"])
            self.obs = saved["obs"]
            self.first = saved["first"]
            self.act_state = saved["act_state"]
            self.episode_returns = saved["episode_returns"].copy()
            self.episode_lengths = saved["episode_lengths"].copy()
        else:
            # the emulator state cannot be captured: games in progress restart
            seed = int(
                np.random.default_rng([self.config.run.seed, 3, self.env_step]).integers(2**31)
            )
            self.obs = self.env.reset(seed)
            self.first = np.ones(n, dtype=bool)
            self.act_state = self.agent.initial_act_state(n)
            self.agent.restart(self.obs)
        return int(state["metrics_offset"])


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_rng_from(saved: list) -> tuple:
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)
