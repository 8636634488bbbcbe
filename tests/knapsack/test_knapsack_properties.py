"""Every solver against brute force on small random instances (0-1 and multiple-choice, with required items)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.knapsack import (
    InfeasibleBudgetError,
    KnapsackProblem,
    solve,
    solve_exact,
    solve_greedy,
    solve_lagrangian,
)
from tenfold.knapsack.problem import FEASIBILITY_RTOL

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brute_force(problem: KnapsackProblem) -> float | None:
    """The optimum by enumerating every subset (0-1) or every per-group choice; None if nothing fits."""
    n = problem.n_items
    if problem.groups is None:
        masks = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    else:
        labels = np.unique(problem.groups)
        members = [np.flatnonzero(problem.groups == label) for label in labels]
        masks = np.zeros((int(np.prod([len(m) for m in members])), n), dtype=bool)
        for row, combo in enumerate(itertools.product(*members)):
            masks[row, list(combo)] = True
    if problem.required is not None:
        masks = masks[(masks | ~problem.required).all(axis=1)]
    used = masks.astype(float) @ problem.costs
    fits = (used <= problem.capacity + FEASIBILITY_RTOL * np.abs(problem.capacity)).all(axis=1)
    if not fits.any():
        return None
    return float((masks[fits].astype(float) @ problem.values).max())


@st.composite
def instances(draw, multiple_choice: bool | None = None):
    m = draw(st.integers(1, 4))
    if multiple_choice is None:
        multiple_choice = draw(st.booleans())
    if multiple_choice:
        sizes = draw(st.lists(st.integers(1, 6), min_size=0, max_size=4))
        groups = np.repeat(np.arange(len(sizes)), sizes)
        n = len(groups)
    else:
        n = draw(st.integers(0, 12))
        groups = None
    costs = np.array(draw(st.lists(st.lists(st.integers(0, 10), min_size=m, max_size=m), min_size=n, max_size=n)),
                     dtype=float).reshape(n, m)
    lowest = -20.0 if multiple_choice else 0.0
    values = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(lowest, 100.0, allow_nan=False)),
                                    min_size=n, max_size=n)), dtype=float)
    capacity = []
    for k in range(m):
        kind = draw(st.sampled_from(["fraction", "fraction", "fraction", "inf", "zero"]))
        if kind == "inf":
            capacity.append(np.inf)
        elif kind == "zero":
            capacity.append(0.0)
        else:
            capacity.append(float(np.floor(draw(st.floats(0.0, 1.2)) * costs[:, k].sum())))
    required = None
    if n and draw(st.booleans()):
        required = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        required &= np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))  # sparse
        if multiple_choice:  # at most one required item per group
            seen = set()
            for i in range(n):
                if required[i] and groups[i] in seen:
                    required[i] = False
                if required[i]:
                    seen.add(groups[i])
    names = tuple(["dsp", "bram18", "lut", "ff"][:m])
    return KnapsackProblem(values=values, costs=costs, capacity=np.array(capacity), resource_names=names,
                           groups=groups, required=required)


def _check_feasible(problem: KnapsackProblem, solution) -> None:
    assert solution.selected.dtype == bool and solution.selected.shape == (problem.n_items,)
    assert problem.is_feasible(solution.selected)
    assert (solution.used <= problem.capacity + FEASIBILITY_RTOL * np.abs(problem.capacity)).all()
    assert solution.value == pytest.approx(float(problem.values[solution.selected].sum()), abs=1e-9)
    if problem.required is not None:
        assert solution.selected[problem.required].all()
    if problem.groups is not None:
        assert (np.bincount(np.unique(problem.groups, return_inverse=True)[1][solution.selected],
                            minlength=len(np.unique(problem.groups))) == 1).all()


def _heuristic(solver, problem):
    """Heuristics may fail to find a multiple-choice selection (without proof); `solve` then asks HiGHS."""
    try:
        return solver(problem)
    except InfeasibleBudgetError as error:
        assert not error.proven and problem.groups is not None
        return None


@SETTINGS
@given(instances())
def test_solvers_match_brute_force(problem):
    optimum = brute_force(problem)
    if optimum is None:
        with pytest.raises(InfeasibleBudgetError) as caught:
            solve_exact(problem, gap_tolerance=0.0)
        assert caught.value.proven
        for method in ("greedy", "lagrangian", "auto"):
            with pytest.raises(InfeasibleBudgetError):
                solve(problem, method)
        return
    tol = 1e-7 * max(1.0, abs(optimum))
    exact = solve_exact(problem, gap_tolerance=0.0)
    _check_feasible(problem, exact)
    assert exact.optimal and exact.solver == "exact"
    assert exact.value == pytest.approx(optimum, abs=tol)
    assert exact.upper_bound >= exact.value
    greedy = _heuristic(solve_greedy, problem)
    lagrangian = _heuristic(solve_lagrangian, problem)
    for heuristic in (greedy, lagrangian):
        if heuristic is None:
            continue
        _check_feasible(problem, heuristic)
        assert exact.value >= heuristic.value - 1e-9 * max(1.0, abs(optimum))
        if heuristic.upper_bound is not None:
            assert heuristic.upper_bound >= optimum - 1e-6
            assert heuristic.gap >= 0
    for method in ("greedy", "lagrangian", "auto"):
        _check_feasible(problem, solve(problem, method))


@SETTINGS
@given(instances(multiple_choice=False))
def test_lagrangian_bound_is_valid_for_0_1(problem):
    optimum = brute_force(problem)
    if optimum is None:
        return
    solution = solve_lagrangian(problem, gap_tolerance=0.0)
    _check_feasible(problem, solution)
    assert solution.upper_bound >= optimum - 1e-6
    assert solution.value <= optimum + 1e-9


@settings(max_examples=100, deadline=None)
@given(instances(multiple_choice=True))
def test_multiple_choice_picks_one_per_group(problem):
    optimum = brute_force(problem)
    if optimum is None:
        return
    solution = solve(problem)
    _check_feasible(problem, solution)
    assert solution.value == pytest.approx(optimum, abs=1e-6 * max(1.0, abs(optimum)))
