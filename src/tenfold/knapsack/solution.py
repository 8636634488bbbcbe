"""What a solver returns: the kept items plus how good the answer is known to be (value, bound, gap)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tenfold.knapsack.problem import Prepared

MAX_LISTED_ITEMS = 1000  # as_dict lists the selected indices only for instances up to this size
_EPS = 1e-12


@dataclass
class KnapsackSolution:
    """A feasible selection, with the best proven upper bound on the optimum when the solver has one."""

    selected: np.ndarray
    value: float
    used: np.ndarray
    upper_bound: float | None
    gap: float | None
    optimal: bool
    solver: str
    seconds: float
    status: str
    resource_names: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (indices only for small instances, so reports stay readable)."""
        n = int(self.selected.shape[0])
        out: dict[str, Any] = {
            "solver": self.solver,
            "status": self.status,
            "optimal": bool(self.optimal),
            "value": float(self.value),
            "upper_bound": None if self.upper_bound is None else float(self.upper_bound),
            "gap": None if self.gap is None else float(self.gap),
            "seconds": float(self.seconds),
            "n_items": n,
            "n_selected": int(self.selected.sum()),
            "used": [float(u) for u in self.used],
        }
        if self.resource_names is not None:
            out["resource_names"] = list(self.resource_names)
        if n <= MAX_LISTED_ITEMS:
            out["selected"] = np.flatnonzero(self.selected).tolist()
        return out


def relative_gap(value: float, upper_bound: float | None) -> float | None:
    """(bound - value) / |bound|, clipped at 0; None when there is no bound."""
    if upper_bound is None:
        return None
    return max(0.0, upper_bound - value) / max(abs(upper_bound), _EPS)


def make_solution(prepared: Prepared, selected: np.ndarray, *, solver: str, started: float, status: str,
                  upper_bound: float | None = None, optimal: bool = False) -> KnapsackSolution:
    """Price a selection on the original (unnormalised) instance and attach bound, gap and timing."""
    problem = prepared.problem
    selected = np.asarray(selected, dtype=bool)
    value = float(problem.values[selected].sum())
    used = selected.astype(float) @ problem.costs if problem.n_resources else np.zeros(0)
    if upper_bound is not None:
        upper_bound = max(float(upper_bound), value)  # a bound below a feasible value is float noise
    gap = relative_gap(value, upper_bound)
    if optimal and upper_bound is None:
        upper_bound, gap = value, 0.0
    return KnapsackSolution(selected=selected, value=value, used=used, upper_bound=upper_bound, gap=gap,
                            optimal=optimal, solver=solver, seconds=time.perf_counter() - started, status=status,
                            resource_names=problem.resource_names)
