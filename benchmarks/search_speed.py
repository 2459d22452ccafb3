"""Speed of frugal.search: microseconds per simulation per root, and searches per second.

Zero-cost model: recurrent_fn returns precomputed tensors (reward [B], discount [B] float64,
logits [B, A], value [B], next embedding [B, 64] float32), so the timing is everything but the
network: tree kernels, embedding storage and gathers, index and output transfers, Python glue.
Small real network: a 2-layer MLP dynamics/prediction model (latent 64, hidden 64) on the CPU.

With --lightzero DIR (an unpacked LightZero wheel or source tree with built ctree extensions), each
zero-cost cell also times LightZero's compiled trees driven the way its own search loop drives
them (pUCT: EfficientZero's ctree; Gumbel: Gumbel MuZero's ctree), with the same model outputs,
and reports frugal / LightZero. The extension modules are loaded from their files; LightZero
itself is neither imported nor installed.

    python benchmarks/search_speed.py                    # print the tables
    python benchmarks/search_speed.py --out benchmarks/search_speed.md
    python benchmarks/search_speed.py --lightzero DIR --min-time 1 --rounds 10
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

import numba
import numpy as np
import torch

from frugal.search import Root, Step, gumbel, puct

LATENT = 64
DISCOUNT = 0.997
MAX_CONSIDERED = 16  # frugal's default m for Gumbel


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numba "
        f"{numba.__version__}, numpy {np.__version__}"
    )


def zero_cost(num_roots: int, num_actions: int):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(num_roots, num_actions, generator=g)
    value = torch.randn(num_roots, generator=g)
    reward = torch.randn(num_roots, generator=g)
    emb = torch.randn(num_roots, LATENT, generator=g)
    discount = torch.full((num_roots,), DISCOUNT, dtype=torch.float64)
    step = Step(reward, discount, logits, value)

    def recurrent_fn(embedding, action):
        return step, emb

    return Root(logits, value, emb), recurrent_fn


class MLP(torch.nn.Module):
    """Dynamics (latent, one-hot action) -> latent, and prediction latent -> (logits, value)."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.num_actions = num_actions
        self._discounts: dict[int, torch.Tensor] = {}
        self.dynamics = torch.nn.Sequential(
            torch.nn.Linear(LATENT + num_actions, LATENT), torch.nn.ReLU(),
            torch.nn.Linear(LATENT, LATENT + 1),
        )  # fmt: skip
        self.prediction = torch.nn.Sequential(
            torch.nn.Linear(LATENT, LATENT), torch.nn.ReLU(),
            torch.nn.Linear(LATENT, num_actions + 1),
        )  # fmt: skip

    def predict(self, latent):
        out = self.prediction(latent)
        return out[:, : self.num_actions], out[:, self.num_actions]

    def recurrent_fn(self, latent, action):
        onehot = torch.nn.functional.one_hot(action, self.num_actions).float()
        out = self.dynamics(torch.cat((latent, onehot), 1))
        nxt, reward = torch.tanh(out[:, :LATENT]), out[:, LATENT]
        logits, value = self.predict(nxt)
        return Step(reward, self.discount(len(action)), logits, value), nxt

    def discount(self, num_roots: int) -> torch.Tensor:
        """The constant discount as a float64 [B] tensor, made once per batch size."""
        cached = self._discounts.get(num_roots)
        if cached is None:
            cached = self._discounts[num_roots] = torch.full(
                (num_roots,), DISCOUNT, dtype=torch.float64
            )
        return cached


