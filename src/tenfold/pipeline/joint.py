"""Joint compression under one budget: one multiple-choice knapsack picks one action per layer.

Each round measures every layer's candidate actions on the current model (`candidates.py`), solves for the
cheapest-in-loss combination whose summed resources meet the round's target (the budget approached over
`joint.rounds` rounds, like the pruner's schedule), applies it, fine-tunes, and re-prices the whole model.
Costs are exact per layer (the hardware model prices each layer on its own), so the only approximation is
the additive loss, which the next round's re-measurement corrects.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from torch import nn

from tenfold.errors import ConfigError
from tenfold.pipeline.candidates import (
    RESOURCE_KEYS,
    Action,
    LossProbe,
    build_candidates,
    effective_weight,
    with_weight_precision,
)
from tenfold.pipeline.context import RunContext
from tenfold.report import Snapshot, take_snapshot


def joint_compress(ctx: RunContext, model: nn.Module, hls) -> tuple[nn.Module, Any, list[Snapshot]]:
    """Run the joint rounds; returns the compressed model, its HLS config and a snapshot per round."""
    from tenfold.prune import Budget, Schedule

    config = ctx.config
    section = config.joint
    budget = Budget.parse(config.budget)
    baseline = ctx.baseline_cost
    params = {layer.name: layer.n_nonzero for layer in baseline.layers if layer.n_weights}
    resolved = budget.resolve(baseline, params)
    baseline_val = ctx.accuracy(model, hls)
    snapshots: list[Snapshot] = []
    # planned rounds approach the budget in equal steps; a rejected round is followed by up to `retries` rounds
    # that bisect between the last accepted and the rejected target (the pruner's schedule), from the last
    # accepted model, instead of giving up at the first failure
    schedule = Schedule("constant", section.rounds, retries=section.retries)
    state = {"model": model, "hls": hls, "index": 0}

    def attempt(fraction: float, bisecting: bool) -> bool:
        started = time.perf_counter()
        round_index = state["index"]
        state["index"] += 1
        candidate_model, candidate_hls, choice = _one_round(ctx, state["model"], state["hls"], resolved, baseline,
                                                            fraction, round_index)
        val = ctx.accuracy(candidate_model, candidate_hls)
        recovered = False
        if baseline_val - val > config.tolerance and section.recovery_epochs > 0:
            # one fine-tuning run is a noisy judge of whether the round's model can recover (the pruner's rule)
            recovery = dataclasses.replace(ctx.finetune_config(judged=True), epochs=section.recovery_epochs,
                                           seed=ctx.seed + 200 + round_index)
            _float_finetune(ctx, candidate_model, recovery, candidate_hls)
            candidate_hls = _fit_types(ctx, candidate_model, candidate_hls)
            val, recovered = ctx.accuracy(candidate_model, candidate_hls), True
        accepted = baseline_val - val <= config.tolerance
        snapshots.append(take_snapshot(
            candidate_model, ctx.input_shape, candidate_hls, regeneration=ctx.config.decompose.regeneration,
            label=f"joint round {round_index + 1} "
            f"({'accepted' if accepted else 'rejected'})", stage="joint-round", val_accuracy=val,
            seconds=time.perf_counter() - started,
            notes={"accepted": accepted, "target_fraction": fraction, "bisecting": bisecting, "recovered": recovered,
                   "actions": {a.layer: a.to_dict() for a in choice}}))
        if accepted:  # later rounds start from the last model within the tolerance
            state["model"], state["hls"] = candidate_model, candidate_hls
        return accepted

    while not schedule.finished:
        fraction = schedule.next_fraction()
        schedule.feedback(fraction, attempt(fraction, schedule.bisecting))
    # fine-tuning moves weight values, and with them the LUT/DSP cost of constant multiplications: a model
    # accepted at the full target can end just over it, so one more round re-solves from its real costs
    if schedule.low >= 1.0 and not _meets_budget(ctx, state["model"], state["hls"], resolved):
        attempt(1.0, False)
    return state["model"], state["hls"], snapshots


def _meets_budget(ctx: RunContext, model: nn.Module, hls, resolved) -> bool:
    from tenfold.decompose.pricing import estimate_decomposed

    cost = estimate_decomposed(model, ctx.input_shape, hls, mode=ctx.config.decompose.regeneration)
    return all(_baseline_use(cost, limit) <= capacity + 1e-6 for limit, capacity in resolved)


def _one_round(ctx: RunContext, model: nn.Module, hls, resolved, baseline, fraction: float, round_index: int):
    from tenfold.decompose.pricing import estimate_decomposed

    section = ctx.config.joint
    current = estimate_decomposed(model, ctx.input_shape, hls, mode=ctx.config.decompose.regeneration)
    layers = [layer.name for layer in current.layers if layer.n_weights and _plain_layer(model, layer.name)]
    probe = LossProbe(model, ctx.splits.train, section.sensitivity_batches, seed=ctx.seed + round_index)
    decompose = "decompose" in ctx.config.methods
    prune = "prune" in ctx.config.methods
    saliency = None
    if prune:  # how each layer's patterns are ranked for its prune candidates
        # (default L1: on the digits demo Taylor-ranked candidates stopped at -70% DSPs, short of the -80% budget,
        # where L1-ranked ones reached -90%; within one layer the cross-layer scale problem that makes the
        # pruner need Taylor does not arise)
        from tenfold.prune import weight_saliency

        saliency = weight_saliency(model, layers, section.importance, ctx.splits.train,
                                   batches=section.sensitivity_batches, seed=ctx.seed + round_index)
    candidates = build_candidates(
        model, ctx.input_shape, hls, layers, probe, saliency=saliency,
        prune_levels=section.prune_levels if prune else [],
        widths=section.widths if "quantize" in ctx.config.methods else [],
        rank_ratios=section.ranks if decompose else [], bits=ctx.config.decompose.bits,
        regeneration=ctx.config.decompose.regeneration,
        progress=_progress_callback(ctx, f"joint round {round_index + 1}: measuring candidates"))
    fixed = {key: current.totals.get(key, 0.0) - sum(current.layer(n).__dict__.get(key, 0.0) for n in layers)
             for key in RESOURCE_KEYS if key != "params"} | {"params": 0.0}
    choice = solve_actions(candidates, resolved, baseline, fraction, fixed)
    new_model, new_hls = apply_actions(ctx, model, hls, choice)
    if ctx.config.decompose.bn_recalibration_batches > 0:  # changed weights shift what the BatchNorms see
        from tenfold.train import recalibrate_batchnorm

        recalibrate_batchnorm(new_model, ctx.splits.train, batches=ctx.config.decompose.bn_recalibration_batches,
                              seed=ctx.seed + round_index)
    finetune = dataclasses.replace(ctx.finetune_config(judged=True), seed=ctx.seed + 100 + round_index)
    if finetune.epochs > 0 and ctx.fixed_point_evaluation and section.qat:
        new_model = _quantization_aware_finetune(ctx, new_model, new_hls, finetune)
    elif finetune.epochs > 0:
        _float_finetune(ctx, new_model, finetune, new_hls)
    return new_model, _fit_types(ctx, new_model, new_hls), choice


def _fit_types(ctx: RunContext, model: nn.Module, hls):
    """After fine-tuning, widen every type the trained values outgrew (`tenfold.quantize.widen_to_fit`): logits
    of a model trained for more rounds pass ap_fixed<16,6>'s 32 and wrap, and a narrowed weight type can be
    outgrown by its weights. Types only change when the run evaluates in fixed point (it changes precisions)."""
    if not ctx.fixed_point_evaluation:
        return hls
    from tenfold.quantize import widen_to_fit

    return widen_to_fit(model, hls, ctx.splits.train, max_batches=8)


def _float_finetune(ctx: RunContext, model: nn.Module, finetune, hls) -> None:
    """Masked fine-tuning; with `joint.lock_constants`, weights the round priced as shift-add constants (Latency
    layers) stay on such codes, so the round's DSP count cannot grow while it trains (see JointSection)."""
    from tenfold.prune import Budget, MaskedFinetune
    from tenfold.prune.constants import shift_add_lock
    from tenfold.train import fit

    callbacks = [MaskedFinetune(model)]
    lock = None
    if ctx.config.joint.lock_constants:
        lock = shift_add_lock(model, ctx.input_shape, hls, both_ways=Budget.parse(ctx.config.budget).caps("lut"))
    if lock is not None:
        callbacks.append(lock)
    fit(model, ctx.splits.train, ctx.splits.val, finetune, callbacks=callbacks, progress=ctx.progress,
        teacher=ctx.teacher())
    _requantize(model)


