"""Exact solver: HiGHS (scipy.optimize.milp) on the core left after reduced-cost fixing.

Handing HiGHS all 10^5 items costs seconds in LP work alone, although at the optimum nearly every item is
decided by its reduced value. So the Lagrangian search (greedy incumbent z*, optimal LP multipliers lambda,
bound L) runs first; if z* is already within the gap tolerance of L we are done. Otherwise every selection
worth more than z* satisfies sum_i |r_i| [x_i != (r_i > 0)] < L - z* (r = reduced values), so items with
|r_i| >= L - z* are fixed and HiGHS solves the small remaining core. Fixing only removes selections that
cannot beat z*, so the result is exact: max(z*, core optimum), with bound max(z*, core bound). When that core
is still large, quick MIPs on growing windows of items around the LP break first raise z* (classic "core"
knapsack heuristics), which both shrinks the exact core and often meets the tolerance outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from tenfold.errors import ConfigError
from tenfold.knapsack.greedy import repair
from tenfold.knapsack.lagrangian import DualSearch, dual_search
from tenfold.knapsack.lp import core_items
from tenfold.knapsack.problem import KnapsackProblem, Prepared, prepare
from tenfold.knapsack.solution import KnapsackSolution, make_solution, relative_gap

# HiGHS options beyond scipy's documented ones, passed through verbatim (scipy warns, we silence it): the
# incumbent as objective cutoff, and no RINS/RENS sub-MIPs (they re-find what the cutoff already knows)
HIGHS_OPTIONS = {"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False}
DUAL_ITERATIONS = 30  # subgradient warm-up before the core LP; the LP does the real work
HEURISTIC_CORE = 120  # exact cores larger than this first get a quick MIP on this many items nearest the break
HEURISTIC_SHARE = 0.2  # share of the remaining time that quick MIP may use
PRESOLVE = False  # HiGHS presolve mostly re-derives the fixings; measured no faster on cores
_OBJECTIVE_SCALE = 1e6  # HiGHS stops at an absolute gap of 1e-6: scale the core's values to sum to 10^6


def solve_exact(problem: KnapsackProblem, *, time_limit: float = 10.0, gap_tolerance: float = 1e-4) -> KnapsackSolution:
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
    p = prepared
    incumbent = search.selected
    base, core = _fix(p, search, incumbent)
    size = HEURISTIC_CORE
    # quick MIPs on growing sets of items nearest the break improve the incumbent, which shrinks the exact core
    while core is not None and core.size > size and deadline - time.perf_counter() > 1e-3:
        in_core, ones = core_items(search.relaxation, search.multipliers, size)
        h_base = p.fixed.copy()
        h_base[search.relaxation.items[ones]] = True
        if p.multiple_choice:
            h_base, h_core = _single_choices(p, search.relaxation.items[in_core], h_base)
        else:
            h_core = search.relaxation.items[in_core]
        budget = HEURISTIC_SHARE * (deadline - time.perf_counter())
        found, _, _ = _milp(p, h_base, h_core, incumbent, gap_tolerance, abs(search.bound), budget)
        if found is not None and (incumbent is None or p.values[found].sum() > p.values[incumbent].sum()):
            incumbent = found
            base, core = _fix(p, search, incumbent)
            gap = relative_gap(float(p.values[incumbent].sum()), search.bound)
            if gap <= gap_tolerance:
                return _finish(p, search, incumbent, None, None, started, gap_tolerance, proven=False,
                               note=f"LP bound met after a MIP on the {h_core.size} items nearest the break")
        size *= 4
    if core is None or core.size == 0:  # nothing can beat the incumbent (or the fixed selection is the answer)
        candidate = base if core is not None and p.fits(p.norm[:, base].sum(axis=1)) else None
        return _finish(p, search, incumbent, candidate, None, started, gap_tolerance, proven=True,
                       note="reduced-cost fixing left no better selection")
    remaining = deadline - time.perf_counter()
    if remaining <= 1e-3:
        return _finish(p, search, incumbent, None, None, started, gap_tolerance, proven=False,
                       note="time limit reached before the MIP could start")
    found, core_bound, res = _milp(p, base, core, incumbent, gap_tolerance, abs(search.bound), remaining)
    return _finish(p, search, incumbent, found, core_bound, started, gap_tolerance, proven=res.status in (0, 2),
                   note=f"HiGHS on a core of {core.size} of {p.problem.n_items} items: {res.message}")


def _fix(p: Prepared, search: DualSearch, incumbent: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Reduced-cost fixing against the incumbent: (items every better selection keeps, undecided items).

    The core is None when no selection can beat the incumbent.
    """
    relax = search.relaxation
    r = relax.reduced(search.multipliers)
    z = float(p.values[incumbent].sum()) if incumbent is not None else -np.inf
    margin = search.bound - z + 1e-9 * (abs(search.bound) + 1.0)
    base = p.fixed.copy()
    if p.multiple_choice:
        if not relax.items.size:
            return base, relax.items
        alive = np.maximum.reduceat(r, relax.starts)[relax.group_pos] - r < margin
        if (np.bincount(relax.group_pos[alive], minlength=relax.starts.size) == 0).any():
            return base, None
        base, core = _single_choices(p, relax.items[alive], base)
    else:
        base[relax.items[r >= margin]] = True
        core = relax.items[np.abs(r) < margin]
    if (p.norm[:, base].sum(axis=1) > 1.0 + 1e-12).any():
        return base, None
    return base, core


