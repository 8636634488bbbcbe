"""Optimal LP multipliers from a small core LP: the LP relaxation of 10^6 items in tens of milliseconds.

Solving the full LP relaxation with HiGHS takes seconds at 10^5 items, yet at the optimum almost every item
is decided by the sign of its reduced value. So: fix items far from the break to what the current
multipliers say, solve the LP on the core of undecided items with HiGHS, price every item with the new
duals, and move items whose fixing was wrong into the core. When nothing is wrong, the duals are optimal
for the full LP; either way the returned multipliers give a valid bound through `Relaxation.evaluate`.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from tenfold.knapsack.relaxation import Relaxation

CORE_SIZE = 2000  # smallest first core; it grows with sqrt(n) and doubles whenever it has to move


def lp_multipliers(relax: Relaxation, lam: np.ndarray, *, core_size: int = CORE_SIZE, rounds: int = 8,
                   deadline: float | None = None) -> tuple[np.ndarray, bool]:
    """Improve multipliers `lam` to the LP-optimal ones; returns (multipliers, proven LP-optimal)."""
    n = relax.items.size
    if n == 0 or relax.norm.shape[0] == 0:
        return np.zeros(relax.norm.shape[0]), True
    tol = 1e-9 * max(float(np.abs(relax.values).max()), 1e-300)
    lam = np.maximum(np.asarray(lam, dtype=float), 0.0)
    mc = relax.prepared.multiple_choice
    size = min(n, max(core_size, int(8 * np.sqrt(n))))
    in_core, ones = core_items(relax, lam, size)
    for _ in range(rounds):
        if deadline is not None and time.perf_counter() > deadline:
            break
        solved = _solve_core_mc(relax, in_core) if mc else _solve_core_01(relax, in_core, ones)
        if solved is None:  # the fixings overran a budget: a wider core around the break
            if size >= n:
                break
            size = min(n, 2 * size)
            in_core, ones = core_items(relax, lam, size)
            continue
        lam = solved
        r = relax.reduced(lam)
        if mc:
            core_best = np.maximum.reduceat(np.where(in_core, r, -np.inf), relax.starts)
            wrong = ~in_core & (r > core_best[relax.group_pos] + tol)
        else:
            wrong = ~in_core & ((ones & (r < -tol)) | (~ones & (r > tol)))
        count = int(wrong.sum())
        if count == 0:
            return lam, True
        if count <= size:  # a few wrong fixings: move them into the core
            in_core |= wrong
            ones &= ~wrong
        else:  # the multipliers moved a lot: re-centre a wider core on the new break
            size = min(n, 2 * size)
            in_core, ones = core_items(relax, lam, size)
    return lam, False


def core_items(relax: Relaxation, lam: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(core, kept outside the core): the `size` items around the break of the efficiency order under lam.

    0-1: items sorted by value per priced cost; the prefix before the window fits, so the core LP is feasible.
    Multiple-choice: the choices losing least against their group's best reduced value (plus every group's
    best), other choices are dropped.
    """
    n = relax.items.size
    in_core = np.zeros(n, dtype=bool)
    ones = np.zeros(n, dtype=bool)
    if size >= n:
        in_core[:] = True
        return in_core, ones
    if relax.prepared.multiple_choice:
        r = relax.reduced(lam)
        distance = np.maximum.reduceat(r, relax.starts)[relax.group_pos] - r
        in_core[np.argpartition(distance, size - 1)[:size]] = True
        in_core[distance <= 0] = True
        return in_core, ones
    weights = (lam if lam.any() else np.ones_like(lam)) @ relax.norm
    efficiency = np.full(n, np.inf)
    with np.errstate(over="ignore"):
        np.divide(relax.values, weights, out=efficiency, where=weights > 0)
    order = np.argsort(-efficiency)
    fits = np.ones(n, dtype=bool)
    for row, limit in zip(np.cumsum(np.take(relax.norm, order, axis=1), axis=1), relax.rhs, strict=True):
        fits &= row <= limit
    brk = int(np.argmin(fits)) if not fits.all() else n
    low = max(0, min(brk - size // 2, n - size))
    in_core[order[low : low + size]] = True
    ones[order[:low]] = True
    return in_core, ones


def _solve_core_01(relax: Relaxation, in_core: np.ndarray, ones: np.ndarray) -> np.ndarray | None:
    """Duals of the core LP with outside `ones` kept and the rest dropped; None if that overruns a budget."""
    rhs = relax.rhs - relax.norm[:, ones].sum(axis=1)
    core = np.flatnonzero(in_core)
    if core.size == 0:
        return np.zeros(relax.norm.shape[0]) if (rhs >= 0).all() else None
    res = linprog(-relax.values[core], A_ub=relax.norm[:, core], b_ub=rhs, bounds=(0, 1), method="highs")
    if res.status != 0:
        return None
    return np.maximum(-res.ineqlin.marginals, 0.0)


def _solve_core_mc(relax: Relaxation, in_core: np.ndarray) -> np.ndarray | None:
    """Duals of the multiple-choice core LP: groups with one core item are fixed, the others get a row."""
    m = relax.norm.shape[0]
    count = np.bincount(relax.group_pos[in_core], minlength=relax.starts.size)
    fixed = in_core & (count[relax.group_pos] == 1)
    free = np.flatnonzero(in_core & (count[relax.group_pos] > 1))
    rhs = relax.rhs - relax.norm[:, fixed].sum(axis=1)
    if free.size == 0:
        return np.zeros(m) if (rhs >= 0).all() else None
    _, row = np.unique(relax.group_pos[free], return_inverse=True)
    equal = sparse.csr_array((np.ones(free.size), (row, np.arange(free.size))), shape=(row.max() + 1, free.size))
    res = linprog(-relax.values[free], A_ub=relax.norm[:, free], b_ub=rhs, A_eq=equal, b_eq=np.ones(row.max() + 1),
                  bounds=(0, 1), method="highs")
    if res.status != 0:
        return None
    return np.maximum(-res.ineqlin.marginals, 0.0)
