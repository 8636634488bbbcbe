"""Exact solver: HiGHS (scipy.optimize.milp) on the core left after reduced-cost fixing.

Handing HiGHS all 10^5 items costs seconds in LP work alone, although at the optimum nearly every item is
decided by its reduced value. So the Lagrangian search (greedy incumbent z*, optimal LP multipliers lambda,
bound L) runs first; if z* is already within the gap tolerance of L we are done. Otherwise every selection
worth more than z* satisfies sum_i |r_i| [x_i != (r_i > 0)] < L - z* (r = reduced values), so items with
|r_i| >= L - z* are fixed and HiGHS solves the small remaining core. Fixing only removes selections that
cannot beat z*, so the result is exact: max(z*, core optimum), with bound max(z*, core bound).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import time
import warnings

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from tenfold.errors import ConfigError
from tenfold.knapsack.greedy import repair
from tenfold.knapsack.lagrangian import DualSearch, dual_search
from tenfold.knapsack.problem import Prepared, prepare
from tenfold.knapsack.solution import KnapsackSolution, make_solution, relative_gap

# HiGHS options beyond scipy's documented ones, passed through verbatim (scipy warns, we silence it): the
# incumbent as objective cutoff, and no RINS/RENS sub-MIPs (they re-find what the cutoff already knows)
HIGHS_OPTIONS = {"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False}
DUAL_ITERATIONS = 30  # subgradient warm-up before the core LP; the LP does the real work
_OBJECTIVE_SCALE = 1e6  # HiGHS stops at an absolute gap of 1e-6: scale the core's values to sum to 10^6


def solve_exact(problem, *, time_limit: float = 10.0, gap_tolerance: float = 1e-4) -> KnapsackSolution:
    """Optimal selection (within `gap_tolerance`, relative) or, when `time_limit` hits, the best one found."""
    started = time.perf_counter()
    if not time_limit > 0:
        raise ConfigError(f"time_limit must be > 0 seconds, got {time_limit}")
    if not 0 <= gap_tolerance < 1:
        raise ConfigError(f"gap_tolerance is a relative gap in [0, 1), got {gap_tolerance}")
    prepared = prepare(problem)
    deadline = started + time_limit
    search = dual_search(prepared, iterations=DUAL_ITERATIONS, gap_tolerance=gap_tolerance, deadline=deadline)
    if search.selected is not None and search.gap <= gap_tolerance:
        status = ("optimal: meets the LP bound" if search.gap == 0 else
                  f"optimal within gap tolerance {gap_tolerance:g}: proved by the LP bound, no branching needed")
        return make_solution(prepared, search.selected, solver="exact", started=started, upper_bound=search.bound,
                             optimal=True, status=status)
    return _solve_core(prepared, search, started, deadline, gap_tolerance)


def _solve_core(prepared: Prepared, search: DualSearch, started: float, deadline: float,
                gap_tolerance: float) -> KnapsackSolution:
    p, relax = prepared, search.relaxation
    incumbent, z = search.selected, search.value
    r = relax.reduced(search.multipliers)
    margin = (search.bound - z if incumbent is not None else np.inf) + 1e-9 * (abs(search.bound) + 1.0)
    base = p.fixed.copy()  # items every better selection keeps
    if p.multiple_choice:
        best = np.maximum.reduceat(r, relax.starts) if relax.items.size else r
        alive = best[relax.group_pos] - r < margin if relax.items.size else np.zeros(0, dtype=bool)
        count = np.bincount(relax.group_pos[alive], minlength=relax.starts.size)
        possible = bool((count > 0).all())
        base[relax.items[alive & (count[relax.group_pos] == 1)]] = True
        core = relax.items[alive & (count[relax.group_pos] > 1)]
    else:
        base[relax.items[r >= margin]] = True
        core = relax.items[np.abs(r) < margin]
        possible = True
    rhs = 1.0 - p.norm[:, base].sum(axis=1)
    possible &= bool((rhs >= -1e-12).all())

    if not possible or core.size == 0:  # nothing can beat the incumbent (or the fixed selection is the answer)
        candidate = base if possible and p.fits(p.norm[:, base].sum(axis=1)) else None
        return _finish(prepared, search, candidate, None, started, gap_tolerance, proven=True,
                       note="reduced-cost fixing left no better selection")
    remaining = deadline - time.perf_counter()
    if remaining <= 1e-3:
        return _finish(prepared, search, None, None, started, gap_tolerance, proven=False,
                       note="time limit reached before the MIP could start")
    values = p.values[core]
    scale = _OBJECTIVE_SCALE / max(float(np.abs(values).sum()), 1e-300)
    base_value = float(p.values[base].sum())
    allowance = gap_tolerance * abs(search.bound)  # absolute slack the overall tolerance leaves for the core
    core_gap = min(allowance / max(abs(search.bound - base_value), 1e-300), 1.0) if gap_tolerance > 0 else 0.0
    rows = [LinearConstraint(sparse.csr_array(p.norm[:, core]), -np.inf, rhs)] if p.norm.shape[0] else []
    if p.multiple_choice:
        _, row = np.unique(p.group[core], return_inverse=True)
        groups = sparse.csr_array((np.ones(core.size), (row, np.arange(core.size))), shape=(row.max() + 1, core.size))
        rows.append(LinearConstraint(groups, 1.0, 1.0))
    # presolve off: this HiGHS build prints debug lines to stdout when presolve maps solutions back
    options = {"time_limit": remaining, "mip_rel_gap": core_gap, "presolve": False, "disp": False, **HIGHS_OPTIONS}
    if incumbent is not None:
        options["objective_bound"] = -(z - base_value) * scale
    with warnings.catch_warnings(), _native_stdout_silenced():
        warnings.simplefilter("ignore")
        res = milp(-values * scale, integrality=np.ones(core.size), bounds=Bounds(0, 1), constraints=rows,
                   options=options)
    found = None
    if res.x is not None:
        found = base.copy()
        found[core[res.x > 0.5]] = True
        if not p.fits(p.norm[:, found].sum(axis=1)):
            found = repair(p, found)  # HiGHS accepts overruns within its feasibility tolerance
    core_bound = None
    if res.status == 2:  # infeasible: no selection beats the incumbent
        core_bound = -np.inf
    elif res.mip_dual_bound is not None and np.isfinite(res.mip_dual_bound):
        core_bound = base_value - float(res.mip_dual_bound) / scale
    return _finish(prepared, search, found, core_bound, started, gap_tolerance, proven=res.status in (0, 2),
                   note=f"HiGHS on a core of {core.size} of {p.problem.n_items} items: {res.message}")


def _finish(prepared: Prepared, search: DualSearch, found: np.ndarray | None, core_bound: float | None,
            started: float, gap_tolerance: float, *, proven: bool, note: str) -> KnapsackSolution:
    """Best of incumbent and core solution, with bound max(incumbent, core bound) capped by the LP bound."""
    p = prepared
    candidates = [s for s in (search.selected, found) if s is not None]
    if not candidates:
        if proven:
            raise p.infeasible("budget infeasible: each resource alone fits, but no combination of one choice per "
                               "group fits all budgets at once (proved by HiGHS); raise the budget or add cheaper "
                               "choices")
        raise p.infeasible(f"no feasible selection found within the time limit ({note}); raise time_limit",
                           proven=False)
    selected = max(candidates, key=lambda s: float(p.values[s].sum()))
    value = float(p.values[selected].sum())
    if proven:
        bound = value if core_bound is None else max(core_bound, search.value, value)
    else:
        bound = search.bound if core_bound is None else max(core_bound, search.value, value)
    bound = min(bound, search.bound)
    gap = relative_gap(value, bound)
    optimal = gap is not None and gap <= max(gap_tolerance, 1e-9 if proven else 0.0)
    status = f"{'optimal' if optimal else 'time limit reached; best found'} ({note}; gap {gap:.2e})"
    return make_solution(p, selected, solver="exact", started=started, upper_bound=bound, optimal=optimal,
                         status=status)


_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stdout_silenced():
    """Send C-level stdout to /dev/null while HiGHS runs.

    HiGHS 1.12 (scipy 1.17) printf's "HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();"
    whenever it maps a solution back after a root restart, whatever the log options; that would litter the
    pruning progress display. Python's own buffered output is flushed first and nothing else is touched.
    """
    with _STDOUT_LOCK:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError, AttributeError):  # no usable fd 1 (e.g. embedded interpreters)
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            yield
        finally:
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None).fflush(None)  # push HiGHS's buffered printf output into /dev/null
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
