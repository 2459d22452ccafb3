"""frugal.search against a slow, plainly written reference search (Python objects per node,
one root at a time) on random table models, with a constant discount and with a discount per
transition (some 0): visit counts, actions, Q and values must agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frugal.search import GumbelParams, Root, Step, gumbel, puct

# ----------------------------------------------------------------------------------------------
# A random table model: exact outputs whatever the batch size (pure indexing, no matmul).


class TableModel:
    """discount: one constant for every transition, or "table": a discount per (state, action)
    drawn from [0.5, 1], a tenth of them 0 (terminal transitions)."""

    def __init__(self, seed: int, num_actions: int, discount, num_states: int = 97):
        rng = np.random.default_rng(seed)
        self.num_actions = num_actions
        self.next_state = torch.from_numpy(rng.integers(0, num_states, (num_states, num_actions)))
        self.reward = torch.from_numpy(rng.normal(size=(num_states, num_actions))).float()
        self.logits = torch.from_numpy(2.0 * rng.normal(size=(num_states, num_actions))).float()
        self.value = torch.from_numpy(rng.normal(size=num_states)).float()
        shape = (num_states, num_actions)
        if discount == "table":
            table = rng.uniform(0.5, 1.0, shape) * (rng.random(shape) >= 0.1)
        else:
            table = np.full(shape, discount)
        self.discount = torch.from_numpy(table)  # float64: used as it is
        self.calls = 0

    def root(self, states: torch.Tensor) -> Root:
        return Root(self.logits[states], self.value[states], states)

    def recurrent_fn(self, states: torch.Tensor, actions: torch.Tensor):
        self.calls += 1
        nxt = self.next_state[states, actions]
        d = self.discount[states, actions]
        return Step(self.reward[states, actions], d, self.logits[nxt], self.value[nxt]), nxt

    def step1(self, state: int, action: int) -> tuple[int, float, float, list[float], float]:
        """One transition for the reference: (next state, reward, discount, logits, value)."""
        nxt = int(self.next_state[state, action])
        return (
            nxt,
            float(self.reward[state, action]),
            float(self.discount[state, action]),
            [float(x) for x in self.logits[nxt]],
            float(self.value[nxt]),
        )


# ----------------------------------------------------------------------------------------------
# The reference: a node is an object, the tree is walked with plain loops.


class Node:
    """reward and discount: those of the transition into the node (0 and 1 at the root)."""

    def __init__(self, state: int, logits: list[float], value: float, reward: float,
                 discount: float = 1.0):  # fmt: skip
        self.state = state
        self.logits = logits
        self.raw_value = value
        self.reward = reward
        self.discount = discount
        self.children: dict[int, Node] = {}
        self.visit_count = 1  # the network value counts as the node's first visit
        self.value_sum = value
        self.prior: list[float] = softmax(logits)

    def value(self) -> float:
        return self.value_sum / self.visit_count

    def child_visits(self, a: int) -> int:
        return self.children[a].visit_count if a in self.children else 0


def softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    es = [math.exp(x - top) for x in xs]
    total = sum(es)
    return [e / total for e in es]


def q_of(node: Node, a: int) -> float:
    child = node.children[a]
    return child.reward + child.discount * child.value()


def backup(path: list[Node], minmax: list[float] | None) -> None:
    """path[-1] is the new leaf (already holding its own value as first visit). Each node's
    return reaches its parent through the node's own reward and discount. The min-max statistics
    see reward + discount * value of every node on the path; the root, which has no edge of its
    own, is seen through the discount of the path's first edge."""
    ret = path[-1].value_sum
    if minmax is not None:
        update_minmax(minmax, path[-1].reward + path[-1].discount * path[-1].value())
    for i in range(len(path) - 2, -1, -1):
        ret = path[i + 1].reward + path[i + 1].discount * ret
        path[i].value_sum += ret
        path[i].visit_count += 1
        if minmax is not None:
            d = path[i].discount if i > 0 else path[1].discount
            update_minmax(minmax, path[i].reward + d * path[i].value())


def update_minmax(minmax: list[float], x: float) -> None:
    minmax[0] = min(minmax[0], x)
    minmax[1] = max(minmax[1], x)


def root_summary(root: Node, num_actions: int):
    visits = [root.child_visits(a) for a in range(num_actions)]
    qs = [q_of(root, a) if a in root.children else 0.0 for a in range(num_actions)]
    return visits, qs, root.value()


# --- pUCT, EfficientZero ctree semantics ---


