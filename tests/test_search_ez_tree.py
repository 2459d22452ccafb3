"""frugal.search.puct against EfficientZero's compiled tree (LightZero 0.2.0's `ez_tree`).

LightZero's pUCT search loop (`EfficientZeroMCTSCtree.search` in
lzero/mcts/tree_search/mcts_ctree.py) is driven here on a deterministic table model: Roots built
from the legal actions, `prepare_no_noise` with root value prefix 0, then per simulation
`batch_traverse`, the model on the selected (parent, action) pairs, `batch_backpropagate`.

- Rewards: ez_tree reads value prefixes. The model's per-step reward r is fed as the prefix
  (sum of r from the root along the path, in float64) and no node ever resets it (is_reset 0,
  an unbounded LSTM horizon), so ez_tree's true_reward = prefix(child) - prefix(parent) is r up to
  float32 rounding. Resetting every node instead (lstm_horizon_len 1) would give r exactly as the
  reward, but ez_tree's min-max update then sees prefix(node) - prefix(parent) as the node's
  reward all the same (it applies the reset after updating), which is not a per-step-reward
  search.
- Discount: ez_tree's one float32 discount_factor; frugal gets the same float32 value as a
  constant Step.discount.
- Ties: ez_tree breaks them with rand() after srand(microseconds) in every batch_traverse, and a
  node's first visit is always a tie of all its actions (the prior term is 0 at 0 parent visits).
  The ez_tree side therefore runs in a subprocess with LD_PRELOAD of a two-line library whose
  rand() returns 0: every tie goes to the first action, which is frugal's rule without a
  generator.
- Per-action Q: ez_tree exposes visit counts and root values only. Its tree is rebuilt from what
  batch_traverse returns (each new node's parent and action), and each root child's value is
  recomputed by ez_tree's backup rule (cbackpropagate); that rebuild must reproduce ez_tree's own
  visit counts and root values before its Q are used.

The ez_tree results of CASES are kept in tests/data/search_ez_tree_golden.json, so the golden
test runs everywhere; the live test runs where the unpacked wheel is (FRUGAL_LIGHTZERO_DIR, else
/tmp/lightzero) and a C compiler exists, and also checks the golden file is current. Rewrite it:

    FRUGAL_LIGHTZERO_DIR=DIR python tests/test_search_ez_tree.py --write-golden
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from frugal.search import PuctParams, Root, Step, puct

GOLDEN = Path(__file__).parent / "data" / "search_ez_tree_golden.json"
WHEEL_ENV = "FRUGAL_LIGHTZERO_DIR"
DEFAULT_WHEEL_DIR = "/tmp/lightzero"
NUM_STATES = 97
PARAMS = PuctParams(pb_c_init=1.25, pb_c_base=19652.0, value_delta_max=0.01)

# name, model seed, B, A, S, discount, fraction of masked root actions (case seed = model seed)
CASES = [
    ("one_root_two_actions", 1, 1, 2, 1, 0.95, 0.0),
    ("three_roots_masked", 2024, 3, 5, 24, 0.95, None),  # tests/test_search.py's golden case
    ("three_roots", 2024, 3, 5, 24, 0.95, 0.0),
    ("b4_a6_s50_masked", 3, 4, 6, 50, 0.997, 0.4),
    ("b8_a18_s50_masked", 4, 8, 18, 50, 0.997, 0.6),
    ("b8_a18_s50", 4, 8, 18, 50, 0.997, 0.0),
    ("b2_a4_s100", 5, 2, 4, 100, 0.9, 0.0),
    ("b5_a9_s16_masked", 6, 5, 9, 16, 0.5, 0.3),
    ("b6_a3_s37_masked", 7, 6, 3, 37, 0.95, 0.5),
    ("b16_a7_s30_masked", 8, 16, 7, 30, 0.997, 0.9),
]


# ----------------------------------------------------------------------------------------------
# The cases: a random table model (exact outputs at any batch size) and the roots


class TableModel:
    def __init__(self, seed: int, num_actions: int):
        rng = np.random.default_rng(seed)
        shape = (NUM_STATES, num_actions)
        self.next_state = rng.integers(0, NUM_STATES, shape)
        self.reward = rng.normal(size=shape).astype(np.float32)
        self.logits = (2.0 * rng.normal(size=shape)).astype(np.float32)
        self.value = rng.normal(size=NUM_STATES).astype(np.float32)

    def digest(self) -> str:
        """Hash of the tables: a golden file made from other draws is refused, not compared."""
        h = hashlib.sha256()
        for table in (self.next_state.astype(np.int64), self.reward, self.logits, self.value):
            h.update(table.tobytes())
        return h.hexdigest()[:16]


def case_inputs(case) -> tuple[TableModel, np.ndarray, np.ndarray, float]:
    """(model, states [B], invalid bool [B, A], discount as float32) of a case."""
    _, seed, num_roots, num_actions, _, discount, fraction = case
    model = TableModel(seed, num_actions)
    if fraction is None:  # the golden case of tests/test_search.py
        states = np.array([3, 41, 77])
        invalid = np.array([[False] * 5, [False, True, False, True, False], [True] * 4 + [False]])
    else:
        rng = np.random.default_rng(10_000 + seed)
        states = rng.integers(0, NUM_STATES, num_roots)
        invalid = rng.random((num_roots, num_actions)) < fraction
        for b in range(num_roots):  # every root keeps a legal action
            if invalid[b].all():
                invalid[b, rng.integers(num_actions)] = False
    return model, states, invalid, float(np.float32(discount))


# ----------------------------------------------------------------------------------------------
# frugal


def frugal_results(case) -> dict:
    model, states, invalid, discount = case_inputs(case)
    num_sims = case[4]
    next_state, reward, logits, value = (
        torch.from_numpy(x) for x in (model.next_state, model.reward, model.logits, model.value)
    )
    d = torch.full((len(states),), discount, dtype=torch.float64)

    def recurrent_fn(s, a):
        nxt = next_state[s, a]
        return Step(reward[s, a], d, logits[nxt], value[nxt]), nxt

    st = torch.from_numpy(states)
    out = puct(
        Root(logits[st], value[st], st), recurrent_fn, num_sims, params=PARAMS,
        invalid_actions=torch.from_numpy(invalid),
    )  # fmt: skip
    return {
        "visit_counts": out.visit_counts.tolist(),
        "action": out.action.tolist(),
        "root_value": out.root_value.double().tolist(),
        "qvalues": out.qvalues.double().tolist(),
    }


# ----------------------------------------------------------------------------------------------
# ez_tree (run in a subprocess: see the module docstring)


def load_ez_tree(directory: str):
    """LightZero's ez_tree extension loaded from its file (lzero itself is not importable
    without DI-engine), as benchmarks/search_speed.py loads it."""
    pattern = os.path.join(
        directory, "lzero", "mcts", "ctree", "ctree_efficientzero", "ez_tree.*.so"
    )
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"nothing matches {pattern}")
    spec = importlib.util.spec_from_file_location("ez_tree", paths[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ez_tree_results(ez, case) -> dict:
    """One case through LightZero's EfficientZero search loop, on the same model."""
    model, states, invalid, discount = case_inputs(case)
    num_sims = case[4]
    num_roots, num_actions = invalid.shape
    legal = [[a for a in range(num_actions) if not invalid[b, a]] for b in range(num_roots)]
    to_play = [-1] * num_roots
    roots = ez.Roots(num_roots, legal)
    roots.prepare_no_noise([0.0] * num_roots, model.logits[states].tolist(), to_play)
    minmax = ez.MinMaxStatsList(num_roots)
    minmax.set_delta(PARAMS.value_delta_max)
    # Per simulation s (0: the roots) and root b: the state and value prefix of node s, and the
    # tree as batch_traverse reports it: node s's parent (the simulation that made it) and action
    node_state, node_prefix = [states], [np.zeros(num_roots)]
    parent, action = [[-1] * num_roots], [[-1] * num_roots]
    for s in range(num_sims):
        results = ez.ResultsWrapper(num=num_roots)
        px, py, last_actions, next_to_play = ez.batch_traverse(
            roots, int(PARAMS.pb_c_base), PARAMS.pb_c_init, discount, minmax, results, to_play
        )
        assert list(py) == list(range(num_roots))
        acts = np.asarray(last_actions)
        par_state = np.array([node_state[x][b] for b, x in enumerate(px)])
        prefix = np.array([node_prefix[x][b] for b, x in enumerate(px)])
        prefix = prefix + model.reward[par_state, acts]
        nxt = model.next_state[par_state, acts]
        node_state.append(nxt)
        node_prefix.append(prefix)
        parent.append(list(px))
        action.append(acts.tolist())
        ez.batch_backpropagate(
            s + 1, discount, prefix.tolist(), model.value[nxt].tolist(),
            model.logits[nxt].tolist(), minmax, results, [0] * num_roots, next_to_play,
        )  # fmt: skip
    distributions, values = roots.get_distributions(), roots.get_values()

    out = {"visit_counts": [], "action": [], "root_value": [], "qvalues": []}
    for b in range(num_roots):
        visits = [0] * num_actions
        for a, n in zip(legal[b], distributions[b], strict=True):
            visits[a] = n
        rebuilt = _rebuild(b, num_sims, num_actions, parent, action, node_prefix, model,
                           node_state, discount)  # fmt: skip
        assert rebuilt["visits"] == visits, (case[0], b, rebuilt["visits"], visits)
        np.testing.assert_allclose(rebuilt["root_value"], values[b], rtol=1e-5, atol=1e-5)
        out["visit_counts"].append(visits)
        # EfficientZeroPolicy's deterministic action: argmax of the legal visit counts
        out["action"].append(legal[b][int(np.argmax(distributions[b]))])
        out["root_value"].append(float(values[b]))
        out["qvalues"].append(rebuilt["q"])
    return out


