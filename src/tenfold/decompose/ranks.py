"""Choose one rank per layer under a global target: a multiple-choice knapsack over the sensitivity table.

Each candidate layer is a group; its items are "keep" and the candidate ranks. An item's value is minus its
measured loss increase (``value="loss"``) or minus its relative reconstruction error (``value="error"``, the
data-free baseline selector), shifted per group so every value is >= 0 (one item per group is chosen, so the
shift does not change the optimum). Its cost is the parameters or bits it stores, or — for hardware terms —
the resource vector of :func:`tenfold.decompose.accounting.regenerated_layer_resources`.

Targets (comma-separated terms, all must hold):

* ``"10x"`` (or the number 10): 10 times fewer parameters;
* ``"params<=50000"`` / ``"params<=0.1x"``: an absolute parameter count, or a share of the original;
* ``"bits<=4e5"`` / ``"bits<=0.05x"``: stored bits (original weights at ``weight_bits``);
* ``"dsp<=0.5x"``, ``"bram<=30%"``, ``"lut<=50000"``, ``"ff<=…"``: hardware budgets of the whole model
  (x = times the undecomposed estimate, % = of the device); need ``baseline_cost`` and ``hls_config``.

``scope`` makes explicit what parameter and bit targets count: ``"decomposable"`` (the candidate layers'
weights only) or ``"model"`` (every parameter of the model, so biases and other layers eat into the budget).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tenfold.decompose.accounting import LayerAccount, account_layer, regenerated_layer_resources
from tenfold.decompose.sensitivity import RankSensitivity, SensitivityConfig
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.cost import CostParams, ModelCost
from tenfold.hardware.hls_config import HLSConfig
from tenfold.knapsack import InfeasibleBudgetError, KnapsackProblem, solve

__all__ = [
    "SCOPES",
    "VALUES",
    "InfeasibleRankTargetError",
    "PlanRow",
    "RankPlan",
    "RankTarget",
    "TargetLimit",
    "select_ranks",
]

SCOPES = ("decomposable", "model")
VALUES = ("loss", "error")
HARDWARE_RESOURCES = ("dsp", "bram18", "lut", "ff")
_ALIASES = {"params": "params", "parameters": "params", "bits": "bits", "dsp": "dsp", "dsps": "dsp",
            "bram": "bram18", "bram18": "bram18", "lut": "lut", "luts": "lut", "ff": "ff", "ffs": "ff"}
_TERM = re.compile(r"^\s*(?P<resource>[A-Za-z_0-9]+)\s*<=\s*(?P<value>[0-9.eE+-]+)\s*(?P<unit>x|%)?\s*$")
_RATIO = re.compile(r"^\s*(?P<value>[0-9.eE+]+)\s*x\s*$")


class InfeasibleRankTargetError(InfeasibleBudgetError):
    """No choice of candidate ranks meets the target; ``best_ratio`` is the largest parameter reduction possible."""

    def __init__(self, message: str, minimum: np.ndarray, capacity: np.ndarray, resource_names: tuple[str, ...],
                 best_ratio: float) -> None:
        super().__init__(minimum, capacity, resource_names, message)
        self.best_ratio = best_ratio


@dataclass(frozen=True)
class TargetLimit:
    """One term: ``resource`` at most ``value`` in ``unit`` ("abs", "x" of the original, "%" of the device)."""

    resource: str
    value: float
    unit: str = "abs"

    def describe(self) -> str:
        if self.resource == "params" and self.unit == "x" and self.value > 0:
            return f"{1 / self.value:g}x"
        return f"{self.resource}<={self.value:g}{ {'abs': '', 'x': 'x', '%': '%'}[self.unit] }"


@dataclass(frozen=True)
class RankTarget:
    """All limits a plan must meet; ``RankTarget.parse("10x")`` and friends, see the module docstring."""

    limits: tuple[TargetLimit, ...]

    @classmethod
    def parse(cls, target: str | float | RankTarget) -> RankTarget:
        if isinstance(target, RankTarget):
            return target
        if isinstance(target, int | float) and not isinstance(target, bool):
            return cls((_ratio_limit(float(target), repr(target)),))
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(f"a rank target is a string like '10x', 'params<=50000' or 'bits<=0.05x', "
                              f"got {target!r}")
        limits = []
        for term in (t for t in re.split(r"[;,]", target) if t.strip()):
            ratio = _RATIO.match(term)
            if ratio:
                limits.append(_ratio_limit(_number(ratio["value"], term), term))
                continue
            match = _TERM.match(term)
            if not match:
                raise ConfigError(f"cannot parse target term {term.strip()!r}; write '10x' (10 times fewer "
                                  "parameters), 'params<=50000', 'bits<=0.05x', or a hardware budget such as "
                                  "'dsp<=0.5x' or 'bram<=30%'")
            resource = _ALIASES.get(match["resource"].lower())
            if resource is None:
                raise ConfigError(f"unknown resource {match['resource']!r} in target {term.strip()!r}; use one of "
                                  "params, bits, dsp, bram, lut, ff")
            value = _number(match["value"], term)
            unit = {"x": "x", "%": "%"}.get(match["unit"] or "", "abs")
            if unit == "%" and resource in ("params", "bits"):
                raise ConfigError(f"{resource} cannot be a % of the device in {term.strip()!r}; use an absolute "
                                  "number or 'x' (share of the original)")
            limits.append(TargetLimit(resource, value, unit))
        if not limits:
            raise ConfigError("the rank target is empty; give e.g. '10x' or 'params<=50000'")
        return cls(tuple(limits))

    @property
    def needs_hardware(self) -> bool:
        return any(limit.resource in HARDWARE_RESOURCES for limit in self.limits)

    def describe(self) -> str:
        return ",".join(limit.describe() for limit in self.limits)


def _number(text: str, term: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} in target {term.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"target values must be finite and >= 0, got {text!r} in {term.strip()!r}")
    return value


def _ratio_limit(ratio: float, text: str) -> TargetLimit:
    if not math.isfinite(ratio) or ratio < 1:
        raise ConfigError(f"a compression target is a ratio >= 1 such as '10x' (10 times fewer parameters), got "
                          f"{text!r}")
    return TargetLimit("params", 1.0 / ratio, "x")


@dataclass
class PlanRow:
    """One layer of a plan: the chosen rank (None = kept) and what it stores and costs."""

    name: str
    shape: tuple[int, ...]
    rank: int | None
    params_before: int
    params_after: int
    bits_before: int
    bits_after: int
    loss_increase: float
    relative_error: float
    resources: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "shape": list(self.shape), "rank": self.rank,
               "params_before": self.params_before, "params_after": self.params_after,
               "compression": self.params_before / self.params_after, "bits_before": self.bits_before,
               "bits_after": self.bits_after, "loss_increase": self.loss_increase,
               "relative_error": self.relative_error}
        if self.resources is not None:
            out["resources"] = dict(self.resources)
        return out


@dataclass
class RankPlan:
    """Which rank each layer gets, and what that is predicted to cost and save.

    ``ranks`` maps layer name → rank for the decomposed layers only (kept layers are absent), the format
    ``decompose_model(model, ranks)`` takes. ``params_*``/``bits_*``/``ratio`` are in the plan's ``scope``;
    the ``model_*`` counts always include every parameter. ``predicted_loss_increase`` sums the measured
    per-layer increases (additive approximation).
    """

    ranks: dict[str, int]
    rows: list[PlanRow]
    target: str
    scope: str
    value: str
    method: str
    precision: str
    predicted_loss_increase: float
    params_before: int
    params_after: int
    bits_before: int
    bits_after: int
    model_params_before: int
    model_params_after: int
    solver: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, dict[str, float]] | None = None  # hardware: {"before": …, "after": …} of the model

    @property
    def ratio(self) -> float:
        """Parameters before / after in the plan's scope."""
        return self.params_before / self.params_after

    @property
    def model_ratio(self) -> float:
        return self.model_params_before / self.model_params_after

    @property
    def status(self) -> str:
        return str(self.solver.get("status", ""))

    @property
    def gap(self) -> float | None:
        return self.solver.get("gap")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "ranks": dict(self.ranks), "target": self.target, "scope": self.scope, "value": self.value,
            "method": self.method, "precision": self.precision,
            "predicted_loss_increase": self.predicted_loss_increase,
            "params_before": self.params_before, "params_after": self.params_after, "ratio": self.ratio,
            "bits_before": self.bits_before, "bits_after": self.bits_after,
            "bit_ratio": self.bits_before / self.bits_after,
            "model_params_before": self.model_params_before, "model_params_after": self.model_params_after,
            "model_ratio": self.model_ratio, "solver": dict(self.solver),
            "layers": [row.to_dict() for row in self.rows],
        }
        if self.resources is not None:
            out["resources"] = {k: dict(v) for k, v in self.resources.items()}
        return out