def _single_choices(p: Prepared, items: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiple-choice candidates: groups left with one candidate are decided (added to base)."""
    count = np.bincount(p.group[items], minlength=p.n_groups)
    base = base.copy()
    base[items[count[p.group[items]] == 1]] = True
    return base, items[count[p.group[items]] > 1]


def _milp(p: Prepared, base: np.ndarray, core: np.ndarray, incumbent: np.ndarray | None, gap_tolerance: float,
          bound: float, time_limit: float):
    """HiGHS on the core with `base` kept; returns (selection or None, core bound or None, HiGHS result).

    The incumbent is the objective cutoff; the core's relative gap is widened so the whole selection meets
    `gap_tolerance`. A core bound of -inf means HiGHS proved nothing beats the incumbent.
    """
    rhs = 1.0 - p.norm[:, base].sum(axis=1)
    values = p.values[core]
    scale = _OBJECTIVE_SCALE / max(float(np.abs(values).sum()), 1e-300)
    base_value = float(p.values[base].sum())
    core_gap = min(gap_tolerance * bound / max(abs(bound - base_value), 1e-300), 1.0) if gap_tolerance > 0 else 0.0
    rows = [LinearConstraint(sparse.csr_array(p.norm[:, core]), -np.inf, rhs)] if p.norm.shape[0] else []
    if p.multiple_choice:
        _, row = np.unique(p.group[core], return_inverse=True)
        groups = sparse.csr_array((np.ones(core.size), (row, np.arange(core.size))), shape=(row.max() + 1, core.size))
        rows.append(LinearConstraint(groups, 1.0, 1.0))
    options = {"time_limit": max(time_limit, 1e-3), "mip_rel_gap": core_gap, "presolve": PRESOLVE, "disp": False,
               **HIGHS_OPTIONS}
    if incumbent is not None:
        options["objective_bound"] = -(float(p.values[incumbent].sum()) - base_value) * scale
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
    return found, core_bound, res


def _finish(prepared: Prepared, search: DualSearch, incumbent: np.ndarray | None, found: np.ndarray | None,
            core_bound: float | None, started: float, gap_tolerance: float, *, proven: bool,
            note: str) -> KnapsackSolution:
    """Best of incumbent and core solution, with bound max(incumbent, core bound) capped by the LP bound."""
    p = prepared
    candidates = [s for s in (incumbent, found) if s is not None]
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
        bound = value if core_bound is None else max(core_bound, value)
    else:
        bound = search.bound if core_bound is None else max(core_bound, value)
    bound = min(bound, search.bound)
    gap = relative_gap(value, bound)
    optimal = gap is not None and gap <= max(gap_tolerance, 1e-9 if proven else 0.0)
    verdict = "optimal" if proven else "optimal within gap tolerance" if optimal else "time limit reached; best found"
    status = f"{verdict} ({note}; gap {gap:.2e})"
    return make_solution(p, selected, solver="exact", started=started, upper_bound=bound, optimal=optimal,
                         status=status)


_STDOUT_LOCK = threading.Lock()
_HIGHS_DEBUG = b"HighsMipSolverData::transformNewIntegerFeasibleSolution"


@contextlib.contextmanager
def _native_stdout_silenced():
    """Drop HiGHS's stray debug line from C-level stdout while it runs; everything else passes through.

    HiGHS 1.12 (scipy 1.17) printf's "HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();"
    whenever it maps a solution back after a root restart, whatever the log options, which would litter the
    pruning progress display. fd 1 goes to a temporary file during the solve; afterwards every other byte
    (say, from a progress thread) is written to the real stdout, in order, just late.
    """
    with _STDOUT_LOCK:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError, AttributeError):  # no usable fd 1 (e.g. embedded interpreters)
            yield
            return
        with tempfile.TemporaryFile() as capture:
            try:
                os.dup2(capture.fileno(), 1)
                yield
            finally:
                with contextlib.suppress(OSError, AttributeError):
                    ctypes.CDLL(None).fflush(None)  # HiGHS's printf output may still sit in C's buffer
                with contextlib.suppress(ValueError, OSError):
                    sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)
                capture.seek(0)
                kept = b"".join(line for line in capture.read().splitlines(keepends=True) if _HIGHS_DEBUG not in line)
                if kept:
                    os.write(1, kept)