def puct_reference(model, state, valid, num_sims, pb_c_init=1.25, pb_c_base=19652.0,
                   delta_max=0.01):  # fmt: skip
    num_actions = model.num_actions
    logits = [float(x) for x in model.logits[state]]
    root = Node(state, logits, float(model.value[state]), 0.0)
    root.value_sum = 0.0  # EfficientZero: the root's first visit counts, its network value not
    masked = [x if valid[a] else -math.inf for a, x in enumerate(logits)]
    root.prior = softmax(masked)
    minmax = [math.inf, -math.inf]

    def normalized(q):
        delta = minmax[1] - minmax[0]
        if delta > 0:
            q = (q - minmax[0]) / max(delta, delta_max)
        return min(max(q, 0.0), 1.0)

    for _ in range(num_sims):
        node, path, parent_q, is_root = root, [root], 0.0, True
        while True:
            visited = [a for a in range(num_actions) if a in node.children]
            total_q = sum(q_of(node, a) for a in visited)
            if is_root and visited:
                mean_q = total_q / len(visited)
            else:
                mean_q = (parent_q + total_q) / (len(visited) + 1)
            n_parent = sum(node.child_visits(a) for a in range(num_actions))
            pb_c = math.log((n_parent + pb_c_base + 1) / pb_c_base) + pb_c_init
            best, ties = -math.inf, []
            for a in range(num_actions):
                if is_root and not valid[a]:
                    continue
                q = q_of(node, a) if a in node.children else mean_q
                score = pb_c * (math.sqrt(n_parent) / (node.child_visits(a) + 1)) * node.prior[a]
                score += normalized(q)
                if score > best:
                    best, ties = score, [a]
                elif score >= best - 1e-6:
                    ties.append(a)
            a = ties[0]
            if a not in node.children:
                nxt, r, d, lg, v = model.step1(node.state, a)
                leaf = Node(nxt, lg, v, r, d)
                node.children[a] = leaf
                path.append(leaf)
                break
            node, parent_q, is_root = node.children[a], mean_q, False
            path.append(node)
        backup(path, minmax)

    visits, qs, value = root_summary(root, num_actions)
    best = max(visits[a] for a in range(num_actions) if valid[a])
    action = next(a for a in range(num_actions) if valid[a] and visits[a] == best)
    weights = [n / num_sims for n in visits]
    return visits, qs, value, action, weights


# --- Gumbel MuZero, mctx semantics ---


