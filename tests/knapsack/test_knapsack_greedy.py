"""The vectorised greedy building blocks against plain sequential references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.knapsack import KnapsackProblem, solve_exact, solve_greedy
from tenfold.knapsack.greedy import repair, take_in_order
from tenfold.knapsack.problem import prepare


def sequential(deltas, remaining, gid=None):
    """Reference: try each column once, in order; a failed upgrade freezes the rest of its chain."""
    applied = np.zeros(deltas.shape[1], dtype=bool)
    remaining = remaining.astype(float).copy()
    frozen = set()
    for j in range(deltas.shape[1]):
        if gid is not None and gid[j] in frozen:
            continue
        if (deltas[:, j] <= remaining + 1e-12).all():
            applied[j] = True
            remaining -= deltas[:, j]
        elif gid is not None:
            frozen.add(gid[j])
    return applied, remaining


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.integers(0, 300), st.integers(0, 2**32 - 1), st.booleans())
def test_take_in_order_matches_the_sequential_loop(m, k, seed, chained):
    rng = np.random.default_rng(seed)
    deltas = rng.integers(0, 10, size=(m, k)).astype(float)
    deltas[:, rng.random(k) < 0.2] = 0.0
    remaining = rng.integers(0, 5 * k + 1, size=m).astype(float)
    gid = np.sort(rng.integers(0, max(k // 3, 1), size=k)) if chained else None
    n_groups = int(gid.max()) + 1 if chained and k else 0
    rng.shuffle(gid) if chained else None  # chains interleave in the global order
    applied, left = take_in_order(deltas, remaining, gid, n_groups)
    expected, expected_left = sequential(deltas, remaining, gid)
    np.testing.assert_array_equal(applied, expected)
    np.testing.assert_allclose(left, expected_left)


def test_repair_fixes_an_overrun_and_refills():
    rng = np.random.default_rng(0)
    costs = rng.uniform(1, 10, size=(200, 3))
    problem = KnapsackProblem(rng.uniform(1, 10, 200), costs, 0.3 * costs.sum(axis=0))
    prepared = prepare(problem)
    selected = solve_exact(problem).selected.copy()
    selected[np.flatnonzero(~selected)[:3]] = True  # overrun the budget
    assert not problem.is_feasible(selected)
    fixed = repair(prepared, selected)
    assert fixed is not None and problem.is_feasible(fixed)


def test_repair_downgrades_multiple_choice_groups():
    groups = np.repeat(np.arange(20), 5)
    rng = np.random.default_rng(1)
    costs = np.sort(rng.uniform(0, 10, size=(20, 5)), axis=1).reshape(-1, 1)
    values = np.sort(rng.uniform(0, 10, size=(20, 5)), axis=1).reshape(-1)
    problem = KnapsackProblem(values, costs, np.array([0.4 * costs.reshape(20, 5).max(axis=1).sum()]),
                              groups=groups)
    most = np.zeros(100, dtype=bool)
    most[4::5] = True  # the most expensive choice everywhere
    fixed = repair(prepare(problem), most)
    assert fixed is not None and problem.is_feasible(fixed)


def test_multiple_choice_greedy_climbs_the_convex_hull():
    # one group, one resource: costs 0..4, values with a non-concave point (2) and a dominated one (3)
    values = np.array([0.0, 5.0, 5.5, 4.0, 9.0])
    costs = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    for budget, best in [(0.5, 0), (1.0, 1), (2.0, 2), (3.0, 2), (4.0, 4)]:
        problem = KnapsackProblem(values, costs, np.array([budget]), groups=np.zeros(5, dtype=int))
        solution = solve_greedy(problem)
        assert np.flatnonzero(solution.selected).tolist() == [best], budget
        assert solution.upper_bound >= values[best]
