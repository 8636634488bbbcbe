"""Errors, edge cases, method selection, time limits and the solution summary."""

from __future__ import annotations

import importlib
import json
import re
import time

import numpy as np
import pytest

from tenfold.errors import ConfigError
from tenfold.knapsack import (
    InfeasibleBudgetError,
    KnapsackProblem,
    solve,
    solve_exact,
    solve_greedy,
    solve_lagrangian,
)

SOLVERS = [solve_exact, solve_greedy, solve_lagrangian]
# the package re-exports the function `solve`, which shadows the module of the same name
solve_module = importlib.import_module("tenfold.knapsack.solve")
solution_module = importlib.import_module("tenfold.knapsack.solution")


def random_problem(n: int, m: int = 4, seed: int = 0, fraction: float = 0.3) -> KnapsackProblem:
    rng = np.random.default_rng(seed)
    size = rng.lognormal(0.0, 1.0, n)
    costs = size[:, None] * rng.lognormal(0.0, 0.5, (n, m))
    values = size**0.8 * rng.pareto(2.5, n)
    return KnapsackProblem(values, costs, fraction * costs.sum(axis=0))


# ---------------------------------------------------------------- infeasible budgets


def test_required_items_over_budget_name_the_resource_and_minimum():
    problem = KnapsackProblem(values=[5.0, 1.0, 2.0], costs=[[200.0, 3.0], [40.0, 0.0], [1.0, 1.0]],
                              capacity=[100.0, 20.0], resource_names=("dsp", "bram18"),
                              required=[True, True, False])
    for solver in SOLVERS:
        with pytest.raises(InfeasibleBudgetError, match=r"dsp<=100 but the smallest achievable use is dsp=240") as e:
            solver(problem)
        assert "bram18<=20 ok at 3" in str(e.value) and "raise the budget" in str(e.value)
        np.testing.assert_allclose(e.value.minimum, [240.0, 3.0])
        np.testing.assert_allclose(e.value.capacity, [100.0, 20.0])
        assert e.value.resource_names == ("dsp", "bram18") and e.value.proven
        assert isinstance(e.value, ConfigError)


def test_multiple_choice_cheapest_choices_over_budget():
    groups = [0, 0, 1, 1]
    costs = [[50.0, 1.0], [80.0, 0.0], [60.0, 5.0], [90.0, 2.0]]
    problem = KnapsackProblem(values=[1.0, 2.0, 1.0, 2.0], costs=costs, capacity=[100.0, 10.0],
                              resource_names=("lut", "ff"), groups=groups)
    with pytest.raises(InfeasibleBudgetError, match=r"lut<=100 but the smallest achievable use is lut=110") as e:
        solve(problem)
    np.testing.assert_allclose(e.value.minimum, [110.0, 2.0])
    np.testing.assert_allclose(problem.minimum_usage(), [110.0, 2.0])


def test_multiple_choice_group_without_any_fitting_choice():
    problem = KnapsackProblem(values=[1.0, 2.0, 3.0, 4.0], costs=[[5, 1], [1, 5], [2, 2], [1, 1]], capacity=[3.0, 3.0],
                              resource_names=("dsp", "lut"), groups=[0, 0, 1, 1])
    with pytest.raises(InfeasibleBudgetError, match=r"group 0 exceeds the budget on its own \(item 0 needs dsp=5 > 3; "
                       r"item 1 needs lut=5 > 3\)"):
        solve(problem)


def test_multiple_choice_joint_infeasibility_is_proven_by_highs():
    # each resource alone fits (min 1 + 1 per resource) but every combination overruns one of them
    problem = KnapsackProblem(values=[1.0, 1.0, 1.0, 1.0], costs=[[1, 9], [9, 1], [1, 9], [9, 1]],
                              capacity=[9.0, 9.0], groups=[0, 0, 1, 1])
    assert problem.minimum_usage().tolist() == [2.0, 2.0]
    with pytest.raises(InfeasibleBudgetError) as e:
        solve_exact(problem)
    assert e.value.proven and "no combination" in str(e.value)


def test_multiple_choice_needs_complementary_choices():
    # only the two lopsided choices fit together; mixing one with a balanced choice overruns a budget
    problem = KnapsackProblem(values=[1.0, 0.0, 1.0, 0.0], costs=[[1, 9], [5, 5], [9, 1], [5, 6]],
                              capacity=[10.0, 10.0], groups=[0, 0, 1, 1])
    for method in ("greedy", "lagrangian", "exact", "auto"):
        solution = solve(problem, method)
        assert problem.is_feasible(solution.selected)
        assert solution.value == pytest.approx(2.0)