# ---------------------------------------------------------------------------------------------- selection


def select_ranks(sensitivity: RankSensitivity, target: str | float | RankTarget = "10x", *, value: str = "loss",
                 scope: str = "decomposable", weight_bits: int = 16, scale_bits: int = 8,
                 baseline_cost: ModelCost | None = None, hls_config: HLSConfig | None = None,
                 cost_params: CostParams | None = None, solver: str = "auto", time_limit: float = 10.0
                 ) -> RankPlan:
    """One rank per layer (or keep) that meets ``target`` and loses the least (see the module docstring).

    ``weight_bits`` is the width the original weights are stored at (the "before" of bit targets and of the
    kept layers' bits); ``baseline_cost`` (``tenfold.hardware.estimate`` of the undecomposed model) and
    ``hls_config`` are needed for hardware terms. Raises :class:`InfeasibleRankTargetError` with the best
    achievable reduction when no choice of candidates meets the target.
    """
    if not isinstance(sensitivity, RankSensitivity):
        raise ConfigError(f"select_ranks needs the RankSensitivity from rank_sensitivity(), got "
                          f"{type(sensitivity).__name__}")
    if value not in VALUES:
        raise ConfigError(f"value must be one of {', '.join(VALUES)} ('loss' = measured loss increase, 'error' = "
                          f"reconstruction error only); got {value!r}")
    if scope not in SCOPES:
        raise ConfigError(f"scope must be 'decomposable' (the candidate layers' weights) or 'model' (every "
                          f"parameter); got {scope!r}")
    target = RankTarget.parse(target)
    if target.needs_hardware and (baseline_cost is None or hls_config is None):
        raise ConfigError(f"target {target.describe()!r} has hardware terms: pass baseline_cost="
                          "tenfold.hardware.estimate(model, input_shape, config) and hls_config=config")
    config = sensitivity.config
    items = _items(sensitivity, weight_bits, scale_bits)
    hardware = _hardware_costs(items, baseline_cost, hls_config, cost_params) if target.needs_hardware else None
    groups = np.array([g for g, _, _ in items])
    scores = np.array([-(c.loss_increase if value == "loss" else c.relative_error) for _, c, _ in items])
    for g in np.unique(groups):  # values >= 0 for the solver; one item per group, so the optimum is unchanged
        scores[groups == g] -= scores[groups == g].min()
    names, columns, capacity = _constraints(target, items, sensitivity, scope, weight_bits, baseline_cost, hardware)
    costs = np.stack(columns, axis=1)
    _check_feasible(target, names, costs, groups, capacity, items, sensitivity, scope)
    problem = KnapsackProblem(scores, costs, capacity, resource_names=tuple(names), groups=groups)
    try:
        solution = solve(problem, method=solver, time_limit=time_limit)
    except InfeasibleBudgetError as error:
        raise _infeasible(str(error), names, costs, groups, capacity, items, sensitivity, scope) from error
    chosen = [items[i] for i in np.flatnonzero(solution.selected)]
    return _plan(chosen, sensitivity, target, scope, value, config, solution.as_dict(), hardware,
                 np.flatnonzero(solution.selected), baseline_cost)