def _quantization_aware_finetune(ctx: RunContext, model: nn.Module, hls, finetune) -> nn.Module:
    """Fine-tune through the fixed-point types the round chose (QAT), then keep the trained float weights.

    Rounds are accepted on the fixed-point model; fine-tuning in float lets the weights drift off the narrower
    grids the round just picked, and rounding them afterwards undoes part of the recovery. Training through
    wrapping fixed-point activations can also diverge (an overflow's error is passed straight through), so if
    the fixed-point validation accuracy ends below where QAT started, the round falls back to float fine-tuning
    from the same start and keeps whichever of the two is better. Opt-in (`joint.qat`): on the jet-MLP / MNIST
    reproduction QAT ended below its start in 6 of 6 rounds, where float fine-tuning did not.
    """
    from tenfold.modules import clone_module
    from tenfold.prune.masks import refresh_masked_weights
    from tenfold.quantize import copy_trained_weights, quantize_model
    from tenfold.train import fit

    start = clone_module(refresh_masked_weights(model))
    before = ctx.accuracy(model, hls)
    quantized = quantize_model(refresh_masked_weights(model), hls)
    fit(quantized, ctx.splits.train, ctx.splits.val, finetune, progress=ctx.progress, teacher=ctx.teacher())
    copy_trained_weights(quantized, model)
    _requantize(model)
    after = ctx.accuracy(model, hls)
    if after >= before:
        return model
    _float_finetune(ctx, start, finetune, hls)
    return start if ctx.accuracy(start, hls) > after else model


