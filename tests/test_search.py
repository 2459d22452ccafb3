"""frugal.search: hand-computed trees, the sequential-halving schedule, API invariants, golden
values and a continuous-control (sampled candidates) toy."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

import frugal.search._engine.driver as driver
from frugal.search import GumbelParams, PuctParams, Root, SearchOutput, Step, gumbel, puct
from frugal.search._engine.schedule import considered_visits

SEARCHES = {"gumbel": gumbel, "puct": puct}


def constant(discount: float, n: int) -> torch.Tensor:
    """Step.discount [n] of a constant discount, in float64 (used as it is)."""
    return torch.full((n,), discount, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Models


class TableModel:
    """Random tables indexed by (state, action): exact outputs at any batch size."""

    def __init__(self, seed: int, num_actions: int, num_states: int = 97, discount=0.997):
        rng = np.random.default_rng(seed)
        self.discount = discount
        self.next_state = torch.from_numpy(rng.integers(0, num_states, (num_states, num_actions)))
        self.reward = torch.from_numpy(rng.normal(size=(num_states, num_actions))).float()
        self.logits = torch.from_numpy(2.0 * rng.normal(size=(num_states, num_actions))).float()
        self.value = torch.from_numpy(rng.normal(size=num_states)).float()
        self.calls: list[tuple[int, ...]] = []

    def root(self, states: torch.Tensor) -> Root:
        return Root(self.logits[states], self.value[states], states)

    def recurrent_fn(self, states: torch.Tensor, actions: torch.Tensor):
        self.calls.append(tuple(states.shape))
        nxt = self.next_state[states, actions]
        d = constant(self.discount, len(states))
        return Step(self.reward[states, actions], d, self.logits[nxt], self.value[nxt]), nxt


def action_reward_model(rewards: list[float], num_actions: int, discount: float):
    """reward r(a) = rewards[a] everywhere, value 0, uniform logits; embedding = depth."""
    table = torch.tensor(rewards)

    def recurrent_fn(depth, action):
        n = depth.shape[0]
        step = Step(
            table[action], constant(discount, n), torch.zeros(n, num_actions), torch.zeros(n)
        )
        return step, depth + 1

    return recurrent_fn


def states(seed: int, n: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 97, n))


def assert_same(a: SearchOutput, b: SearchOutput) -> None:
    for field in ("action", "action_weights", "visit_counts", "root_value", "qvalues"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


# ----------------------------------------------------------------------------------------------
# Hand-computed trees


def test_puct_hand_computed_tree():
    """A = 2, r(a) = (1, 0), every value 0, uniform prior, discount 0.5, S = 3.

    sim 1: nothing visited, prior terms 0, all tie -> action 0; minmax sees Q = 1 and 0.5 V(root)
      = 0.25. sim 2: Q(0) = 1 normalises to 1, unvisited 1 scores with the root's mean Q = 1 and
      a larger prior term -> action 1 (Q = 0). sim 3: Q = (1, 0), equal prior terms -> action 0,
      then in child 0 (mean Q (0.5 + 0) / 1, all tie) -> its action 0: return 1 + 0.5 * 1 = 1.5.
    root value (0 + 1 + 0 + 1.5) / 4; Q(0) = 1 + 0.5 * (0 + 1) / 2.
    """
    root = Root(torch.zeros(1, 2), torch.zeros(1), torch.zeros(1))
    out = puct(root, action_reward_model([1.0, 0.0], 2, 0.5), 3)
    assert out.visit_counts.tolist() == [[2, 1]]
    assert out.action.tolist() == [0]
    assert out.root_value.tolist() == [0.625]
    assert out.qvalues.tolist() == [[1.25, 0.0]]
    torch.testing.assert_close(out.action_weights, torch.tensor([[2 / 3, 1 / 3]]))


def test_gumbel_hand_computed_tree():
    """A = 3, r(a) = (1, 0, 0.5), values 0, logits 0, g = (0.3, 0.1, 0.2), discount 0.5, S = 4.

    Schedule (m = 3, S = 4): 0, 0, 0, 1. sims 1-3 visit the actions in g order 0, 2, 1 (sigma of
    the unvisited ones is equal). sim 4: all have 1 visit, completed Q = (1, 0, 0.5) -> sigma =
    5.1 * (1, 0, 0.5), g + sigma is largest for 0; below, child 0 has nothing visited, improved
    policy uniform -> action 0, return 1 + 0.5 * 1 = 1.5. Root value (0 + 1 + 0.5 + 0 + 1.5) / 5.
    Final Q = (1 + 0.5 * 0.5, 0, 0.5), max N = 2 -> sigma = 5.2 * (1, 0, 0.4).
    """
    root = Root(torch.zeros(1, 3), torch.zeros(1), torch.zeros(1))
    noise = torch.tensor([[0.3, 0.1, 0.2]])
    out = gumbel(root, action_reward_model([1.0, 0.0, 0.5], 3, 0.5), 4, gumbel_noise=noise)
    assert out.visit_counts.tolist() == [[2, 1, 1]]
    assert out.action.tolist() == [0]
    torch.testing.assert_close(out.root_value, torch.tensor([0.6]))
    torch.testing.assert_close(out.qvalues, torch.tensor([[1.25, 0.0, 0.5]]))
    torch.testing.assert_close(out.action_weights, torch.softmax(torch.tensor([[5.2, 0, 2.08]]), 1))


def test_gumbel_tree_rescale_hand_computed_tree():
    """As above but v(root) = -2, so the tree's min-max range reaches below the root's Q.

    Min-max (pUCT's: every Q on the backed-up path and discount * the root's mean value): sim 1
    sees Q(0) = 1 and 0.5 * (-2 + 1) / 2 = -0.25; sims 2-3 add 0.5, 0 and values inside; sim 4
    (action 0, then 0 in child 0) sees 1, Q(0) = 1 + 0.5 * 1 / 2 = 1.25 and 0.5 * 0.2. Final
    range [-0.25, 1.25]: Q = (1.25, 0, 0.5) rescale to (1, 1/6, 1/2), max N = 2 -> sigma =
    5.2 * that. mctx's node rescale gives (1, 0, 0.4) instead.
    """
    root = Root(torch.zeros(1, 3), torch.tensor([-2.0]), torch.zeros(1))
    model = action_reward_model([1.0, 0.0, 0.5], 3, 0.5)
    noise = torch.tensor([[0.3, 0.1, 0.2]])
    outs = {
        rescale: gumbel(root, model, 4, params=GumbelParams(rescale=rescale), gumbel_noise=noise)
        for rescale in ("tree", "node")
    }
    for out in outs.values():
        assert out.visit_counts.tolist() == [[2, 1, 1]]
        assert out.action.tolist() == [0]
        torch.testing.assert_close(out.root_value, torch.tensor([0.2]))
        torch.testing.assert_close(out.qvalues, torch.tensor([[1.25, 0.0, 0.5]]))
    tree_sigma = 5.2 * torch.tensor([[1.0, 1 / 6, 0.5]])
    torch.testing.assert_close(outs["tree"].action_weights, torch.softmax(tree_sigma, 1))
    node_sigma = torch.tensor([[5.2, 0.0, 2.08]])
    torch.testing.assert_close(outs["node"].action_weights, torch.softmax(node_sigma, 1))


def test_terminal_discount_cuts_the_backup():
    """A = 2, r(a) = (1, 0), d(a) = (0, 0.5): action 0 ends the episode. Every value 2, uniform
    prior, v(root) = 0, pUCT, S = 3.

    sim 1: all tie -> action 0, Q(0) = 1 + 0 * 2 = 1. sim 2: Q(0) normalises to 1, unvisited 1
      scores with the root's mean Q = 1 and a larger prior term -> action 1, Q(1) = 0 + 0.5 * 2.
    sim 3: Q = (1, 1), visits (1, 1): tie -> action 0, then below it (all tie) action 0 again:
      the new node's return 1 + 0 * 2 reaches child 0, whose Q stays 1 + 0 * (2 + 1) / 2 = 1, and
      the root gets 1 + 0 * 1. Root value (0 + 1 + 1 + 1) / 4.
    """
    rewards, discounts = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5], dtype=torch.float64)

    def recurrent_fn(depth, action):
        n = depth.shape[0]
        step = Step(rewards[action], discounts[action], torch.zeros(n, 2), torch.full((n,), 2.0))
        return step, depth + 1

    root = Root(torch.zeros(1, 2), torch.zeros(1), torch.zeros(1))
    out = puct(root, recurrent_fn, 3)
    assert out.visit_counts.tolist() == [[2, 1]]
    assert out.qvalues.tolist() == [[1.0, 1.0]]
    assert out.root_value.tolist() == [0.75]


def test_discount_dtypes():
    """A float64 discount is used as it is, a float32 one as its float32 value: 0.9 as float64
    and as float32 give different Q, and float32 0.9 widened to float64 gives the float32 Q."""
    model = TableModel(23, 4, discount=0.9)
    root = model.root(states(15, 5))

    def with_dtype(dtype):
        def fn(emb, actions):
            step, nxt = model.recurrent_fn(emb, actions)
            d = step.discount.to(dtype)
            return Step(step.reward, d, step.prior_logits, step.value), nxt

        return fn

    wide = puct(root, with_dtype(torch.float64), 20)
    narrow = puct(root, with_dtype(torch.float32), 20)
    half = puct(root, with_dtype(torch.bfloat16), 20)
    assert not torch.equal(wide.qvalues, narrow.qvalues)

    def widened(emb, actions):
        step, nxt = model.recurrent_fn(emb, actions)
        d = step.discount.float().double()
        return Step(step.reward, d, step.prior_logits, step.value), nxt

    assert_same(narrow, puct(root, widened, 20))
    assert half.visit_counts.sum().item() == 5 * 20


def test_root_value_and_the_roots_first_visit():
    """One simulation. Gumbel (mctx): the root's network value is its first visit, root value =
    (v_root + r + discount * v_child) / 2. pUCT (EfficientZero's ctree): the first visit counts
    with value 0, root value = (0 + r + discount * v_child) / 2."""
    root = Root(torch.zeros(1, 2), torch.tensor([3.0]), torch.zeros(1))

    def recurrent_fn(emb, action):
        step = Step(torch.tensor([1.0]), constant(0.5, 1), torch.zeros(1, 2), torch.tensor([2.0]))
        return step, emb

    for search, root_part in ((gumbel, 3.0), (puct, 0.0)):
        out = search(root, recurrent_fn, 1)
        assert out.root_value.tolist() == [(root_part + 1.0 + 0.5 * 2.0) / 2]
        assert out.qvalues[0, int(out.action)].item() == 2.0
        assert out.visit_counts.sum().item() == 1


# ----------------------------------------------------------------------------------------------
# Sequential halving


def test_schedule_m16_s50():
    seq = considered_visits(16, 50)
    expected = [0] * 16 + [1] * 8 + [2] * 4 + [3] * 4 + [4] * 4
    expected += [v for v in range(5, 11) for _ in range(2)] + [11, 11]
    assert list(seq) == expected  # 16 x 1, 8 x 1, 4 x 3, 2 x 6, then the last 2 simulations


@pytest.mark.parametrize(
    ("m", "S", "expected"),
    [
        (1, 5, (0, 1, 2, 3, 4)),
        (2, 6, (0, 0, 1, 1, 2, 2)),
        (2, 3, (0, 0, 1)),
        (3, 7, (0, 0, 0, 1, 1, 2, 2)),
        (4, 10, (0, 0, 0, 0, 1, 1, 2, 2, 3, 3)),
        (4, 2, (0, 0)),
        (16, 0, ()),
    ],
)
def test_schedule_small(m, S, expected):
    assert considered_visits(m, S) == expected


def test_gumbel_visit_pattern_m16_s50():
    model = TableModel(3, 20)
    out = gumbel(model.root(states(0, 4)), model.recurrent_fn, 50)
    for row in out.visit_counts.tolist():
        assert sorted(row, reverse=True) == [12, 12, 5, 5, 2, 2, 2, 2] + [1] * 8 + [0] * 4


def test_gumbel_considered_count_comes_from_valid_actions():
    """A = 16 with 12 invalid: m = 4 (not min(16, S)): 4 x 6, 2 x 12, + 2 -> (19, 19, 6, 6)."""
    model = TableModel(4, 16)
    invalid = torch.ones(3, 16, dtype=torch.bool)
    invalid[:, [1, 5, 9, 14]] = False
    out = gumbel(model.root(states(1, 3)), model.recurrent_fn, 50, invalid_actions=invalid)
    for row in out.visit_counts.tolist():
        assert sorted(row, reverse=True)[:4] == [19, 19, 6, 6]
    assert (out.visit_counts[invalid] == 0).all()


@pytest.mark.parametrize(("max_considered", "expected"), [(1, [10, 0]), (2, [5, 5])])
def test_gumbel_small_m(max_considered, expected):
    model = TableModel(5, 6)
    invalid = torch.tensor([[True, False, True, True, False, True]])
    out = gumbel(
        model.root(states(2, 1)), model.recurrent_fn, 10, invalid_actions=invalid,
        params=GumbelParams(max_considered_actions=max_considered),
    )  # fmt: skip
    assert sorted(out.visit_counts[0, [1, 4]].tolist(), reverse=True) == expected


# ----------------------------------------------------------------------------------------------
# Invariants


@pytest.mark.parametrize("method", ["gumbel", "puct"])
@pytest.mark.parametrize(("B", "A", "S"), [(1, 2, 1), (5, 4, 16), (7, 18, 50), (3, 6, 100)])
def test_visits_sum_to_S_and_recurrent_fn_called_S_times(method, B, A, S):
    model = TableModel(B * A + S, A)
    out = SEARCHES[method](model.root(states(S, B)), model.recurrent_fn, S)
    assert model.calls == [(B,)] * S
    assert out.visit_counts.sum(1).tolist() == [S] * B
    assert out.visit_counts.dtype == torch.int64 and out.action.dtype == torch.int64
    assert out.action_weights.shape == (B, A) and out.qvalues.shape == (B, A)
    torch.testing.assert_close(out.action_weights.sum(1), torch.ones(B))


@pytest.mark.parametrize("method", ["gumbel", "puct"])
def test_invalid_actions_never_visited(method):
    model = TableModel(11, 9)
    gen = torch.Generator().manual_seed(0)
    invalid = torch.rand(16, 9, generator=gen) < 0.6
    invalid[:, 4] = False
    kw = {"params": PuctParams(dirichlet_fraction=0.25)} if method == "puct" else {}
    out = SEARCHES[method](
        model.root(states(3, 16)), model.recurrent_fn, 60, invalid_actions=invalid,
        generator=gen, **kw,
    )  # fmt: skip
    assert (out.visit_counts[invalid] == 0).all()
    assert (out.action_weights[invalid] == 0).all()
    assert not invalid[torch.arange(16), out.action].any()
    assert out.visit_counts.sum().item() == 16 * 60


@pytest.mark.parametrize("method", ["gumbel", "puct"])
def test_batch_elements_are_independent(method):
    model = TableModel(12, 7)
    roots = states(4, 6)
    invalid = torch.rand(6, 7, generator=torch.Generator().manual_seed(1)) < 0.3
    invalid[:, 0] = False
    noise = -torch.log(-torch.log(torch.rand(6, 7, generator=torch.Generator().manual_seed(2))))
    search = SEARCHES[method]
    noise_kw = (lambda g: {"gumbel_noise": g}) if method == "gumbel" else (lambda g: {})
    kw = dict(invalid_actions=invalid, **noise_kw(noise))
    batch = search(model.root(roots), model.recurrent_fn, 40, **kw)
    for b in range(6):
        kw_b = dict(invalid_actions=invalid[b : b + 1], **noise_kw(noise[b : b + 1]))
        alone = search(model.root(roots[b : b + 1]), model.recurrent_fn, 40, **kw_b)
        for field in ("action", "action_weights", "visit_counts", "root_value", "qvalues"):
            assert torch.equal(getattr(batch, field)[b : b + 1], getattr(alone, field)), field


def test_gumbel_scale_zero_is_deterministic():
    model = TableModel(13, 5)
    root = model.root(states(5, 8))
    params = GumbelParams(gumbel_scale=0.0)
    a = gumbel(root, model.recurrent_fn, 20, params=params, generator=torch.Generator())
    b = gumbel(root, model.recurrent_fn, 20, params=params)
    assert_same(a, b)
    zero = gumbel(root, model.recurrent_fn, 20, gumbel_noise=torch.zeros(8, 5))
    assert_same(a, zero)


def test_gumbel_noise_is_fresh_and_reproducible():
    """S = 0 is Gumbel-max sampling from the prior: fresh draws on every call (two calls with one
    generator differ), the right distribution, and the same draws from the same seed."""
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    root = Root(probs.log().expand(4000, 4).clone(), torch.zeros(4000), torch.zeros(4000))
    gen = torch.Generator().manual_seed(0)
    first = gumbel(root, None, 0, generator=gen).action
    second = gumbel(root, None, 0, generator=gen).action
    assert not torch.equal(first, second)
    freq = torch.bincount(torch.cat([first, second]), minlength=4).float() / 8000
    torch.testing.assert_close(freq, probs, atol=0.02, rtol=0)
    again = gumbel(root, None, 0, generator=torch.Generator().manual_seed(0)).action
    assert torch.equal(first, again)


def test_gumbel_improved_policy_matches_formula():
    """action_weights == softmax(logits + sigma(completed Q)) recomputed from the outputs."""
    model = TableModel(14, 6, discount=0.9)
    roots = states(6, 10)
    invalid = torch.rand(10, 6, generator=torch.Generator().manual_seed(3)) < 0.3
    invalid[:, 2] = False
    root = model.root(roots)
    out = gumbel(root, model.recurrent_fn, 12, invalid_actions=invalid)
    logits = root.prior_logits.double().masked_fill(invalid, -math.inf)
    n = out.visit_counts.double()
    q = out.qvalues.double()
    visited = n > 0
    pi = torch.softmax(logits, 1)
    weighted = (pi * q * visited).sum(1) / (pi * visited).sum(1)
    mixed = (root.value.double() + n.sum(1) * weighted) / (1 + n.sum(1))
    completed = torch.where(visited, q, mixed[:, None])
    lo = completed.masked_fill(invalid, math.inf).min(1, keepdim=True).values
    hi = completed.masked_fill(invalid, -math.inf).max(1, keepdim=True).values
    rescaled = (completed - lo) / (hi - lo).clamp(min=1e-8)
    sigma = (50.0 + n.max(1, keepdim=True).values) * 0.1 * rescaled
    expected = torch.softmax(logits + sigma, 1).float()
    torch.testing.assert_close(out.action_weights, expected, rtol=1e-5, atol=1e-7)
    # the action is the best g + logits + sigma among the most visited (here: noise unknown, so
    # at least check it is among the most visited)
    most = out.visit_counts.max(1, keepdim=True).values
    assert (out.visit_counts.gather(1, out.action[:, None]) == most).all()


def test_puct_action_weights_are_visit_distribution():
    model = TableModel(15, 5)
    out = puct(model.root(states(7, 4)), model.recurrent_fn, 30)
    torch.testing.assert_close(out.action_weights, out.visit_counts.float() / 30)
    assert torch.equal(out.action, out.visit_counts.argmax(1))


def test_puct_random_tie_breaks():
    """Zero model, uniform prior: the first simulation's choice is a tie of all actions. With a
    generator it is uniform over them; without one it is the first index."""
    root = Root(torch.zeros(4000, 4), torch.zeros(4000), torch.zeros(4000))
    fn = action_reward_model([0.0] * 4, 4, 0.997)
    gen = torch.Generator().manual_seed(0)
    out = puct(root, fn, 1, generator=gen)
    freq = out.visit_counts.sum(0).float() / 4000
    torch.testing.assert_close(freq, torch.full((4,), 0.25), atol=0.03, rtol=0)
    first = puct(root, fn, 1)
    assert (first.visit_counts[:, 0] == 1).all()
    again = puct(root, fn, 1, generator=torch.Generator().manual_seed(0))
    assert_same(out, again)


def test_puct_dirichlet_noise():
    model = TableModel(16, 6)
    root = model.root(states(8, 32))
    plain = puct(root, model.recurrent_fn, 25)
    kw = dict(params=PuctParams(dirichlet_fraction=0.25, dirichlet_alpha=0.3))
    noisy = puct(root, model.recurrent_fn, 25, generator=torch.Generator().manual_seed(1), **kw)
    same = puct(root, model.recurrent_fn, 25, generator=torch.Generator().manual_seed(1), **kw)
    assert_same(noisy, same)
    assert not torch.equal(plain.visit_counts, noisy.visit_counts)
    invalid = torch.zeros(32, 6, dtype=torch.bool)
    invalid[:, 3:] = True
    masked = puct(root, model.recurrent_fn, 25, generator=torch.Generator(), **kw,
                  invalid_actions=invalid)  # fmt: skip
    assert (masked.visit_counts[:, 3:] == 0).all()


def test_zero_simulations():
    model = TableModel(17, 4)
    root = model.root(states(9, 5))
    noise = torch.randn(5, 4)
    out = gumbel(root, model.recurrent_fn, 0, gumbel_noise=noise)
    assert torch.equal(out.action, (noise + root.prior_logits).argmax(1))
    assert (out.visit_counts == 0).all()
    torch.testing.assert_close(out.root_value, root.value)
    assert model.calls == []


# ----------------------------------------------------------------------------------------------
# Embeddings: nests, device path, dtypes


class NestedTable(TableModel):
    """Same model, embedding = {"s": (state, float copy of state), "extra": [B, 3] bool}."""

    def nested_root(self, st):
        r = self.root(st)
        return Root(r.prior_logits, r.value, self.wrap(st))

    def wrap(self, st):
        return {"s": (st, st.double()[:, None]), "extra": (st[:, None] % 2 == 0).expand(-1, 3)}

    def nested_fn(self, emb, actions):
        st = emb["s"][0]
        assert torch.equal(emb["s"][1][:, 0], st.double())
        assert torch.equal(emb["extra"], (st[:, None] % 2 == 0).expand(-1, 3))
        step, nxt = self.recurrent_fn(st, actions)
        return step, self.wrap(nxt)


@pytest.mark.parametrize("method", ["gumbel", "puct"])
def test_nested_embeddings_and_torch_gather_path(method, monkeypatch):
    model = NestedTable(18, 5)
    st = states(10, 6)
    noise = torch.randn(6, 5)
    search = SEARCHES[method]
    kw = {"gumbel_noise": noise} if method == "gumbel" else {}
    plain = search(model.root(st), model.recurrent_fn, 30, **kw)
    nested = search(model.nested_root(st), model.nested_fn, 30, **kw)
    assert_same(plain, nested)
    monkeypatch.setattr(driver, "_host_store", lambda leaves: False)  # the device (torch) path
    device = search(model.nested_root(st), model.nested_fn, 30, **kw)
    assert_same(plain, device)


def test_float64_and_strided_outputs():
    model = TableModel(19, 4)
    st = states(11, 5)

    def fn64(emb, actions):
        step, nxt = model.recurrent_fn(emb, actions)
        wide = torch.cat([step.prior_logits.double(), torch.zeros(5, 3, dtype=torch.float64)], 1)
        return Step(step.reward.double(), step.discount, wide[:, :4], step.value.double()), nxt

    noise = torch.randn(5, 4)
    a = puct(model.root(st), model.recurrent_fn, 20)
    b = puct(model.root(st), fn64, 20)
    assert_same(a, b)
    a = gumbel(model.root(st), model.recurrent_fn, 20, gumbel_noise=noise)
    b = gumbel(model.root(st), fn64, 20, gumbel_noise=noise)
    assert_same(a, b)


def test_errors():
    model = TableModel(20, 3)
    root = model.root(states(12, 2))
    with pytest.raises(ValueError, match="rescale"):
        GumbelParams(rescale="global")
    with pytest.raises(ValueError, match="max_considered_actions"):
        GumbelParams(max_considered_actions=0)
    with pytest.raises(ValueError, match="dirichlet_fraction"):
        PuctParams(dirichlet_fraction=1.5)
    with pytest.raises(ValueError, match="pb_c_base"):
        PuctParams(pb_c_base=0.0)
    with pytest.raises(ValueError, match="value_delta_max"):
        PuctParams(value_delta_max=float("nan"))
    with pytest.raises(TypeError, match="PuctParams"):
        puct(root, model.recurrent_fn, 4, params=GumbelParams())
    with pytest.raises(TypeError, match="GumbelParams"):
        gumbel(root, model.recurrent_fn, 4, params=PuctParams())
    with pytest.raises(ValueError, match="at least one valid"):
        gumbel(root, model.recurrent_fn, 4, invalid_actions=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="invalid_actions"):
        puct(root, model.recurrent_fn, 4, invalid_actions=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="prior_logits"):
        gumbel(Root(torch.zeros(3), torch.zeros(3), torch.zeros(3)), model.recurrent_fn, 4)
    with pytest.raises(ValueError, match="num_simulations"):
        puct(root, model.recurrent_fn, -1)

    def bad_shape(emb, actions):
        step, nxt = model.recurrent_fn(emb, actions)
        return Step(step.reward, step.discount, step.prior_logits[:, :2], step.value), nxt

    with pytest.raises(ValueError, match="prior_logits"):
        gumbel(root, bad_shape, 4)

    def bad_discount(emb, actions):
        step, nxt = model.recurrent_fn(emb, actions)
        return Step(step.reward, step.discount[:1], step.prior_logits, step.value), nxt

    for search in (puct, gumbel):
        with pytest.raises(ValueError, match="discount"):
            search(root, bad_discount, 4)

    def bad_embedding(emb, actions):
        step, nxt = model.recurrent_fn(emb, actions)
        return step, nxt.float()

    with pytest.raises(ValueError, match="embedding"):
        gumbel(root, bad_embedding, 4)


def test_nested_and_threaded_searches_do_not_share_scratch():
    """A search run from inside recurrent_fn (same thread) or from other threads at the same time
    gives the same result as a search run alone."""
    model = TableModel(21, 5)
    st = states(13, 6)
    noise = torch.randn(6, 5)
    alone = gumbel(model.root(st), model.recurrent_fn, 30, gumbel_noise=noise)

    def nesting_fn(emb, actions):
        inner = TableModel(22, 3)
        puct(inner.root(states(14, 9)), inner.recurrent_fn, 12)
        return model.recurrent_fn(emb, actions)

    nested = gumbel(model.root(st), nesting_fn, 30, gumbel_noise=noise)
    assert_same(alone, nested)

    results = [None] * 4

    def worker(i):
        results[i] = gumbel(model.root(st), model.recurrent_fn, 30, gumbel_noise=noise)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in results:
        assert_same(alone, out)


# ----------------------------------------------------------------------------------------------
# Golden values (fixed trees; cross-checked against the reference implementation, pUCT also
# against EfficientZero's ctree)

GOLDEN_PUCT = {
    "visits": [[1, 0, 4, 0, 19], [3, 0, 19, 0, 2], [0, 0, 0, 0, 24]],
    # EfficientZero's root value (the root's first visit counts with value 0); ez_tree gives
    # 2.5136518, -0.2139696, 0.1770923 (tests/test_search_ez_tree.py, case three_roots_masked)
    "root_value": [2.5136516094207764, -0.2139696180820465, 0.1770922690629959],
    "action": [4, 2, 4],
}
GOLDEN_GUMBEL = {
    "visits": [[1, 1, 11, 1, 10], [4, 0, 10, 0, 10], [0, 0, 0, 0, 24]],
    "root_value": [2.1999678633737987, 0.9267721856679602, 4.3586137850186],
    "action": [2, 2, 4],
}


def golden_case():
    model = TableModel(2024, 5, discount=0.95)
    st = torch.tensor([3, 41, 77])
    noise = torch.from_numpy(np.random.default_rng(2024).gumbel(size=(3, 5))).float()
    invalid = torch.tensor([[False] * 5, [False, True, False, True, False], [True] * 4 + [False]])
    return model, st, noise, invalid


@pytest.mark.parametrize(("method", "golden"), [("puct", GOLDEN_PUCT), ("gumbel", GOLDEN_GUMBEL)])
def test_golden_values(method, golden):
    model, st, noise, invalid = golden_case()
    kw = {"gumbel_noise": noise} if method == "gumbel" else {}
    out = SEARCHES[method](model.root(st), model.recurrent_fn, 24, invalid_actions=invalid, **kw)
    assert out.visit_counts.tolist() == golden["visits"]
    assert out.action.tolist() == golden["action"]
    np.testing.assert_allclose(out.root_value.numpy(), golden["root_value"], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Continuous control: sampled candidate slots (EfficientZero V2 style)


@pytest.mark.parametrize("method", ["gumbel", "puct"])
def test_continuous_control_over_candidate_slots(method):
    """Each node carries K sampled actions in its embedding; the search runs over the K slots
    and recurrent_fn maps slot -> action. Reward -|a - target|^2 and discount 0, so Q(slot) is
    the immediate reward of its candidate and the best slot is the candidate nearest the target."""
    B, K, D = 16, 8, 2
    gen = torch.Generator().manual_seed(0)
    target = torch.tensor([0.3, -0.5])

    def sample(state):  # K candidate actions in [-1, 1]^D per node, drawn from the node's state
        g = torch.Generator().manual_seed(int(state.sum().item() * 1000) % 2**31)
        return torch.rand(state.shape[0], K, D, generator=g) * 2 - 1

    def recurrent_fn(emb, slot):
        act = emb["candidates"][torch.arange(slot.shape[0]), slot]  # slot -> continuous action
        reward = -((act - target) ** 2).sum(1)
        state = emb["state"] + 1.0
        nxt = {"state": state, "candidates": sample(state)}
        n = slot.shape[0]
        return Step(reward, torch.zeros(n), torch.zeros(n, K), torch.zeros(n)), nxt

    state = torch.rand(B, 1, generator=gen)
    cands = torch.rand(B, K, D, generator=gen) * 2 - 1
    root = Root(torch.zeros(B, K), torch.zeros(B), {"state": state, "candidates": cands})
    kw = {"params": GumbelParams(gumbel_scale=0.0)} if method == "gumbel" else {}
    out = SEARCHES[method](root, recurrent_fn, 200, **kw)
    rewards = -((cands - target) ** 2).sum(2)
    visited = out.visit_counts > 0
    torch.testing.assert_close(out.qvalues[visited], rewards[visited])
    assert torch.equal(out.action, rewards.argmax(1))


def test_step_needs_all_four_fields_and_engine_run_returns_the_tree():
    with pytest.raises(TypeError):
        Step(reward=torch.zeros(1), prior_logits=torch.zeros(1, 2), value=torch.zeros(1))  # type: ignore[call-arg]
    from frugal.search._engine import run

    model = TableModel(24, 3)
    out, tree = run(model.root(states(16, 2)), model.recurrent_fn, 5, PuctParams())
    assert tree.children.shape == (2, 6, 3)  # valid until the next search on this thread
    assert (tree.parent[:, 1:] >= 0).all()
    assert_same(out, puct(model.root(states(16, 2)), model.recurrent_fn, 5))