def test_heuristic_failure_falls_back_to_exact(monkeypatch):
    problem = KnapsackProblem(values=[1.0, 0.0, 1.0, 0.0], costs=[[1, 9], [5, 5], [9, 1], [5, 6]],
                              capacity=[10.0, 10.0], groups=[0, 0, 1, 1])

    def gives_up(problem, **kwargs):
        raise InfeasibleBudgetError(problem.minimum_usage(), problem.capacity, detail="heuristic gave up",
                                    proven=False)

    monkeypatch.setattr(solve_module, "solve_greedy", gives_up)
    monkeypatch.setattr(solve_module, "solve_lagrangian", gives_up)
    for method in ("greedy", "lagrangian"):
        solution = solve(problem, method)
        assert solution.solver == "exact" and solution.value == pytest.approx(2.0)


def test_zero_capacity_takes_only_free_items():
    problem = KnapsackProblem(values=[3.0, 2.0, 0.0, 1.0], costs=[[1.0, 0.0], [0.0, 5.0], [0.0, 0.0], [0.0, 0.0]],
                              capacity=[0.0, 4.0])
    for solver in SOLVERS:
        solution = solver(problem)
        assert solution.selected.tolist() == [False, False, True, True]
        assert solution.optimal


def test_negative_capacity_is_infeasible():
    with pytest.raises(InfeasibleBudgetError, match="smallest achievable use is resource0=0"):
        solve(KnapsackProblem(values=[1.0], costs=[[1.0]], capacity=[-1.0]))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": [1.0, np.nan], "costs": [[1.0], [1.0]], "capacity": [1.0]}, "values contain NaN or inf"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [np.inf]], "capacity": [1.0]}, "costs contain NaN or inf"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [-1.0]], "capacity": [1.0]}, "costs must be >= 0"),
        ({"values": [1.0, 2.0], "costs": [1.0, 1.0], "capacity": [1.0]}, r"costs must have shape \(n_items"),
        ({"values": [[1.0, 2.0]], "costs": [[1.0], [1.0]], "capacity": [1.0]}, "values must be a 1-D array"),
        ({"values": [1.0], "costs": [[1.0]], "capacity": 1.0}, "capacity must be a 1-D array"),
        ({"values": [1.0], "costs": [[1.0]], "capacity": [np.nan]}, "capacity must be a number or"),
        ({"values": [1.0], "costs": [[1.0]], "capacity": [1.0], "resource_names": ("a", "b")}, "resource_names"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [1.0]], "capacity": [1.0], "groups": [0]}, "groups must have"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [1.0]], "capacity": [1.0], "groups": [0.5, 1]}, "integer labels"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [1.0]], "capacity": [1.0], "required": [True]}, "required must"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [1.0]], "capacity": [1.0], "required": [2, 0]}, "boolean"),
        ({"values": [1.0, 2.0], "costs": [[1.0], [1.0]], "capacity": [3.0], "groups": [0, 0],
          "required": [True, True]}, "more than one required item"),
    ],
)
def test_validation_errors(kwargs, message):
    problem = KnapsackProblem(**kwargs)
    with pytest.raises(ConfigError, match=message):
        problem.validate()
    for solver in SOLVERS:
        with pytest.raises(ConfigError, match=message):
            solver(problem)


def test_non_numeric_arrays_and_bad_arguments():
    with pytest.raises(ConfigError, match="numeric"):
        KnapsackProblem(values=["a"], costs=[[1.0]], capacity=[1.0])
    problem = random_problem(10)
    with pytest.raises(ConfigError, match="unknown knapsack method 'best'"):
        solve(problem, "best")
    with pytest.raises(ConfigError, match="time_limit"):
        solve(problem, time_limit=0)
    with pytest.raises(ConfigError, match="gap_tolerance"):
        solve(problem, gap_tolerance=-1)
    with pytest.raises(ConfigError, match="expected a KnapsackProblem"):
        solve_greedy({"values": [1.0]})
    with pytest.raises(ConfigError, match="selection must have shape"):
        problem.is_feasible(np.ones(3, dtype=bool))


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("groups", [None, np.zeros(0, dtype=int)])
def test_empty_instance(groups):
    problem = KnapsackProblem(np.zeros(0), np.zeros((0, 2)), np.array([1.0, 2.0]), groups=groups)
    for solver in SOLVERS:
        solution = solver(problem)
        assert solution.selected.shape == (0,) and solution.value == 0.0 and solution.optimal
        assert solution.used.tolist() == [0.0, 0.0]


def test_unconstrained_budget_takes_everything_worth_taking():
    values = np.array([3.0, 0.0, 2.0, 5.0])
    problem = KnapsackProblem(values, np.ones((4, 2)), np.array([np.inf, np.inf]))
    for solver in SOLVERS:
        solution = solver(problem)
        assert solution.value == 10.0 and solution.optimal and solution.gap == 0.0
        assert solution.selected[[0, 2, 3]].all()
    grouped = KnapsackProblem(np.array([1.0, 4.0, -1.0, -3.0]), np.ones((4, 1)), np.array([np.inf]),
                              groups=[7, 7, 9, 9])
    for solver in SOLVERS:
        assert solver(grouped).selected.tolist() == [False, True, True, False]