def halving_schedule(m: int, num_sims: int) -> list[int]:
    """Visit count required of the chosen root action at each simulation."""
    if m <= 1:
        return list(range(num_sims))
    phases = math.ceil(math.log2(m))
    out, counts, alive = [], [0] * m, m
    while len(out) < num_sims:
        for _ in range(max(1, int(num_sims / (phases * alive)))):
            out += counts[:alive]
            counts = [c + 1 for c in counts[:alive]] + counts[alive:]
        alive = max(2, alive // 2)
    return out[:num_sims]


def sigma_of(node, valid, c_visit, c_scale):
    """{action: sigma(rescaled completed Q)} over the valid actions."""
    probs = [max(p, np.finfo(np.float64).tiny) for p in softmax(node.logits)]
    visited = [a for a in range(len(node.logits)) if a in node.children]
    counts = [node.child_visits(a) for a in range(len(node.logits))]
    n_sum = sum(counts)
    if visited:
        weighted = sum(probs[a] * q_of(node, a) for a in visited)
        weighted /= sum(probs[a] for a in visited)
    else:
        weighted = 0.0
    mixed = (node.raw_value + n_sum * weighted) / (n_sum + 1)
    completed = {a: q_of(node, a) if a in node.children else mixed for a in valid}
    lo, hi = min(completed.values()), max(completed.values())
    scale = (c_visit + max(counts)) * c_scale
    return {a: scale * (q - lo) / max(hi - lo, 1e-8) for a, q in completed.items()}


def gumbel_reference(model, state, valid, num_sims, gumbel, max_considered=16, c_visit=50.0,
                     c_scale=0.1):  # fmt: skip
    num_actions = model.num_actions
    logits = [float(x) if valid[a] else -math.inf for a, x in enumerate(model.logits[state])]
    root = Node(state, logits, float(model.value[state]), 0.0)
    valid_actions = [a for a in range(num_actions) if valid[a]]
    schedule = halving_schedule(min(max_considered, len(valid_actions)), num_sims)
    top = max(logits)

    def root_pick(required_visits):
        sigma = sigma_of(root, valid_actions, c_visit, c_scale)
        best, choice = -math.inf, None
        for a in valid_actions:
            if root.child_visits(a) != required_visits:
                continue
            score = max(-1e9, gumbel[a] + (logits[a] - top) + sigma[a])
            if score > best:
                best, choice = score, a
        return choice

    for s in range(num_sims):
        node, path = root, [root]
        a = root_pick(schedule[s])
        while a in node.children:
            node = node.children[a]
            path.append(node)
            all_actions = list(range(num_actions))
            sigma = sigma_of(node, all_actions, c_visit, c_scale)
            improved = softmax([node.logits[b] + sigma[b] for b in all_actions])
            n_sum = sum(node.child_visits(b) for b in all_actions)
            scores = [improved[b] - node.child_visits(b) / (1 + n_sum) for b in all_actions]
            a = scores.index(max(scores))
        nxt, r, d, lg, v = model.step1(node.state, a)
        node.children[a] = Node(nxt, lg, v, r, d)
        path.append(node.children[a])
        backup(path, None)

    visits, qs, value = root_summary(root, num_actions)
    action = root_pick(max(visits))
    sigma = sigma_of(root, valid_actions, c_visit, c_scale)
    improved = softmax([logits[a] + sigma[a] for a in valid_actions])
    weights = [0.0] * num_actions
    for a, w in zip(valid_actions, improved, strict=True):
        weights[a] = w
    return visits, qs, value, action, weights


# ----------------------------------------------------------------------------------------------


def random_invalid(rng, num_roots, num_actions, with_invalid):
    invalid = np.zeros((num_roots, num_actions), dtype=bool)
    if with_invalid:
        invalid = rng.random((num_roots, num_actions)) < 0.4
        for b in range(num_roots):  # keep at least one valid action
            if invalid[b].all():
                invalid[b, rng.integers(num_actions)] = False
    return invalid


CASES = [  # (B, A, S, seed)
    (1, 2, 1, 0),
    (3, 3, 7, 1),
    (5, 4, 16, 2),
    (4, 6, 32, 3),
    (6, 18, 50, 4),
    (2, 5, 100, 5),
]


@pytest.mark.parametrize("discount", [0.9, "table"])
@pytest.mark.parametrize("with_invalid", [False, True])
@pytest.mark.parametrize(("B", "A", "S", "seed"), CASES)
def test_puct_matches_reference(B, A, S, seed, with_invalid, discount):
    model = TableModel(seed, A, discount)
    rng = np.random.default_rng(100 + seed)
    states = torch.from_numpy(rng.integers(0, 97, B))
    invalid = random_invalid(rng, B, A, with_invalid)
    out = puct(model.root(states), model.recurrent_fn, S, invalid_actions=torch.from_numpy(invalid))
    assert model.calls == S
    for b in range(B):
        visits, qs, value, action, weights = puct_reference(model, int(states[b]), ~invalid[b], S)
        assert out.visit_counts[b].tolist() == visits
        assert int(out.action[b]) == action
        np.testing.assert_allclose(out.qvalues[b].numpy(), qs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(float(out.root_value[b]), value, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.action_weights[b].numpy(), weights, rtol=1e-6)


@pytest.mark.parametrize("discount", [0.95, "table"])
@pytest.mark.parametrize("with_invalid", [False, True])
@pytest.mark.parametrize("max_considered", [16, 4, 2, 1])
@pytest.mark.parametrize(("B", "A", "S", "seed"), CASES)
def test_gumbel_matches_reference(B, A, S, seed, max_considered, with_invalid, discount):
    model = TableModel(seed, A, discount)
    rng = np.random.default_rng(200 + seed)
    states = torch.from_numpy(rng.integers(0, 97, B))
    invalid = random_invalid(rng, B, A, with_invalid)
    noise = rng.gumbel(size=(B, A))
    out = gumbel(
        model.root(states), model.recurrent_fn, S, invalid_actions=torch.from_numpy(invalid),
        gumbel_noise=torch.from_numpy(noise),
        params=GumbelParams(max_considered_actions=max_considered),
    )  # fmt: skip
    assert model.calls == S
    for b in range(B):
        visits, qs, value, action, weights = gumbel_reference(
            model, int(states[b]), ~invalid[b], S, noise[b], max_considered
        )
        assert out.visit_counts[b].tolist() == visits
        assert int(out.action[b]) == action
        np.testing.assert_allclose(out.qvalues[b].numpy(), qs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(float(out.root_value[b]), value, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.action_weights[b].numpy(), weights, rtol=1e-5, atol=1e-7)


def test_reference_schedule_is_the_documented_one():
    assert halving_schedule(16, 50) == [0] * 16 + [1] * 8 + [2] * 4 + [3] * 4 + [4] * 4 + [
        v for v in range(5, 11) for _ in range(2)
    ] + [11, 11]
