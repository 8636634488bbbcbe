"""The Lagrangian relaxation of the budget rows: for any multipliers lambda >= 0 it gives a valid upper bound.

Relaxing sum_i a_ik x_i <= b_k with lambda_k leaves a problem solved item by item (0-1: keep i when its
reduced value v_i - lambda·a_i is positive; multiple-choice: each group's best reduced value), so the dual
bound L(lambda) = lambda·b + sum max(0, v - lambda·A) costs one pass over the items. The exact, greedy and
Lagrangian solvers all price multipliers here; the reduced values also drive reduced-cost fixing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.knapsack.problem import Prepared


@dataclass
class Evaluation:
    """L(lambda), the relaxed selection and the subgradient b - A x (budget left over)."""

    bound: float
    slack: np.ndarray
    _items: np.ndarray
    _local: np.ndarray  # positions into _items, or a boolean mask over them (0-1 mode)

    @property
    def chosen(self) -> np.ndarray:
        """Item indices of the relaxed selection (computed on demand: most callers only need bound and slack)."""
        return self._items[self._local]


class Relaxation:
    """Cached item data for fast repeated evaluation of L(lambda) on 10^6 items."""

    def __init__(self, prepared: Prepared) -> None:
        p = prepared
        self.prepared = p
        if p.multiple_choice:
            items = np.flatnonzero(p.allowed)
            items = items[np.argsort(p.group[items], kind="stable")]
            group = p.group[items]
            self.starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if items.size else np.zeros(0, int)
            self.group_pos = np.cumsum(np.r_[False, group[1:] != group[:-1]]) if items.size else group
            self.rhs = np.ones(p.norm.shape[0])
            self.constant = 0.0
        else:
            items = np.flatnonzero(p.free)
            self.rhs = np.maximum(p.residual, 0.0)
            self.constant = float(p.values[p.fixed].sum())
        self.items = items
        self.values = p.values[items]
        self.norm = p.norm if items.size == p.norm.shape[1] and (np.diff(items) > 0).all() else np.take(
            p.norm, items, axis=1)

    def reduced(self, lam: np.ndarray) -> np.ndarray:
        """Reduced values v_i - lambda·a_i of the cached items."""
        return self.values - lam @ self.norm

    def evaluate(self, lam: np.ndarray) -> Evaluation:
        """L(lambda) (a valid upper bound for any lambda >= 0), its maximiser and the subgradient."""
        lam = np.maximum(lam, 0.0)
        r = self.reduced(lam)
        if self.prepared.multiple_choice:
            if not self.items.size:
                return Evaluation(float(lam @ self.rhs), self.rhs.copy(), self.items, self.items)
            best = np.maximum.reduceat(r, self.starts)
            hit = np.flatnonzero(r >= best[self.group_pos])
            first = np.r_[True, self.group_pos[hit][1:] != self.group_pos[hit][:-1]]
            local = hit[first]
            bound = float(lam @ self.rhs + best.sum())
            slack = self.rhs - self.norm[:, local].sum(axis=1)
        else:
            local = r > 0
            bound = self.constant + float(lam @ self.rhs + np.maximum(r, 0.0).sum())
            slack = self.rhs - self.norm @ local.astype(float)
        return Evaluation(bound, slack, self.items, local)

    def selection(self, chosen: np.ndarray) -> np.ndarray:
        """A full boolean selection from relaxed item indices (plus the always-kept items)."""
        selected = self.prepared.fixed.copy()
        selected[chosen] = True
        return selected