def test_zero_cost_items_are_always_taken():
    problem = KnapsackProblem(np.array([1.0, 0.0, 7.0, 2.0]), np.array([[0.0], [0.0], [5.0], [0.0]]),
                              np.array([1.0]))
    for solver in SOLVERS:
        solution = solver(problem)
        assert solution.selected.tolist() == [True, True, False, True]


def test_required_item_forces_its_group():
    problem = KnapsackProblem(np.array([1.0, 9.0, 2.0, 3.0]), np.array([[1.0], [1.0], [1.0], [1.0]]),
                              np.array([5.0]), groups=[0, 0, 1, 1], required=[True, False, False, False])
    for solver in SOLVERS:
        assert solver(problem).selected.tolist() == [True, False, False, True]


def test_exact_without_a_warm_start_matches(monkeypatch):
    """The full HiGHS model (no incumbent, so no reduced-cost fixing) agrees with the fixed-core path."""
    import tenfold.knapsack.exact as exact

    problem = random_problem(60, m=3, seed=4)
    reference = solve_exact(problem, gap_tolerance=0.0)
    original = exact.dual_search

    def no_incumbent(*args, **kwargs):
        result = original(*args, **kwargs)
        result.selected, result.value = None, -np.inf
        return result

    monkeypatch.setattr(exact, "dual_search", no_incumbent)
    cold = solve_exact(problem, gap_tolerance=0.0)
    assert cold.optimal and reference.optimal
    assert cold.value == pytest.approx(reference.value, rel=1e-9)
    assert re.search(r"core of \d+ of 60 items", cold.status)


# ---------------------------------------------------------------- limits and method choice


def test_time_limit_is_honoured_on_a_hard_instance():
    rng = np.random.default_rng(0)
    costs = rng.integers(1, 1000, size=(200, 5)).astype(float)
    values = costs.mean(axis=1) + rng.integers(0, 50, 200)  # strongly correlated: a hard MILP
    problem = KnapsackProblem(values, costs, 0.5 * costs.sum(axis=0))
    started = time.perf_counter()
    solution = solve(problem, "exact", time_limit=0.5, gap_tolerance=0.0)
    assert time.perf_counter() - started < 2.0
    assert problem.is_feasible(solution.selected)
    assert not solution.optimal and solution.gap > 0
    assert "time limit" in solution.status
    assert solution.upper_bound >= solution.value


def test_auto_uses_lagrangian_above_the_threshold(monkeypatch):
    problem = random_problem(50)
    assert solve(problem).solver == "exact"
    monkeypatch.setattr(solve_module, "EXACT_MAX_ITEMS", 10)
    solution = solve(problem)
    assert solution.solver == "lagrangian" and problem.is_feasible(solution.selected)


def test_lagrangian_on_a_larger_instance_is_near_optimal():
    problem = random_problem(20_000, seed=3)
    exact = solve_exact(problem)
    lagrangian = solve_lagrangian(problem, seed=1)
    greedy = solve_greedy(problem)
    assert problem.is_feasible(lagrangian.selected) and problem.is_feasible(greedy.selected)
    assert lagrangian.upper_bound >= exact.value - 1e-6
    assert lagrangian.gap < 1e-3 and greedy.value >= 0.99 * exact.value
    assert exact.gap <= 1e-4 and exact.optimal


@pytest.mark.parametrize("seed", range(3))
def test_exact_and_lagrangian_are_never_worse_than_greedy(seed):
    problem = random_problem(3000, seed=seed)
    greedy = solve_greedy(problem)
    assert solve_exact(problem).value >= greedy.value
    assert solve_lagrangian(problem, seed=seed).value >= greedy.value


def test_lagrangian_is_reproducible_for_a_seed():
    problem = random_problem(2000, seed=9)
    first, second = solve_lagrangian(problem, seed=7), solve_lagrangian(problem, seed=7)
    np.testing.assert_array_equal(first.selected, second.selected)
    assert first.upper_bound == second.upper_bound


def test_greedy_scales_linearly():
    problem = random_problem(100_000, seed=5)
    started = time.perf_counter()
    solution = solve_greedy(problem)
    assert time.perf_counter() - started < 1.0  # ~30 ms on a laptop; guards against O(n^2) regressions
    assert problem.is_feasible(solution.selected) and solution.gap < 0.01


# ---------------------------------------------------------------- summary


def test_as_dict_is_json_and_lists_indices_only_for_small_instances(monkeypatch):
    problem = KnapsackProblem(np.array([1.0, 2.0, 3.0]), np.array([[1.0], [1.0], [1.0]]), np.array([2.0]),
                              resource_names=("dsp",))
    summary = solve(problem).as_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["selected"] == [1, 2] and summary["n_selected"] == 2 and summary["resource_names"] == ["dsp"]
    assert summary["value"] == 5.0 and summary["used"] == [2.0] and summary["optimal"] is True
    monkeypatch.setattr(solution_module, "MAX_LISTED_ITEMS", 2)
    summary = solve(problem).as_dict()
    assert "selected" not in summary and summary["n_items"] == 3
