"""Resource-aware selection as a knapsack: keep the most valuable structures that fit an FPGA budget.

`solve(KnapsackProblem(values, costs, capacity))` returns a feasible `KnapsackSolution` (or raises
`InfeasibleBudgetError` naming the resources that cannot fit). Methods: "exact" (HiGHS MILP on the core
left by reduced-cost fixing), "greedy" (milliseconds at 10^5 items), "lagrangian" (10^6 items, with a
proven bound), "auto" (exact up to EXACT_MAX_ITEMS items).
"""

from __future__ import annotations

from tenfold.knapsack.exact import solve_exact
from tenfold.knapsack.greedy import solve_greedy
from tenfold.knapsack.lagrangian import solve_lagrangian
from tenfold.knapsack.problem import InfeasibleBudgetError, KnapsackProblem
from tenfold.knapsack.solution import KnapsackSolution
from tenfold.knapsack.solve import EXACT_MAX_ITEMS, METHODS, solve

__all__ = [
    "EXACT_MAX_ITEMS",
    "METHODS",
    "InfeasibleBudgetError",
    "KnapsackProblem",
    "KnapsackSolution",
    "solve",
    "solve_exact",
    "solve_greedy",
    "solve_lagrangian",
]
