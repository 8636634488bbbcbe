"""The iterative resource-aware pruner: importance → knapsack under a budget → masks → fine-tune → verify.

Each step prices every structure with the hardware model, values it by its importance, and lets a
multi-dimensional knapsack keep the most valuable structures that fit a budget that tightens step by step
(constant, polynomial or binary-search schedule). Masked fine-tuning follows; a step is accepted only if
validation accuracy stays within `tolerance` of the unpruned model, and the best accepted model is kept.
Every step is checkpointed atomically, so an interrupted run resumes to the same result.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tenfold.errors import CheckpointError, ConfigError
from tenfold.hardware.cost import CostModel, ModelCost
from tenfold.hardware.estimate import estimate
from tenfold.hardware.hls_config import HLSConfig
from tenfold.io import atomic_torch_save
from tenfold.knapsack.solve import METHODS as SOLVERS
from tenfold.prune.budget import Budget, Limit
from tenfold.prune.constants import shift_add_lock
from tenfold.prune.importance import METHODS as IMPORTANCES
from tenfold.prune.importance import NORMALISATIONS, structure_values, weight_saliency
from tenfold.prune.masks import (
    GroupLasso,
    MaskedFinetune,
    apply_masks,
    current_masks,
    ensure_mask_buffers,
    reset_masks,
    sparsity,
)
from tenfold.prune.permute import apply_orders, choose_orders
from tenfold.prune.schedule import Schedule
from tenfold.prune.structures import RESOURCES, STRUCTURES, StructureSet, build_structures, structure_masks
from tenfold.train import TrainConfig, evaluate, fit
from tenfold.train.augment import frozen_teacher
from tenfold.train.progress import ProgressReporter, make_reporter

STATE_FILE = "prune_state.pt"


@dataclass
class PruneConfig:
    """What to prune, how hard, and how carefully."""

    budget: str = "dsp<=0.5x"
    structure: str = "pattern"
    importance: str = "taylor"
    normalize: str = "auto"
    schedule: str = "polynomial"
    steps: int = 4
    retries: int = 2  # after a rejected step, bisect towards it this many more times
    tolerance: float = 0.01
    # Each step is judged on the validation set, so its fine-tuning ends on its last epoch: restoring the best of
    # several epochs on that same set made the tolerance optimistic (jet MLP: val -0.60, test -1.22 points)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, lr=1e-3, restore_best=False))
    regularization: float = 0.0
    rewind: bool = False
    solver: str = "auto"
    time_limit: float = 10.0
    importance_batches: int = 8
    layers: list[str] | None = None
    seed: int = 0
    repair: bool = True  # one more step at the full budget when fine-tuning left the accepted model over it
    recovery_epochs: int = 0  # extra fine-tuning for a step that ends below the tolerance, before rejecting it
    # Latency / RF 1 layers: weights priced as shift-add constants (few CSD digits, no DSP) stay so while
    # fine-tuning (straight-through projection), so the DSP count the knapsack chose survives training; with a
    # LUT term in the budget, DSP products also stay DSP products (their LUT cost holds too)
    lock_constants: bool = True
    uniform_costs: bool = False  # benchmarks only: price every structure equally, as hls4ml's DAP does
    # reorder hidden channels first (same function) so each multiplier pattern holds weights of like importance;
    # only pattern/block structures at a reuse factor > 1 have an order to gain from
    permute: bool = False
    # after the last step: this many more epochs on the final masks (a full cosine cycle), discarded if it ends
    # below the tolerance or raises a resource over the budget
    final_epochs: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"tolerance is an absolute accuracy drop in [0, 1), got {self.tolerance}")
        if self.regularization < 0:
            raise ConfigError(f"regularization must be >= 0, got {self.regularization}")
        # names are checked here, not at the first step, so a typo fails before any training is spent
        for name, value, allowed in (("structure", self.structure, STRUCTURES),
                                     ("importance", self.importance, IMPORTANCES),
                                     ("normalize", self.normalize, NORMALISATIONS),
                                     ("solver", self.solver, SOLVERS)):
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        if self.permute and self.structure not in ("pattern", "block"):
            raise ConfigError(f"permute reorders channels so multiplier patterns hold like weights; it has nothing to "
                              f"gain with structure {self.structure!r} (use pattern or block, or drop permute)")
        if self.importance_batches < 1:
            raise ConfigError(f"importance_batches must be >= 1 (minibatches the importance is accumulated over), "
                              f"got {self.importance_batches}")
        if not self.time_limit > 0:
            raise ConfigError(f"time_limit is the exact solver's limit in seconds and must be > 0, "
                              f"got {self.time_limit}")
        if self.final_epochs < 0:
            raise ConfigError(f"final_epochs must be >= 0 (0 turns the final fine-tuning off), got {self.final_epochs}")
        if self.recovery_epochs < 0:
            raise ConfigError(f"recovery_epochs must be >= 0 (0 turns recovery off), got {self.recovery_epochs}")
        if isinstance(self.finetune, dict):
            self.finetune = TrainConfig.from_dict(self.finetune)
        Budget.parse(self.budget)
        Schedule(self.schedule, self.steps, retries=self.retries)


@dataclass
class StepRecord:
    """One pruning step."""

    step: int
    fraction: float
    targets: dict[str, float]
    accepted: bool
    val_accuracy: float
    resources: dict[str, float]
    per_layer: dict[str, dict[str, float]]
    sparsity: float
    kept: int
    items: int
    solver: str
    gap: float | None
    optimal: bool
    solve_seconds: float
    seconds: float
    repair: bool = False  # the extra step taken when fine-tuning left an accepted full-budget model over budget
    recovered: bool = False  # the step missed the tolerance and was given `recovery_epochs` more fine-tuning


@dataclass
class PruneReport:
    """Everything that happened, for tables, plots and trust."""

    structure: str
    budget: str
    limits: dict[str, float]
    baseline_accuracy: float
    baseline_resources: dict[str, float]
    baseline_per_layer: dict[str, dict[str, float]]
    final_accuracy: float = 0.0
    final_resources: dict[str, float] = field(default_factory=dict)
    final_per_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    met_budget: bool = False
    steps: list[StepRecord] = field(default_factory=list)
    skipped_layers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    permutation: dict[str, Any] | None = None  # channel orders chosen before the first step, and what they gained
    final_finetune: dict[str, Any] | None = None  # the final fine-tuning's validation before/after, kept or why not

    def reduction(self) -> dict[str, float]:
        """Fraction of each resource removed (0.9 = 90% fewer)."""
        return {key: (1.0 - self.final_resources[key] / value) if value else 0.0
                for key, value in self.baseline_resources.items() if key in self.final_resources}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"reduction": self.reduction()}


@dataclass
class PruneResult:
    """The pruned (masked) model and its report."""

    model: nn.Module
    report: PruneReport


def _per_layer(cost: ModelCost) -> dict[str, dict[str, float]]:
    return {layer.name: {"dsp": layer.dsp, "bram18": layer.bram18, "lut": layer.lut, "ff": layer.ff,
                         "nonzero": layer.n_nonzero, "weights": layer.n_weights}
            for layer in cost.layers if layer.n_weights}


def _resources(cost: ModelCost) -> dict[str, float]:
    totals = dict(cost.totals)
    totals["params"] = float(sum(layer.n_nonzero for layer in cost.layers))
    return totals


def _layer_use(cost: ModelCost, limit: Limit) -> float:
    if limit.resource == "params":
        return float(cost.layer(limit.layer).n_nonzero if limit.layer else sum(x.n_nonzero for x in cost.layers))
    if limit.layer:
        return float(getattr(cost.layer(limit.layer), limit.resource))
    return float(cost.totals[limit.resource])


class Pruner:
    """Prunes a model for an FPGA budget. `fit` returns a masked copy; the input model is left untouched."""

    def __init__(self, config: PruneConfig, hls_config: HLSConfig, input_shape: tuple[int, ...],
                 cost_model: CostModel | None = None) -> None:
        self.config = config
        self.hls = hls_config
        self.input_shape = tuple(input_shape)
        self.cost_model = cost_model or CostModel()
        self.budget = Budget.parse(config.budget)
        self._teacher: nn.Module | None = None

    # ------------------------------------------------------------------ public
    def fit(
        self,
        model: nn.Module,
        train_data: Dataset,
        val_data: Dataset,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool | ProgressReporter = True,
    ) -> PruneResult:
        cfg = self.config
        started = time.perf_counter()
        model = copy.deepcopy(model)
        # distillation teaches every step's fine-tuning with the unpruned model's outputs
        self._teacher = frozen_teacher(model) if cfg.finetune.distill_alpha > 0 else None
        structures0 = build_structures(model, self.input_shape, self.hls, cfg.structure, cost_model=self.cost_model,
                                       layers=cfg.layers)
        prunable = [layer.name for layer in structures0.layers]
        if not prunable:
            reasons = "; ".join(f"{k}: {v}" for k, v in structures0.skipped.items())
            raise ConfigError(f"no layer can be pruned with structure '{cfg.structure}' ({reasons})")
        state_path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir else None
        saved = self._load_state(state_path) if (resume and state_path and state_path.exists()) else None
        # a layer's totals do not depend on its channel order, so the budget resolves the same after reordering
        baseline_cost = structures0.baseline
        baseline_params = {layer.name: layer.n_nonzero for layer in baseline_cost.layers if layer.n_weights}
        resolved = self.budget.resolve(baseline_cost, baseline_params)
        permutation = None
        if cfg.permute:
            permutation = self._permutation(model, structures0, resolved, train_data, saved)
            model = apply_orders(model, permutation["orders"])
            structures0 = build_structures(model, self.input_shape, self.hls, cfg.structure,
                                           cost_model=self.cost_model, layers=cfg.layers)
            baseline_cost = structures0.baseline
        # every parameter a step may mask gets a mask now, so accepted/rejected states share one layout
        apply_masks(model, structure_masks(structures0, np.ones(structures0.n_items), model))
        self._check_feasible(structures0, resolved, baseline_cost)
        baseline_state = copy.deepcopy(model.state_dict())
        reporter = make_reporter(progress)
        if saved is not None:
            ensure_mask_buffers(model, saved["model"])
            model.load_state_dict(saved["model"])
            accepted_state = saved["accepted"]
            schedule = Schedule(**saved["schedule"])
            report = _report_from_dict(saved["report"])
            baseline_accuracy = report.baseline_accuracy
        else:
            baseline_accuracy = evaluate(model, val_data).accuracy
            accepted_state = copy.deepcopy(model.state_dict())
            schedule = Schedule(cfg.schedule, cfg.steps, retries=cfg.retries)
            report = PruneReport(
                structure=cfg.structure,
                budget=self.budget.describe(),
                limits={limit.describe(): capacity for limit, capacity in resolved},
                baseline_accuracy=baseline_accuracy,
                baseline_resources=_resources(baseline_cost),
                baseline_per_layer=_per_layer(baseline_cost),
                skipped_layers=dict(structures0.skipped),
                permutation=permutation,
            )
        if cfg.finetune.restore_best and cfg.finetune.epochs > 1:
            warnings.warn("PruneConfig.finetune.restore_best is on, so each step is judged on its best validation "
                          "epoch, which makes the tolerance optimistic; TrainConfig(restore_best=False) judges the "
                          "last one", UserWarning, stacklevel=2)
        task = reporter.add_task("pruning steps", total=schedule.total_steps, completed=schedule.step)

        def take_step(fraction: float, repair: bool = False) -> bool:
            nonlocal accepted_state
            record = self._step(model, schedule.step, fraction, resolved, baseline_cost, baseline_state,
                                train_data, val_data, reporter)
            record.repair = repair
            if record.val_accuracy < baseline_accuracy - cfg.tolerance and cfg.recovery_epochs > 0:
                self._recover(model, record, train_data, val_data, reporter)
            record.accepted = record.val_accuracy >= baseline_accuracy - cfg.tolerance
            if record.accepted:
                accepted_state = copy.deepcopy(model.state_dict())
            else:
                model.load_state_dict(accepted_state)
            report.steps.append(record)
            if not repair:
                schedule.feedback(fraction, record.accepted)
            reporter.advance(task)
            reporter.log(self._step_line(record, baseline_accuracy))
            if state_path is not None:
                self._save_state(state_path, model, accepted_state, schedule, report)
            return record.accepted

        try:
            while not schedule.finished:
                take_step(schedule.next_fraction())
            # fine-tuning moves weights, and under the Latency strategy with them which multiplications need a
            # DSP, so a model accepted at the full budget can end just over it: one repair step re-solves the
            # knapsack from its real costs (skipped on resume when it was already taken)
            if cfg.repair and schedule.low >= 1.0 and not any(step.repair for step in report.steps):
                model.load_state_dict(accepted_state)
                if not self._meets_budget(model, resolved):
                    take_step(1.0, repair=True)
            model.load_state_dict(accepted_state)
            if cfg.final_epochs > 0 and report.steps and any(step.accepted for step in report.steps):
                report.final_finetune = self._final_finetune(model, resolved, baseline_accuracy, train_data,
                                                             val_data, reporter)
                if not report.final_finetune["kept"]:
                    model.load_state_dict(accepted_state)
        finally:
            reporter.close()
        final_cost = estimate(model, self.input_shape, self.hls, params=self.cost_model.params)
        report.final_accuracy = evaluate(model, val_data).accuracy
        report.final_resources = _resources(final_cost)
        report.final_per_layer = _per_layer(final_cost)
        report.met_budget = self._meets_budget(model, resolved, final_cost)
        report.seconds = time.perf_counter() - started
        return PruneResult(model=model, report=report)

    def _final_finetune(self, model: nn.Module, resolved, baseline_accuracy: float, train_data, val_data,
                        reporter) -> dict[str, Any]:
        """Longer fine-tuning of the final masks, checked only against the budget and the tolerance: each step's
        short fine-tuning is enough to decide, but the model the user takes away deserves a full cosine cycle."""
        cfg = self.config
        before = evaluate(model, val_data).accuracy
        use_before = self._uses(model, resolved)
        finetune = dataclasses.replace(cfg.finetune, epochs=cfg.final_epochs, restore_best=False,
                                       seed=cfg.finetune.seed + cfg.seed + 20_000)
        trained = fit(model, train_data, val_data, finetune, callbacks=self._finetune_callbacks(model),
                      progress=reporter, teacher=self._teacher)
        if trained.interrupted:  # the accepted model is checkpointed; resume repeats the final fine-tuning
            raise KeyboardInterrupt
        after = evaluate(model, val_data).accuracy
        # a run that stopped short of the budget may keep its cycle too, as long as no limit is used more than
        # before it (under the Latency strategy fine-tuning can move weights onto DSP codes)
        use_after = self._uses(model, resolved)
        in_budget = all(use_after[key] <= max(use_before[key], capacity) + 1e-6 for key, capacity in
                        ((limit.describe(), capacity) for limit, capacity in resolved))
        kept = in_budget and after >= baseline_accuracy - cfg.tolerance
        reason = "" if kept else ("it raised the resource use over the budget" if not in_budget else
                                  "it ended below the tolerance")
        reporter.log(f"final fine-tuning ({cfg.final_epochs} epochs): val {100 * before:.2f}% → {100 * after:.2f}%"
                     + ("" if kept else f"; discarded: {reason}"))
        return {"epochs": cfg.final_epochs, "val_before": before, "val_after": after, "kept": kept,
                "reason": reason}

    def _permutation(self, model: nn.Module, structures: StructureSet, resolved, train_data,
                     saved) -> dict[str, Any]:
        """Channel orders for pattern pruning: the ones a resumed run already chose, or new ones from importance
        at the share of each layer's use the tightest budget limit leaves."""
        if saved is not None:
            return saved["report"].get("permutation") or {"orders": {}}
        cfg = self.config
        shares = [capacity / use for limit, capacity in resolved
                  if (use := _layer_use(structures.baseline, limit)) > 0]
        keep = min(1.0, max(1e-3, min(shares, default=1.0)))
        names = [layer.name for layer in structures.layers]
        saliency = weight_saliency(model, names, cfg.importance, train_data, batches=cfg.importance_batches,
                                   seed=cfg.seed)
        chosen = choose_orders(model, structures, saliency, keep, seed=cfg.seed)
        return {"orders": chosen.orders, "keep": keep, "kept_before": chosen.kept_before,
                "kept_after": chosen.kept_after, "swaps": chosen.swaps}

    def _uses(self, model: nn.Module, resolved) -> dict[str, float]:
        cost = estimate(model, self.input_shape, self.hls, params=self.cost_model.params)
        return {limit.describe(): _layer_use(cost, limit) for limit, _ in resolved}

    def _meets_budget(self, model: nn.Module, resolved, cost: ModelCost | None = None) -> bool:
        cost = cost or estimate(model, self.input_shape, self.hls, params=self.cost_model.params)
        return all(_layer_use(cost, limit) <= capacity + 1e-6 for limit, capacity in resolved)

    # ------------------------------------------------------------------ one step
    def _step(self, model, step, fraction, resolved, baseline_cost, baseline_state, train_data, val_data, reporter):
        cfg = self.config
        started = time.perf_counter()
        structures = build_structures(model, self.input_shape, self.hls, cfg.structure, cost_model=self.cost_model,
                                      layers=cfg.layers)
        names = [layer.name for layer in structures.layers]
        saliency = weight_saliency(model, names, cfg.importance, train_data, batches=cfg.importance_batches,
                                   seed=cfg.seed + step)
        values = structure_values(structures, saliency, method=cfg.importance, normalize=cfg.normalize)
        targets = {limit.describe(): _layer_use(baseline_cost, limit) - fraction * (
            _layer_use(baseline_cost, limit) - capacity) for limit, capacity in resolved}
        masks_before = current_masks(model)
        shrink = 1.0
        solution = None
        for _attempt in range(4):  # linear costs are approximate: re-solve tighter if the estimate overshoots
            solution = self._solve(structures, values, resolved, targets, shrink, step)
            reset_masks(model, masks_before)
            apply_masks(model, structure_masks(structures, solution.selected.astype(float), model))
            cost = estimate(model, self.input_shape, self.hls, params=self.cost_model.params)
            over = max((_layer_use(cost, limit) / max(targets[limit.describe()], 1e-9)
                        for limit, _ in resolved), default=1.0)
            if over <= 1.0 + 1e-9 or cfg.uniform_costs:
                break
            shrink /= over
        if cfg.rewind:
            self._rewind(model, baseline_state)
        callbacks = self._finetune_callbacks(model, structures)
        finetune = dataclasses.replace(cfg.finetune, seed=cfg.finetune.seed + cfg.seed + step)
        if finetune.epochs > 0:
            trained = fit(model, train_data, val_data, finetune, callbacks=callbacks, progress=reporter,
                          teacher=self._teacher)
            if trained.interrupted:  # the last completed step is checkpointed; resume repeats this one
                raise KeyboardInterrupt
        cost = estimate(model, self.input_shape, self.hls, params=self.cost_model.params)
        return StepRecord(
            step=step,
            fraction=fraction,
            targets=targets,
            accepted=False,
            val_accuracy=evaluate(model, val_data).accuracy,
            resources=_resources(cost),
            per_layer=_per_layer(cost),
            sparsity=sparsity(model),
            kept=int(solution.selected.sum()),
            items=len(solution.selected),
            solver=solution.solver,
            gap=solution.gap,
            optimal=bool(solution.optimal),
            solve_seconds=solution.seconds,
            seconds=time.perf_counter() - started,
        )

    def _finetune_callbacks(self, model: nn.Module, structures: StructureSet | None = None) -> list:
        """Masks stay zero; group lasso if asked; shift-add constants stay shift-add if asked (Latency layers)."""
        cfg = self.config
        callbacks = [MaskedFinetune(model)]
        if cfg.regularization > 0:
            structures = structures or build_structures(model, self.input_shape, self.hls, cfg.structure,
                                                        cost_model=self.cost_model, layers=cfg.layers)
            groups = {layer.name: torch.from_numpy(layer.group_of_weight) for layer in structures.layers}
            callbacks.append(GroupLasso(model, groups, cfg.regularization))
        if cfg.lock_constants:
            lock = shift_add_lock(model, self.input_shape, self.hls, self.cost_model.params, layers=cfg.layers,
                                  both_ways=self.budget.caps("lut"))
            if lock is not None:
                callbacks.append(lock)
        return callbacks

    def _recover(self, model: nn.Module, record: StepRecord, train_data, val_data, reporter) -> None:
        """More fine-tuning for a step that missed the tolerance: one fine-tuning run is a noisy judge of
        whether the pruned model *can* recover, and a near miss is often within reach of a few more epochs."""
        cfg = self.config
        started = time.perf_counter()
        callbacks = self._finetune_callbacks(model)
        finetune = dataclasses.replace(cfg.finetune, epochs=cfg.recovery_epochs,
                                       seed=cfg.finetune.seed + cfg.seed + 10_000 + record.step)
        trained = fit(model, train_data, val_data, finetune, callbacks=callbacks, progress=reporter,
                      teacher=self._teacher)
        if trained.interrupted:
            raise KeyboardInterrupt
        cost = estimate(model, self.input_shape, self.hls, params=self.cost_model.params)
        record.recovered = True
        record.val_accuracy = evaluate(model, val_data).accuracy
        record.resources = _resources(cost)
        record.per_layer = _per_layer(cost)
        record.sparsity = sparsity(model)
        record.seconds += time.perf_counter() - started

    def _solve(self, structures: StructureSet, values, resolved, targets, shrink: float, step: int):
        """Solve the step's knapsack; every layer keeps one structure (its most valuable, else its cheapest)."""
        from tenfold.knapsack import InfeasibleBudgetError, solve

        cfg = self.config
        for keep in ("valuable", "cheap"):
            problem = self._problem(structures, values, resolved, targets, shrink, keep)
            try:
                return solve(problem, cfg.solver, time_limit=cfg.time_limit, seed=cfg.seed + step)
            except InfeasibleBudgetError as exc:
                error = exc
        raise BudgetInfeasible(
            f"{error} — every layer must keep at least one structure; raise the budget or prune fewer layers"
        ) from None

    def _problem(self, structures: StructureSet, values, resolved, targets, shrink: float, keep: str = "valuable"):
        from tenfold.knapsack import KnapsackProblem

        costs = structures.costs()
        layer_of_item = structures.layer_of_item()
        columns, capacity, names = [], [], []
        for limit, _ in resolved:
            r = RESOURCES.index(limit.resource)
            target = targets[limit.describe()] * shrink
            if limit.layer is None:
                column = costs[:, r]
                fixed = structures.fixed_cost[r]
            else:
                index = [i for i, layer in enumerate(structures.layers) if layer.name == limit.layer]
                column = np.where(np.isin(layer_of_item, index), costs[:, r], 0.0)
                layer_total = _layer_use(structures.baseline, limit) if limit.resource != "params" else float(
                    column.sum())
                fixed = max(layer_total - column.sum(), 0.0)
            if self.config.uniform_costs:  # hls4ml DAP's assumption: every structure costs the same
                share = (column.sum() + fixed) / max(len(column), 1)
                column = np.where((column > 0) | (values > 0), share, 0.0)
                fixed = 0.0
            columns.append(column)
            capacity.append(max(target - fixed, 0.0))
            names.append(limit.describe())
        required = np.zeros(len(values), dtype=bool)
        offset = 0
        stacked = np.stack(columns, axis=1)
        scale = np.maximum(np.asarray(capacity), 1e-9)
        for layer in structures.layers:  # never let a whole layer die: keep one of its structures
            layer_values = values[offset : offset + layer.n_groups]
            if layer.n_groups and layer_values.max() > 0:
                if keep == "valuable":
                    choice = int(np.argmax(layer_values))
                else:
                    load = (stacked[offset : offset + layer.n_groups] / scale).sum(axis=1)
                    load[layer_values <= 0] = np.inf
                    choice = int(np.argmin(load))
                required[offset + choice] = True
            offset += layer.n_groups
        return KnapsackProblem(values=np.asarray(values, dtype=float), costs=stacked,
                               capacity=np.asarray(capacity, dtype=float), resource_names=tuple(names),
                               required=required)

    def _check_feasible(self, structures: StructureSet, resolved, baseline_cost: ModelCost) -> None:
        problems = []
        for limit, capacity in resolved:
            r = RESOURCES.index(limit.resource)
            if limit.layer is None:
                minimum = structures.fixed_cost[r]
            else:
                layer = next((s for s in structures.layers if s.name == limit.layer), None)
                total = _layer_use(baseline_cost, limit)
                minimum = total - (layer.costs[:, r].sum() if layer is not None else 0.0)
            if capacity < minimum - 1e-6:
                problems.append(f"{limit.describe()} means {capacity:,.1f} but the smallest achievable "
                                f"{limit.resource} is {minimum:,.1f}")
        if problems:
            raise BudgetInfeasible(
                "budget infeasible: " + "; ".join(problems) + " (what remains is logic no structure can remove: "
                "activations, I/O, unprunable layers). Raise the budget, prune more layers, or use another strategy"
            )

    @staticmethod
    def _rewind(model: nn.Module, baseline_state: dict[str, torch.Tensor]) -> None:
        masks = current_masks(model)
        state = {k: v for k, v in baseline_state.items() if not k.endswith("_mask")}
        model.load_state_dict(state, strict=False)
        apply_masks(model, masks)

    def _step_line(self, record: StepRecord, baseline: float) -> str:
        status = "[green]accepted[/green]" if record.accepted else "[red]rejected[/red]"
        if record.repair:
            status += " (repair step)"
        if record.recovered:
            status += " after recovery fine-tuning"
        resources = ", ".join(f"{k} {v:,.0f}" for k, v in record.resources.items() if k in {"dsp", "bram18"})
        return (f"step {record.step + 1}: {status} val acc {100 * record.val_accuracy:.2f}% "
                f"(baseline {100 * baseline:.2f}%), {resources}, sparsity {100 * record.sparsity:.1f}%")

    # ------------------------------------------------------------------ checkpoints
    def _save_state(self, path: Path, model, accepted_state, schedule: Schedule, report: PruneReport) -> None:
        atomic_torch_save(path, {
            "format": "tenfold.prune-state",
            "config": _plain(dataclasses.asdict(self.config)),
            "model": model.state_dict(),
            "accepted": accepted_state,
            "schedule": schedule.to_dict(),
            "report": _plain(dataclasses.asdict(report)),
        })

    def _load_state(self, path: Path) -> dict[str, Any]:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file: say which one
            raise CheckpointError(f"cannot read pruning state {path}: {exc}") from None
        if not isinstance(saved, dict) or saved.get("format") != "tenfold.prune-state":
            raise CheckpointError(f"{path} is not a tenfold pruning state; delete it or choose another --out")
        if saved["config"] != _plain(dataclasses.asdict(self.config)):
            raise CheckpointError(f"{path} was written with different pruning settings; resume with the same "
                                  "settings or start a new output folder")
        return saved


class BudgetInfeasible(ConfigError):
    """The budget asks for less than what no pruning can remove."""


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _report_from_dict(values: dict[str, Any]) -> PruneReport:
    steps = [StepRecord(**step) for step in values.pop("steps", [])]
    return PruneReport(**values, steps=steps)


def prune(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    input_shape: tuple[int, ...],
    hls_config: HLSConfig,
    config: PruneConfig | None = None,
    **kwargs: Any,
) -> PruneResult:
    """Prune `model` for `hls_config`'s FPGA under `config.budget`; see `Pruner`."""
    return Pruner(config or PruneConfig(), hls_config, input_shape).fit(model, train_data, val_data, **kwargs)