def _rebuild(b, num_sims, num_actions, parent, action, prefix, model, node_state, discount):
    """Root b's statistics by ez_tree's cbackpropagate on the tree batch_traverse reported: the
    new leaf starts from its network value, each node on the path adds the return and a visit,
    the return grows by true_reward + discount * return (true_reward = prefix - parent's
    prefix); the root starts at 1 visit and value 0 (CRoots::prepare). Returns root child visits,
    Q(root, a) = true_reward + discount * value(child) (0 where unvisited) and the root value."""
    n = num_sims + 1
    visits, value_sum = [0] * n, [0.0] * n
    visits[0] = 1
    for s in range(1, n):
        ret = float(model.value[node_state[s][b]])
        node = s
        while node != -1:
            value_sum[node] += ret
            visits[node] += 1
            if node != 0:
                up = parent[node][b]
                ret = (prefix[node][b] - prefix[up][b]) + discount * ret
            node = parent[node][b]
    child_visits, q = [0] * num_actions, [0.0] * num_actions
    for s in range(1, n):
        if parent[s][b] == 0:
            a = action[s][b]
            child_visits[a] = visits[s]
            q[a] = (prefix[s][b] - prefix[0][b]) + discount * value_sum[s] / visits[s]
    return {"visits": child_visits, "q": q, "root_value": value_sum[0] / visits[0]}


