"""The knapsack instance pruning hands to the solvers, its checks, and the normalised form the solvers share.

Pruning keeps the most valuable structures (or, in multiple-choice mode, one rank per layer) whose summed
resource cost fits the FPGA budget. Every solver starts from `prepare`, which validates the instance, proves a
budget impossible before any search starts, and rescales each finite budget to 1 so all resources are
comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.errors import ConfigError

# used <= capacity + FEASIBILITY_RTOL * |capacity|: float sums differ in the last bits with summation order
FEASIBILITY_RTOL = 1e-9


class InfeasibleBudgetError(ConfigError):
    """No selection meets the budget; `minimum` is the smallest achievable use per resource.

    `proven` is False when only a heuristic failed to find a feasible selection (multiple-choice instances
    whose per-resource minima fit but whose joint feasibility is NP-hard); `solve` then retries exactly.
    """

    def __init__(self, minimum: np.ndarray, capacity: np.ndarray, resource_names: tuple[str, ...] | None = None,
                 detail: str | None = None, *, proven: bool = True) -> None:
        self.minimum = np.asarray(minimum, dtype=float)
        self.capacity = np.asarray(capacity, dtype=float)
        self.resource_names = resource_names
        self.proven = proven
        super().__init__(detail or self._describe())

    def _describe(self) -> str:
        names = _names(self.resource_names, len(self.capacity))
        bad = [f"{n}<={c:g} but the smallest achievable use is {n}={m:g}"
               for n, m, c in zip(names, self.minimum, self.capacity, strict=True) if m > _limit(c)]
        ok = [f"{n}<={c:g} ok at {m:g}" for n, m, c in zip(names, self.minimum, self.capacity, strict=True)
              if m <= _limit(c)]
        text = "budget infeasible: " + "; ".join(bad)
        if ok:
            text += f" ({', '.join(ok)})"
        return text + "; raise the budget or allow more pruning (fewer required items)"


@dataclass
class KnapsackProblem:
    """Choose items to maximise total value subject to one budget per resource.

    0-1 mode (groups=None): any subset; `required` items must be kept. Multiple-choice mode: exactly one item
    per group (e.g. one rank per layer); a required item forces its group's choice. Values may be negative
    (such items are only taken when required or forced by a group); costs must be >= 0. A capacity of np.inf
    leaves that resource unconstrained.
    """

    values: np.ndarray
    costs: np.ndarray
    capacity: np.ndarray
    resource_names: tuple[str, ...] | None = None
    groups: np.ndarray | None = None
    required: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            self.values = np.asarray(self.values, dtype=float)
            self.costs = np.asarray(self.costs, dtype=float)
            self.capacity = np.asarray(self.capacity, dtype=float)
            if self.groups is not None:
                self.groups = np.asarray(self.groups)
            if self.required is not None:
                self.required = np.asarray(self.required)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"knapsack arrays must be numeric: {error}") from error
        if self.resource_names is not None:
            self.resource_names = tuple(str(name) for name in self.resource_names)

    @property
    def n_items(self) -> int:
        return int(self.values.shape[0]) if self.values.ndim else 0

    @property
    def n_resources(self) -> int:
        return int(self.capacity.shape[0]) if self.capacity.ndim else 0

    @property
    def multiple_choice(self) -> bool:
        return self.groups is not None

    def validate(self) -> None:
        """Raise ConfigError naming the first malformed array, so bad input never reaches a solver."""
        if self.values.ndim != 1:
            raise ConfigError(f"values must be a 1-D array (n_items,), got shape {self.values.shape}")
        n = self.values.shape[0]
        if self.capacity.ndim != 1:
            raise ConfigError(f"capacity must be a 1-D array (n_resources,), got shape {self.capacity.shape}; "
                              "wrap a single budget as [budget]")
        m = self.capacity.shape[0]
        if self.costs.shape != (n, m):
            raise ConfigError(f"costs must have shape (n_items, n_resources) = ({n}, {m}), got {self.costs.shape}; "
                              "for one resource pass costs[:, None]")
        if not np.isfinite(self.values).all():
            raise ConfigError(f"values contain NaN or inf at items {_first(~np.isfinite(self.values))}; "
                              "replace them with finite importances")
        if not np.isfinite(self.costs).all():
            rows = _first(~np.isfinite(self.costs).all(axis=1))
            raise ConfigError(f"costs contain NaN or inf at items {rows}; every cost must be a finite number")
        if (self.costs < 0).any():
            rows = _first((self.costs < 0).any(axis=1))
            raise ConfigError(f"costs must be >= 0, negative at items {rows}; a structure cannot free resources")
        if np.isnan(self.capacity).any() or (self.capacity == -np.inf).any():
            raise ConfigError(f"capacity must be a number or +inf (unconstrained), got {self.capacity.tolist()}")
        if self.resource_names is not None and len(self.resource_names) != m:
            raise ConfigError(f"resource_names has {len(self.resource_names)} names for {m} resources")
        if self.required is not None:
            if self.required.shape != (n,):
                raise ConfigError(f"required must have shape ({n},), got {self.required.shape}")
            if self.required.dtype != bool and not np.isin(self.required, (0, 1)).all():
                raise ConfigError("required must be boolean (True = the item must be kept)")
            self.required = self.required.astype(bool)
        if self.groups is not None:
            if self.groups.shape != (n,):
                raise ConfigError(f"groups must have shape ({n},), got {self.groups.shape}")
            if not np.issubdtype(self.groups.dtype, np.integer):
                if not (np.issubdtype(self.groups.dtype, np.floating) and np.isfinite(self.groups).all()
                        and (self.groups == np.round(self.groups)).all()):
                    raise ConfigError("groups must be integer labels (one label per item; one item per label is "
                                      "selected)")
                self.groups = self.groups.astype(np.int64)
            if self.required is not None and self.required.any():
                labels, counts = np.unique(self.groups[self.required], return_counts=True)
                if (counts > 1).any():
                    raise ConfigError(f"groups {labels[counts > 1].tolist()[:5]} have more than one required item, "
                                      "but multiple-choice mode selects exactly one item per group")

    def minimum_usage(self) -> np.ndarray:
        """Smallest achievable use of each resource on its own (a necessary condition for feasibility)."""
        required = self.required if self.required is not None else np.zeros(self.n_items, dtype=bool)
        if self.groups is None:
            return self.costs[required.astype(bool)].sum(axis=0)
        labels, group = np.unique(self.groups, return_inverse=True)
        costs = self.costs
        if required.any():  # a required item is its group's only choice
            forced = np.zeros(len(labels), dtype=bool)
            forced[group[required]] = True
            keep = required | ~forced[group]
            costs, group = costs[keep], group[keep]
        minimum = np.full((len(labels), self.n_resources), np.inf)
        np.minimum.at(minimum, group, costs)
        return minimum.sum(axis=0)

    def is_feasible(self, selected: np.ndarray) -> bool:
        """True if `selected` (bool per item) keeps the required items, one item per group, and fits the budget."""
        selected = np.asarray(selected)
        if selected.shape != (self.n_items,):
            raise ConfigError(f"selection must have shape ({self.n_items},), got {selected.shape}")
        selected = selected.astype(bool)
        if self.required is not None and (self.required.astype(bool) & ~selected).any():
            return False
        if self.groups is not None:
            labels, group = np.unique(self.groups, return_inverse=True)
            if (np.bincount(group[selected], minlength=len(labels)) != 1).any():
                return False
        used = self.costs[selected].sum(axis=0)
        return bool((used <= _limit(self.capacity)).all())


def _limit(capacity):
    return capacity + FEASIBILITY_RTOL * np.abs(capacity)


def _names(names: tuple[str, ...] | None, m: int) -> tuple[str, ...]:
    return tuple(names) if names is not None else tuple(f"resource{k}" for k in range(m))


def _first(mask: np.ndarray, count: int = 5) -> list[int]:
    return np.flatnonzero(mask)[:count].tolist()


@dataclass
class Prepared:
    """A validated instance in the solvers' common form.

    `norm` (resources × items, resource-major so per-resource passes are contiguous) holds costs divided by
    capacity for the finite, positive budgets only (each such budget becomes 1);
    zero budgets are enforced by `allowed`, infinite ones drop out. 0-1 mode: `fixed` items are always kept
    (required, or free of every finite resource with value >= 0) and `free` items are the ones worth deciding
    (allowed, not fixed, value > 0). Multiple-choice mode: `group` maps items to 0..n_groups-1 and each group
    picks one `allowed` item.
    """

    problem: KnapsackProblem
    values: np.ndarray
    norm: np.ndarray
    allowed: np.ndarray
    fixed: np.ndarray
    free: np.ndarray
    group: np.ndarray | None
    n_groups: int

    @property
    def multiple_choice(self) -> bool:
        return self.group is not None

    @property
    def residual(self) -> np.ndarray:
        """Normalised budget left after the fixed items (0-1 mode); 1 per resource in multiple-choice mode."""
        return 1.0 - self.norm[:, self.fixed].sum(axis=1)

    def fits(self, usage: np.ndarray) -> bool:
        """Whether a normalised usage vector respects every budget (with the shared float tolerance)."""
        return bool((usage <= 1.0 + FEASIBILITY_RTOL).all())

    def infeasible(self, detail: str | None = None, *, proven: bool = True) -> InfeasibleBudgetError:
        p = self.problem
        return InfeasibleBudgetError(p.minimum_usage(), p.capacity, p.resource_names, detail, proven=proven)


def prepare(problem: KnapsackProblem) -> Prepared:
    """Validate, prove an impossible budget early, and normalise the instance for the solvers."""
    if not isinstance(problem, KnapsackProblem):
        raise ConfigError(f"expected a KnapsackProblem, got {type(problem).__name__}")
    problem.validate()
    capacity, costs = problem.capacity, problem.costs
    minimum = problem.minimum_usage()
    if (minimum > _limit(capacity)).any():
        raise InfeasibleBudgetError(minimum, capacity, problem.resource_names)
    n = problem.n_items
    finite = np.flatnonzero(np.isfinite(capacity))
    positive = finite[capacity[finite] > 0]
    columns = np.ascontiguousarray(costs.T[finite])  # resource-major: one contiguous pass per budget
    allowed = np.ones(n, dtype=bool)  # items that fit on their own
    for column, limit in zip(columns, _limit(capacity[finite]), strict=True):
        allowed &= column <= limit
    norm = columns[capacity[finite] > 0] / capacity[positive][:, None]
    values = problem.values
    required = problem.required if problem.required is not None else np.zeros(n, dtype=bool)
    if problem.groups is None:
        costless = ~norm.any(axis=0) & allowed & (values >= 0)
        fixed = required | costless
        free = allowed & ~fixed & (values > 0)
        return Prepared(problem, values, norm, allowed, fixed, free, None, 0)
    labels, group = np.unique(problem.groups, return_inverse=True)
    if required.any():
        forced = np.zeros(len(labels), dtype=bool)
        forced[group[required]] = True
        allowed &= required | ~forced[group]
    empty = np.bincount(group[allowed], minlength=len(labels)) == 0
    if empty.any():
        names = _names(problem.resource_names, problem.n_resources)
        bad = int(np.argmax(empty))
        limit = _limit(capacity)
        why = []
        for item in np.flatnonzero(group == bad)[:4]:
            over = [f"{nm}={c:g} > {cap:g}" for nm, c, cap, lim in zip(names, costs[item], capacity, limit, strict=True)
                    if c > lim]
            why.append(f"item {item} needs {', '.join(over) or 'a forced choice elsewhere'}")
        raise InfeasibleBudgetError(minimum, capacity, problem.resource_names,
                                    f"budget infeasible: every choice in group {labels[bad]} exceeds the budget on its "
                                    f"own ({'; '.join(why)}); raise the budget or add cheaper choices to that group")
    none = np.zeros(n, dtype=bool)
    return Prepared(problem, values, norm, allowed, none, allowed.copy(), group.astype(np.int64), len(labels))