Item = tuple[int, Any, LayerAccount]  # (group, RankCandidate, account)


def _items(sensitivity: RankSensitivity, weight_bits: int, scale_bits: int) -> list[Item]:
    config = sensitivity.config
    items = []
    for g, layer in enumerate(sensitivity.layers):
        for candidate in layer.candidates:
            if not (math.isfinite(candidate.loss_increase) and math.isfinite(candidate.relative_error)):
                continue  # a reconstruction that made the loss NaN/inf is never a choice
            account = account_layer(layer.shape, config.method, candidate.rank, name=layer.name,
                                    factor_bits=config.factor_bits, weight_bits=weight_bits, scale=config.scale,
                                    scale_bits=scale_bits)
            items.append((g, candidate, account))
    if not items:
        raise ConfigError("the sensitivity table has no layers; measure at least one layer first")
    return items


def _hardware_costs(items: list[Item], baseline: ModelCost, config: HLSConfig,
                    cost_params: CostParams | None) -> np.ndarray:
    """(n_items, 4) DSP/BRAM18/LUT/FF of every item."""
    data_width = config.default.precision.result.width
    out = np.zeros((len(items), len(HARDWARE_RESOURCES)))
    for i, (_, _, account) in enumerate(items):
        try:
            layer_cost = baseline.layer(account.name)
        except ModelError:
            raise ModelError(f"baseline_cost has no layer {account.name!r}: estimate the same model the "
                             "sensitivity was measured on") from None
        weight_width = config.layer(account.name).precision.weight.width
        out[i] = regenerated_layer_resources(account, layer_cost, weight_width=weight_width, data_width=data_width,
                                             device=baseline.device, params=cost_params)
    return out