RAND_ZERO_C = "int rand(void) { return 0; }\nvoid srand(unsigned int seed) { (void)seed; }\n"


def ez_tree_in_subprocess(wheel_dir: str, workdir: str) -> dict:
    """Every case's ez_tree results, computed by this file run as a script under LD_PRELOAD of
    a rand() that returns 0 (ties to the first action)."""
    lib = os.path.join(workdir, "librandzero.so")
    source = os.path.join(workdir, "randzero.c")
    with open(source, "w") as f:
        f.write(RAND_ZERO_C)
    subprocess.run([_compiler(), "-shared", "-fPIC", "-o", lib, source], check=True)
    out = os.path.join(workdir, "ez_tree.json")
    env = dict(os.environ, LD_PRELOAD=lib, OMP_NUM_THREADS="1")
    subprocess.run(
        [sys.executable, __file__, "--ez-tree", wheel_dir, "--json", out], check=True, env=env
    )
    with open(out) as f:
        return json.load(f)


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def _wheel_dir() -> str | None:
    directory = os.environ.get(WHEEL_ENV, DEFAULT_WHEEL_DIR)
    pattern = os.path.join(
        directory, "lzero", "mcts", "ctree", "ctree_efficientzero", "ez_tree.*.so"
    )
    return directory if glob.glob(pattern) else None