def _plain_layer(model: nn.Module, name: str) -> bool:
    """Layers a joint round may still change: ordinary Linear/Conv (not already decomposed)."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return False
    from torch.nn.utils import parametrize

    return isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d) and not parametrize.is_parametrized(module)


def solve_actions(candidates: dict[str, list[Action]], resolved, baseline, fraction: float,
                  fixed: dict[str, float]) -> list[Action]:
    """The multiple-choice knapsack: one action per layer, summed costs within this round's targets."""
    from tenfold.knapsack import InfeasibleBudgetError, KnapsackProblem, solve

    items = [action for actions in candidates.values() for action in actions]
    groups = np.array([index for index, actions in enumerate(candidates.values()) for _ in actions])
    columns, capacity, names = [], [], []
    for limit, cap in resolved:
        use = _baseline_use(baseline, limit)
        target = use - fraction * (use - cap)
        in_scope = [limit.layer is None or action.layer == limit.layer for action in items]
        columns.append([action.cost[limit.resource] if scope else 0.0 for action, scope in zip(items, in_scope,
                                                                                               strict=True)])
        capacity.append(max(target - (fixed[limit.resource] if limit.layer is None else 0.0), 0.0))
        names.append(limit.describe())
    values = np.array([-action.loss_increase for action in items])
    problem = KnapsackProblem(values=values, costs=np.array(columns).T, capacity=np.array(capacity),
                              resource_names=tuple(names), groups=groups)
    try:
        solution = solve(problem, "auto", time_limit=20.0)
    except InfeasibleBudgetError as exc:
        raise ConfigError(f"budget: no combination of the candidate actions fits ({exc}); allow more methods "
                          "(prune, decompose, quantize), stronger levels in 'joint', or raise the budget") from None
    return [action for action, keep in zip(items, solution.selected, strict=True) if keep]


def _baseline_use(baseline, limit) -> float:
    if limit.resource == "params":
        return float(baseline.layer(limit.layer).n_nonzero if limit.layer else
                     sum(layer.n_nonzero for layer in baseline.layers))
    if limit.layer:
        return float(getattr(baseline.layer(limit.layer), limit.resource))
    return float(baseline.totals[limit.resource])


def apply_actions(ctx: RunContext, model: nn.Module, hls, actions: list[Action]):
    """A copy of the model (and HLS config) with the chosen actions applied."""
    from tenfold.modules import clone_module
    from tenfold.prune import apply_masks
    from tenfold.prune.masks import refresh_masked_weights

    new_model = clone_module(refresh_masked_weights(model))
    new_hls = hls
    masks = {a.layer: a.mask for a in actions if a.mask is not None}
    if masks:
        apply_masks(new_model, masks)
    for action in actions:
        if action.width is not None:
            new_hls = with_weight_precision(new_hls, action.layer, action.width,
                                            effective_weight(new_model.get_submodule(action.layer)))
    ranks = {a.layer: a.rank for a in actions if a.kind == "decompose"}
    if ranks:
        from tenfold.decompose import decompose_model

        new_model, _ = decompose_model(new_model, ranks, method="cp3",
                                       precision=f"fixed<{ctx.config.decompose.bits},1>", layers=list(ranks),
                                       skip=(), seed=ctx.seed, n_iter_max=30)
    return new_model, new_hls


def _requantize(model: nn.Module) -> None:
    try:
        from tenfold.decompose import requantize_
    except ImportError:  # pragma: no cover
        return
    requantize_(model)


def _progress_callback(ctx: RunContext, description: str):
    """A `(done, total, text)` callback that drives one bar of the run's progress reporter."""
    from tenfold.train.progress import make_reporter

    reporter = make_reporter(ctx.progress)
    state: dict[str, Any] = {}

    def callback(done: int, total: int, text: str) -> None:
        if "task" not in state:
            state["task"] = reporter.add_task(description, total=total)
        reporter.advance(state["task"])
        if done >= total:
            reporter.remove_task(state.pop("task"))

    return callback


def chosen_summary(actions: list[Action]) -> dict[str, str]:
    """Layer → chosen action, for reports."""
    return {action.layer: action.describe() for action in actions}

