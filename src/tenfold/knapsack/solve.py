"""One entry point that picks a solver by instance size and always returns a feasible selection."""

from __future__ import annotations

from tenfold.errors import ConfigError
from tenfold.knapsack.exact import solve_exact
from tenfold.knapsack.greedy import solve_greedy
from tenfold.knapsack.lagrangian import solve_lagrangian
from tenfold.knapsack.problem import InfeasibleBudgetError, KnapsackProblem
from tenfold.knapsack.solution import KnapsackSolution

METHODS = ("auto", "exact", "greedy", "lagrangian")
EXACT_MAX_ITEMS = 200_000  # "auto" uses HiGHS up to this many items and the Lagrangian heuristic beyond


def solve(problem: KnapsackProblem, method: str = "auto", *, time_limit: float = 10.0, gap_tolerance: float = 1e-4,
          seed: int = 0) -> KnapsackSolution:
    """Solve with `method` ("auto": exact up to EXACT_MAX_ITEMS items, else Lagrangian).

    Returns a feasible selection or raises InfeasibleBudgetError. A heuristic that finds no feasible
    multiple-choice selection (which does not prove there is none) hands over to the exact solver.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown knapsack method {method!r}; choose one of {', '.join(METHODS)}")
    if not time_limit > 0:
        raise ConfigError(f"time_limit must be > 0 seconds, got {time_limit}")
    if not 0 <= gap_tolerance < 1:
        raise ConfigError(f"gap_tolerance is a relative gap in [0, 1), got {gap_tolerance}")
    if method == "auto":
        if not isinstance(problem, KnapsackProblem):
            raise ConfigError(f"expected a KnapsackProblem, got {type(problem).__name__}")
        method = "exact" if problem.n_items <= EXACT_MAX_ITEMS else "lagrangian"
    if method == "exact":
        return solve_exact(problem, time_limit=time_limit, gap_tolerance=gap_tolerance)
    try:
        if method == "greedy":
            return solve_greedy(problem)
        return solve_lagrangian(problem, seed=seed, time_limit=time_limit, gap_tolerance=gap_tolerance)
    except InfeasibleBudgetError as error:
        if error.proven:
            raise
        return solve_exact(problem, time_limit=time_limit, gap_tolerance=gap_tolerance)
