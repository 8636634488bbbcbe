"""Lagrangian heuristic for very large instances (10^6 items): a feasible selection plus a proven bound.

Subgradient steps (Polyak step towards the best known value) on one multiplier per finite budget give
upper bounds L(lambda); a core LP (lp.py) then lands on the optimal multipliers. Primal selections come
from the greedy re-weighted by the current multipliers, which is exactly "drop the worst reduced-ratio
items of the relaxed solution until it fits, then fill"; seeded perturbations of the weights diversify it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tenfold.errors import ConfigError
from tenfold.knapsack.greedy import greedy, priced_pass, repair
from tenfold.knapsack.lp import lp_multipliers
from tenfold.knapsack.problem import InfeasibleBudgetError, KnapsackProblem, Prepared, prepare
from tenfold.knapsack.relaxation import Evaluation, Relaxation
from tenfold.knapsack.solution import KnapsackSolution, make_solution, relative_gap

PRIMAL_EVERY = 10  # subgradient iterations between two re-weighted greedy runs
STALL = 5  # iterations without a better bound before the step size halves
WARMUP = 10  # subgradient iterations before the core LP (a better start means a smaller core)
PERTURBED_PRIMALS = 3  # seeded re-weighted greedy runs around the final multipliers
REPAIR_STEPS = 100  # most downgrades tried when repairing the relaxed multiple-choice selection


@dataclass
class DualSearch:
    """Best primal found (None if no feasible selection was found), best bound and its multipliers."""

    selected: np.ndarray | None
    value: float
    bound: float
    multipliers: np.ndarray
    relaxation: Relaxation
    iterations: int
    lp_optimal: bool

    @property
    def gap(self) -> float | None:
        return relative_gap(self.value, self.bound) if self.selected is not None else None


class _Search:
    def __init__(self, prepared: Prepared, seed: int) -> None:
        self.prepared = prepared
        self.relax = Relaxation(prepared)
        self.rng = np.random.default_rng(seed)
        self.selected: np.ndarray | None = None
        self.value = -np.inf
        self.bound = np.inf
        self.lam = np.zeros(prepared.norm.shape[0])

    def offer(self, selected: np.ndarray | None) -> None:
        if selected is None:
            return
        value = float(self.prepared.values[selected].sum())
        if value > self.value:
            self.selected, self.value = selected, value

    def price(self, lam: np.ndarray) -> Evaluation:
        """Evaluate L(lam); keep it if it is the best bound; offer the relaxed selection if it fits."""
        evaluation = self.relax.evaluate(lam)
        if evaluation.bound < self.bound:
            self.bound, self.lam = evaluation.bound, np.maximum(lam, 0.0)
        if (evaluation.slack >= -1e-12).all():
            self.offer(self.relax.selection(evaluation.chosen))
        return evaluation

    def reweighted(self, lam: np.ndarray, perturb: float = 0.0) -> None:
        """Greedy with the multipliers as resource weights (kept positive so no budget is ignored)."""
        top = float(lam.max()) if lam.size else 0.0
        if top <= 0:
            mu = np.ones_like(lam)
        else:
            mu = lam + 1e-3 * top
            if perturb:
                mu = mu * np.exp(perturb * self.rng.standard_normal(mu.size))
        try:
            self.offer(greedy(self.prepared, mu)[0])
        except InfeasibleBudgetError as error:
            if error.proven:
                raise

    def done(self, tolerance: float) -> bool:
        gap = relative_gap(self.value, self.bound) if self.selected is not None else None
        return gap is not None and gap <= tolerance


def dual_search(prepared: Prepared, *, iterations: int = 200, gap_tolerance: float = 1e-4, seed: int = 0,
                deadline: float | None = None) -> DualSearch:
    """Greedy start, a subgradient warm-up, core-LP multipliers, primals at those multipliers, and more
    subgradient steps (with periodic primals) only while the LP step has not proven its multipliers optimal."""
    s = _Search(prepared, seed)
    m = prepared.norm.shape[0]
    try:
        selected, _, lam = greedy(prepared)
        s.offer(selected)
        if m:  # what solve_greedy returns, so no solver built on this search does worse than the greedy
            priced, _, priced_lam = priced_pass(prepared, selected, lam, relax=s.relax)
            s.offer(priced)
            s.price(priced_lam)
    except InfeasibleBudgetError as error:
        if error.proven:
            raise
        lam = np.full(m, max(float(np.abs(prepared.values).max(initial=0.0)), 1.0))
    state = _Subgradient(s, s.lam if np.isfinite(s.bound) else lam)
    state.run(min(WARMUP, iterations), gap_tolerance, deadline)
    lp_optimal = False
    if m and not s.done(gap_tolerance) and not _late(deadline):
        lam_lp, lp_optimal = lp_multipliers(s.relax, s.lam, deadline=deadline)
        s.price(lam_lp)
    if not s.done(gap_tolerance) and not _late(deadline):
        s.reweighted(s.lam)  # 0-1: this is "drop the worst-ratio relaxed items, then fill", vectorised
        if prepared.multiple_choice:  # downgrade the relaxed choices group by group instead
            s.offer(repair(prepared, s.relax.selection(s.relax.evaluate(s.lam).chosen), max_steps=REPAIR_STEPS))
    if not lp_optimal:
        state.lam = s.lam.copy()
        state.run(iterations - state.iterations, gap_tolerance, deadline)
    for _ in range(PERTURBED_PRIMALS):
        if s.done(gap_tolerance) or _late(deadline):
            break
        s.reweighted(s.lam, perturb=0.05)
    return DualSearch(s.selected, s.value, s.bound, s.lam, s.relax, state.iterations, lp_optimal)


def _late(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


class _Subgradient:
    """Projected subgradient with Polyak steps towards the best primal value; the step halves on stalls."""

    def __init__(self, search: _Search, lam: np.ndarray) -> None:
        self.search, self.lam = search, np.maximum(lam, 0.0)
        self.theta, self.iterations = 1.0, 0

    def run(self, iterations: int, gap_tolerance: float, deadline: float | None) -> None:
        s = self.search
        evaluation = s.price(self.lam)
        stall = 0
        for _ in range(max(iterations, 0)):
            if s.done(gap_tolerance) or _late(deadline) or self.theta < 1e-4:
                break
            direction = evaluation.slack.copy()
            direction[(self.lam <= 0) & (direction > 0)] = 0.0  # lambda cannot go below 0
            norm2 = float(direction @ direction)
            if norm2 <= 0:
                break  # the relaxed selection fits with complementary slackness: lambda is optimal
            target = s.value if s.selected is not None else s.bound - 0.05 * abs(s.bound)
            step = self.theta * max(evaluation.bound - target, 1e-12 * abs(evaluation.bound)) / norm2
            self.lam = np.maximum(self.lam - step * direction, 0.0)
            previous = s.bound
            evaluation = s.price(self.lam)
            self.iterations += 1
            if s.bound < previous - 1e-12 * abs(previous):
                stall = 0
            else:
                stall += 1
                if stall >= STALL:
                    self.theta, stall = self.theta / 2.0, 0
            if self.iterations % PRIMAL_EVERY == 0:
                s.reweighted(self.lam, perturb=0.1 if self.iterations > PRIMAL_EVERY else 0.0)


def solve_lagrangian(problem: KnapsackProblem, *, iterations: int = 200, seed: int = 0,
                     time_limit: float | None = None, gap_tolerance: float = 1e-4) -> KnapsackSolution:
    """Subgradient + core-LP multipliers with re-weighted greedy primals; for instances too big for HiGHS."""
    started = time.perf_counter()
    if iterations < 0:
        raise ConfigError(f"iterations must be >= 0, got {iterations}")
    prepared = prepare(problem)
    deadline = None if time_limit is None else started + time_limit
    result = dual_search(prepared, iterations=iterations, gap_tolerance=gap_tolerance, seed=seed, deadline=deadline)
    if result.selected is None:
        raise prepared.infeasible(
            "no feasible selection found by the Lagrangian heuristic: each resource alone fits, but no combination "
            "of one choice per group was found that fits all budgets at once; use method='exact' or raise the "
            "budget", proven=False)
    gap = result.gap
    optimal = gap is not None and gap <= 1e-12
    status = (f"{'optimal' if optimal else 'feasible'}: {result.iterations} subgradient iterations"
              f"{', LP-optimal multipliers' if result.lp_optimal else ''}, gap {gap:.2e}")
    return make_solution(prepared, result.selected, solver="lagrangian", started=started, status=status,
                         upper_bound=result.bound, optimal=optimal)