def _version(directory: str) -> str:
    for metadata in glob.glob(os.path.join(directory, "*.dist-info", "METADATA")):
        with open(metadata) as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return "unknown"


# ----------------------------------------------------------------------------------------------
# Tests


def assert_agree(frugal: dict, ez: dict, name: str) -> None:
    assert frugal["visit_counts"] == ez["visit_counts"], name
    assert frugal["action"] == ez["action"], name
    # ez_tree computes in float32 (its value prefixes differ from r by a rounding)
    np.testing.assert_allclose(frugal["root_value"], ez["root_value"], rtol=2e-5, atol=2e-5,
                               err_msg=name)  # fmt: skip
    np.testing.assert_allclose(frugal["qvalues"], ez["qvalues"], rtol=2e-5, atol=2e-5,
                               err_msg=name)  # fmt: skip


def load_golden() -> dict:
    with open(GOLDEN) as f:
        return json.load(f)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_puct_matches_ez_tree_golden(case):
    golden = load_golden()
    entry = golden["cases"][case[0]]
    assert entry["case"] == list(case), "golden file made from other CASES: rewrite it"
    model, *_ = case_inputs(case)
    assert entry["model_digest"] == model.digest(), "numpy drew other tables than the golden's"
    assert_agree(frugal_results(case), entry["ez_tree"], case[0])


@pytest.fixture(scope="module")
def live_ez_tree(tmp_path_factory):
    wheel_dir = _wheel_dir()
    if wheel_dir is None:
        pytest.skip(f"no unpacked LightZero wheel ({WHEEL_ENV} or {DEFAULT_WHEEL_DIR})")
    if _compiler() is None:
        pytest.skip("no C compiler for the rand() replacement")
    return ez_tree_in_subprocess(wheel_dir, str(tmp_path_factory.mktemp("ez_tree")))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_puct_matches_ez_tree_live(case, live_ez_tree):
    ez = live_ez_tree[case[0]]
    assert_agree(frugal_results(case), ez, case[0])
    golden = load_golden()["cases"][case[0]]["ez_tree"]
    assert golden["visit_counts"] == ez["visit_counts"] and golden["action"] == ez["action"]
    np.testing.assert_allclose(golden["root_value"], ez["root_value"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(golden["qvalues"], ez["qvalues"], rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Script: the ez_tree side (in the LD_PRELOAD subprocess) and rewriting the golden file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ez-tree", metavar="DIR", help="run CASES through ez_tree from DIR")
    parser.add_argument("--json", help="where --ez-tree writes its results")
    parser.add_argument("--write-golden", action="store_true", help=f"rewrite {GOLDEN.name}")
    args = parser.parse_args()
    if args.ez_tree:
        ez = load_ez_tree(args.ez_tree)
        results = {case[0]: ez_tree_results(ez, case) for case in CASES}
        with open(args.json, "w") as f:
            json.dump(results, f)
        return
    if args.write_golden:
        wheel_dir = _wheel_dir()
        if wheel_dir is None:
            raise SystemExit(f"set {WHEEL_ENV} to an unpacked LightZero wheel")
        with tempfile.TemporaryDirectory() as workdir:
            results = ez_tree_in_subprocess(wheel_dir, workdir)
        golden = {
            "source": (
                f"LightZero {_version(wheel_dir)} ez_tree, driven by "
                "tests/test_search_ez_tree.py (ties to the first action)"
            ),
            "cases": {
                case[0]: {
                    "case": list(case),
                    "model_digest": case_inputs(case)[0].digest(),
                    "ez_tree": results[case[0]],
                }
                for case in CASES
            },
        }
        GOLDEN.parent.mkdir(exist_ok=True)
        with open(GOLDEN, "w") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
        print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