def timed(fns: Sequence[Callable[[], object]], min_time: float, rounds: int = 5):
    """[(CPU seconds, wall seconds) per call] for each of fns: two warm-up calls each (the
    first may load compiled kernels; the second sets the number of calls per round), then
    `rounds` rounds of repeated calls lasting about min_time in all per function; each the best
    round's mean. The functions' rounds alternate, so a change of load hits all of them alike.
    CPU time is that of the calling thread, which does all the work (numba kernels and
    LightZero's trees are single-threaded and torch runs with --threads 1), so it is what the
    search costs even when other jobs share the cores; the minimum over rounds is the least
    disturbed estimate, as in timeit."""
    per_round = []
    for fn in fns:
        fn()
        start = time.perf_counter()
        fn()
        elapsed = max(time.perf_counter() - start, 1e-6)
        per_round.append(max(1, int(min_time / rounds / elapsed)))
    best = [[float("inf"), float("inf")] for _ in fns]
    for _ in range(rounds):
        for fn, calls, b in zip(fns, per_round, best, strict=True):
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                fn()
            b[0] = min(b[0], (time.thread_time() - cpu) / calls)
            b[1] = min(b[1], (time.perf_counter() - wall) / calls)
    return [tuple(b) for b in best]


def load_extension(directory: str, package: str, name: str):
    """One of LightZero's compiled tree modules, loaded straight from its file: importing it as
    lzero.mcts.ctree... would run lzero/__init__.py, which needs DI-engine and LightZero's
    models."""
    pattern = os.path.join(directory, "lzero", "mcts", "ctree", package, f"{name}.*.so")
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"--lightzero: nothing matches {pattern} (unpacked wheel or built tree?)")
    spec = importlib.util.spec_from_file_location(name, paths[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dist_version(directory: str) -> str:
    """The version in an unpacked wheel's *.dist-info/METADATA, else "unknown version"."""
    for metadata in glob.glob(os.path.join(directory, "*.dist-info", "METADATA")):
        with open(metadata) as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return "unknown version"


def _host(x: torch.Tensor) -> np.ndarray:
    """LightZero's to_detach_cpu_numpy."""
    return x.detach().cpu().numpy()


def _gather(latents: list[np.ndarray], node_index, root_index) -> torch.Tensor:
    """The leaves' parent latents, picked one root at a time from the per-simulation arrays as
    LightZero's search loop does."""
    rows = [latents[x][y] for x, y in zip(node_index, root_index, strict=True)]
    return torch.from_numpy(np.asarray(rows))


def _as_lists(step: Step) -> tuple[list, list, list]:
    """reward, value, logits as the Python lists LightZero's tree calls take."""
    return (
        _host(step.reward).reshape(-1).tolist(),
        _host(step.value).reshape(-1).tolist(),
        _host(step.prior_logits).tolist(),
    )


class LightZero:
    """LightZero's compiled trees driven as lzero/mcts/tree_search/mcts_ctree.py drives them, with
    `recurrent_inference` replaced by the zero-cost recurrent_fn that frugal gets. A timed search
    runs from the root tensors to the results its policy reads back, as frugal's `puct` and
    `gumbel` do. Roots get no exploration noise (the evaluation path), as in frugal's timing;
    legal-action lists are built once outside the timing (LightZero builds them from the action
    mask)."""

    PB_C_BASE, PB_C_INIT, VALUE_DELTA_MAX = 19652, 1.25, 0.01

    def __init__(self, directory: str):
        self.ez = load_extension(directory, "ctree_efficientzero", "ez_tree")
        self.gmz = load_extension(directory, "ctree_gumbel_muzero", "gmz_tree")
        self.version = _dist_version(directory)

    def search_fn(self, method: str, root: Root, recurrent_fn, num_sims: int):
        num_roots, num_actions = root.prior_logits.shape
        legal = [list(range(num_actions))] * num_roots
        run = self.puct if method == "puct" else self.gumbel
        return lambda: run(root, recurrent_fn, num_sims, legal)

    def puct(self, root: Root, recurrent_fn, num_sims: int, legal: list[list[int]]):
        """EfficientZeroMCTSCtree.search and EfficientZeroPolicy's read-out. The zero-cost model
        has no LSTM reward state, so that state's per-root gathering is left out (it would only
        add to LightZero's time), and every leaf resets its value prefix (lstm_horizon_len 1):
        the tree then reads value prefixes as rewards, which is what frugal's Step.reward is."""
        ez, num_roots = self.ez, len(legal)
        to_play = [-1] * num_roots
        roots = ez.Roots(num_roots, legal)
        roots.prepare_no_noise([0.0] * num_roots, _host(root.prior_logits).tolist(), to_play)
        latents = [_host(root.embedding)]
        minmax = ez.MinMaxStatsList(num_roots)
        minmax.set_delta(self.VALUE_DELTA_MAX)
        for s in range(num_sims):
            results = ez.ResultsWrapper(num=num_roots)
            node_index, root_index, actions, next_to_play = ez.batch_traverse(
                roots, self.PB_C_BASE, self.PB_C_INIT, DISCOUNT, minmax, results, to_play
            )
            search_lens = results.get_search_len()
            batch = _gather(latents, node_index, root_index)
            step, nxt = recurrent_fn(batch, torch.from_numpy(np.asarray(actions)).long())
            latents.append(_host(nxt))
            reward, value, logits = _as_lists(step)
            is_reset = (np.array(search_lens) % 1 == 0).astype(np.int32).tolist()
            ez.batch_backpropagate(
                s + 1, DISCOUNT, reward, value, logits, minmax, results, is_reset, next_to_play
            )
        return roots.get_distributions(), roots.get_values()

    def gumbel(self, root: Root, recurrent_fn, num_sims: int, legal: list[list[int]]):
        """GumbelMuZeroMCTSCtree.search and GumbelMuZeroPolicy's read-out (visit counts, values,
        completed Q, improved policy), m = min(16, A) as in frugal."""
        gmz, num_roots = self.gmz, len(legal)
        num_actions = len(legal[0])
        considered = min(MAX_CONSIDERED, num_actions)
        to_play = [-1] * num_roots
        roots = gmz.Roots(num_roots, legal)
        roots.prepare_no_noise(
            [0.0] * num_roots, list(_host(root.value)), _host(root.prior_logits).tolist(), to_play
        )
        latents = [_host(root.embedding)]
        minmax = gmz.MinMaxStatsList(num_roots)
        minmax.set_delta(self.VALUE_DELTA_MAX)
        for s in range(num_sims):
            results = gmz.ResultsWrapper(num=num_roots)
            node_index, root_index, actions, next_to_play = gmz.batch_traverse(
                roots, num_sims, considered, DISCOUNT, results, to_play
            )
            batch = _gather(latents, node_index, root_index)
            actions = torch.from_numpy(np.asarray(actions)).unsqueeze(1).long()
            step, nxt = recurrent_fn(batch, actions)
            latents.append(_host(nxt))
            reward, value, logits = _as_lists(step)
            gmz.batch_back_propagate(
                s + 1, DISCOUNT, reward, value, logits, minmax, results, next_to_play
            )
        return (
            roots.get_distributions(),
            roots.get_values(),
            roots.get_children_values(DISCOUNT, num_actions),
            np.array(roots.get_policies(DISCOUNT, num_actions)),
        )


def load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


GRID = [(b, s, a) for b in (8, 64, 256, 1024) for s in (16, 50) for a in (4, 18)]
METHOD_NAMES = {"puct": "pUCT", "gumbel": "Gumbel"}
SEARCHES = {"puct": puct, "gumbel": gumbel}


def zero_cost_section(
    min_time: float, rounds: int, gen: torch.Generator, peer: LightZero | None
) -> list[str]:
    lines = [
        "## Zero-cost model: microseconds per simulation per root",
        "",
        "recurrent_fn returns precomputed tensors (embedding [B, 64] float32), so this is",
        "everything but the network. Lower is better. CPU time of the searching thread, wall",
        "time (inflated when other jobs share the cores) in parentheses.",
    ]
    if peer is None:
        lines += [
            "",
            "| B | S | A | pUCT µs | Gumbel µs |",
            "|---:|---:|---:|---:|---:|",
        ]
    else:
        lines += [
            "",
            f"LightZero {peer.version}: its compiled trees (pUCT: EfficientZero's ctree, Gumbel:",
            "Gumbel MuZero's ctree) driven per simulation as its search loop does (traverse,",
            "per-root latent gather, numpy and list conversions, backpropagate) with the same",
            "model outputs; no root noise on either side; EfficientZero's LSTM reward-state",
            "gathering left out (the model has none). Ratio: frugal / LightZero in CPU time,",
            "same timing method, rounds of the two alternating.",
            "",
            "| B | S | A | pUCT frugal µs | pUCT LightZero µs | ratio | ≤ 1/3 "
            "| Gumbel frugal µs | Gumbel LightZero µs | ratio | ≤ 1/3 |",
            "|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|:-:|",
        ]
    print("\n".join(lines), flush=True)
    for num_roots, num_sims, num_actions in GRID:
        root, fn = zero_cost(num_roots, num_actions)
        cells = []
        for method in METHOD_NAMES:
            fns = [partial(SEARCHES[method], root, fn, num_sims, generator=gen)]
            if peer is not None:
                fns.append(peer.search_fn(method, root, fn, num_sims))
            per_root_sim = num_sims * num_roots / 1e6
            timings = timed(fns, min_time, rounds)
            times = [(c / per_root_sim, w / per_root_sim) for c, w in timings]
            cells += [f"{c:.2f} ({w:.2f})" for c, w in times]
            if peer is not None:
                ratio = times[0][0] / times[1][0]
                cells += [f"{ratio:.2f}", "yes" if ratio <= 1 / 3 else "no"]
        lines.append(f"| {num_roots} | {num_sims} | {num_actions} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def mlp_section(min_time: float, rounds: int, gen: torch.Generator) -> list[str]:
    lines = [
        "",
        f"## 2-layer MLP (latent {LATENT}, hidden {LATENT}) on the CPU: searches per second",
        "",
        "Whole searches (a batch of B roots, S = 50) per second, network time included, from CPU",
        "time of the searching thread (wall-clock rate in parentheses). Higher is better.",
        "",
        "| B | S | A | pUCT searches/s | Gumbel searches/s | pUCT root-sims/s "
        "| Gumbel root-sims/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    torch.manual_seed(0)
    num_sims = 50
    for num_actions in (4, 18):
        net = MLP(num_actions).eval()
        for num_roots in (8, 64, 256):
            with torch.no_grad():
                latent = torch.randn(num_roots, LATENT)
                logits, value = net.predict(latent)
            root = Root(logits, value, latent)
            fns = [
                partial(SEARCHES[method], root, net.recurrent_fn, num_sims, generator=gen)
                for method in METHOD_NAMES
            ]
            (cpu_p, wall_p), (cpu_g, wall_g) = timed(fns, min_time, rounds)
            sims = num_roots * num_sims
            lines.append(
                f"| {num_roots} | {num_sims} | {num_actions} "
                f"| {1 / cpu_p:.1f} ({1 / wall_p:.1f}) | {1 / cpu_g:.1f} ({1 / wall_g:.1f}) "
                f"| {sims / cpu_p:,.0f} | {sims / cpu_g:,.0f} |"
            )
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the markdown report here")
    parser.add_argument(
        "--min-time", type=float, default=0.5, help="seconds per cell and implementation"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (best one counts)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: robust on shared cores)"
    )
    parser.add_argument(
        "--lightzero", metavar="DIR", help="unpacked LightZero (wheel or built source tree) to time"
    )
    parser.add_argument("--no-mlp", action="store_true", help="skip the 2-layer MLP section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer = LightZero(args.lightzero) if args.lightzero else None

    gen = torch.Generator().manual_seed(0)
    lines = [
        "# frugal.search speed",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Machine: {machine()}  ",
        f"Load average (1, 5, 15 min) at start: {load_average()} (other jobs share the cores; "
        f"each cell is the best of {args.rounds} rounds)",
        "",
    ]
    print("\n".join(lines), flush=True)
    lines += zero_cost_section(args.min_time, args.rounds, gen, peer)
    if not args.no_mlp:
        lines += mlp_section(args.min_time, args.rounds, gen)
    lines += ["", f"Load average at end: {load_average()}"]
    print(lines[-1])
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