def _constraints(target: RankTarget, items: list[Item], sensitivity: RankSensitivity, scope: str, weight_bits: int,
                 baseline: ModelCost | None, hardware: np.ndarray | None
                 ) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Resource names, item cost columns and capacities (fixed parts already subtracted) of every limit."""
    params = np.array([a.params_after for _, _, a in items], dtype=float)
    bits = np.array([a.bits_after for _, _, a in items], dtype=float)
    outside = sensitivity.other_params if scope == "model" else 0
    keeps = [a for _, c, a in items if c.rank is None]
    names, columns, capacity = [], [], []
    for limit in target.limits:
        if limit.resource in ("params", "bits"):
            column = params if limit.resource == "params" else bits
            fixed = outside * (1 if limit.resource == "params" else weight_bits)
            before = sum(a.params_before if limit.resource == "params" else a.bits_before for a in keeps) + fixed
            allowed = limit.value * before if limit.unit == "x" else limit.value
        else:
            assert baseline is not None and hardware is not None
            k = HARDWARE_RESOURCES.index(limit.resource)
            column = hardware[:, k]
            candidates = {a.name for a in keeps}
            fixed = sum(float(layer.resources()[k]) for layer in baseline.layers if layer.name not in candidates)
            if limit.unit == "x":
                allowed = limit.value * baseline.totals[limit.resource]
            elif limit.unit == "%":
                allowed = limit.value / 100.0 * baseline.device.capacity(limit.resource)
            else:
                allowed = limit.value
        names.append(limit.describe())
        columns.append(column)
        capacity.append(allowed - fixed)
    return names, columns, np.array(capacity, dtype=float)


def _check_feasible(target: RankTarget, names: list[str], costs: np.ndarray, groups: np.ndarray,
                    capacity: np.ndarray, items: list[Item], sensitivity: RankSensitivity, scope: str) -> None:
    minimum = _minimum(costs, groups)
    if (minimum > capacity + 1e-9 * np.abs(capacity)).any():
        bad = [n for n, m, c in zip(names, minimum, capacity, strict=True) if m > c + 1e-9 * abs(c)]
        raise _infeasible(f"target {target.describe()} cannot be met ({', '.join(bad)} too tight)", names, costs,
                          groups, capacity, items, sensitivity, scope)


def _minimum(costs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.array([[costs[groups == g, k].min() for k in range(costs.shape[1])] for g in np.unique(groups)]
                    ).sum(axis=0)


def _infeasible(reason: str, names: list[str], costs: np.ndarray, groups: np.ndarray, capacity: np.ndarray,
                items: list[Item], sensitivity: RankSensitivity, scope: str) -> InfeasibleRankTargetError:
    smallest: dict[int, LayerAccount] = {}
    for g, _, account in items:
        if g not in smallest or account.params_after < smallest[g].params_after:
            smallest[g] = account
    outside = sensitivity.other_params if scope == "model" else 0
    bits_each = items[0][2].weight_bits
    before = sum(a.params_before for a in smallest.values()) + outside
    after = sum(a.params_after for a in smallest.values()) + outside
    bits_before = sum(a.bits_before for a in smallest.values()) + outside * bits_each
    bits_after = sum(a.bits_after for a in smallest.values()) + outside * bits_each
    best = before / after
    minimum = _minimum(costs, groups)
    uses = "; ".join(f"{n}: the cheapest choices need {m:.6g}, the target allows {c:.6g}"
                     for n, m, c in zip(names, minimum, capacity, strict=True))
    message = (f"{reason}: {uses}. The smallest candidate ranks store {after:,} parameters "
               f"({'whole model' if scope == 'model' else 'decomposable layers'}), {best:.3g}x fewer than "
               f"{before:,} ({bits_before / bits_after:.3g}x fewer bits): that is the best achievable. Ask for at most "
               f"{best:.3g}x, add smaller ranks (larger ratios in SensitivityConfig), or include more layers")
    return InfeasibleRankTargetError(message, minimum, capacity, tuple(names), best)


def _plan(chosen: list[Item], sensitivity: RankSensitivity, target: RankTarget, scope: str, value: str,
          config: SensitivityConfig,
          solver: dict[str, Any], hardware: np.ndarray | None, indices: np.ndarray,
          baseline: ModelCost | None) -> RankPlan:
    rows = []
    for (_, candidate, account), index in zip(chosen, indices, strict=True):
        resources = None
        if hardware is not None:
            resources = dict(zip(HARDWARE_RESOURCES, (float(v) for v in hardware[index]), strict=True))
        rows.append(PlanRow(account.name, account.shape, candidate.rank, account.params_before, account.params_after,
                            account.bits_before, account.bits_after, candidate.loss_increase,
                            candidate.relative_error, resources))
    outside = sensitivity.other_params
    params_before = sum(r.params_before for r in rows)
    params_after = sum(r.params_after for r in rows)
    weight_bits = chosen[0][2].weight_bits
    in_scope = outside if scope == "model" else 0
    totals = None
    if hardware is not None and baseline is not None:
        before = baseline.totals
        after = dict(before)
        for row in rows:
            old = baseline.layer(row.name).resources()
            for k, name in enumerate(HARDWARE_RESOURCES):
                after[name] += row.resources[name] - float(old[k])  # type: ignore[index]
        totals = {"before": before, "after": after}
    return RankPlan(
        ranks={r.name: int(r.rank) for r in rows if r.rank is not None},
        rows=rows, target=target.describe(), scope=scope, value=value, method=config.method,
        precision=config.precision,
        predicted_loss_increase=float(sum(r.loss_increase for r in rows)),
        params_before=params_before + in_scope, params_after=params_after + in_scope,
        bits_before=sum(r.bits_before for r in rows) + in_scope * weight_bits,
        bits_after=sum(r.bits_after for r in rows) + in_scope * weight_bits,
        model_params_before=params_before + outside, model_params_after=params_after + outside,
        solver=solver, resources=totals,
    )
