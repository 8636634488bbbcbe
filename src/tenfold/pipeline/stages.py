"""The compression stages of `tenfold run`; each takes (context, model, HLS config) and returns the new ones.

Each stage also returns snapshots of its intermediate steps, so the report's accuracy/resource front shows
every point the run visited, not only the end of each stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from tenfold.pipeline.context import RunContext
from tenfold.report import LayerSnapshot, Snapshot

StageResult = tuple[nn.Module, Any, list[Snapshot]]


def prune_stage(ctx: RunContext, model: nn.Module, hls) -> StageResult:
    """Knapsack pruning under the budget, fine-tuning between steps, stopping at the tolerance."""
    from tenfold.prune import PruneConfig, Pruner

    section = ctx.config.prune
    config = PruneConfig(
        budget=section.budget or ctx.config.budget, structure=section.structure, importance=section.importance,
        schedule=section.schedule, steps=section.steps, retries=section.retries, repair=section.repair,
        recovery_epochs=section.recovery_epochs, lock_constants=section.lock_constants, permute=section.permute,
        final_epochs=section.final_epochs,
        tolerance=ctx.config.tolerance,
        regularization=section.regularization, solver=section.solver, seed=ctx.seed,
        finetune=ctx.finetune_config(judged=True))
    result = Pruner(config, hls, ctx.input_shape).fit(model, ctx.splits.train, ctx.splits.val,
                                                      checkpoint_dir=ctx.out_dir / "prune", resume=True,
                                                      progress=ctx.progress)
    snapshots = [_step_snapshot(step, hls) for step in result.report.steps]
    return result.model, hls, snapshots


def _step_snapshot(step, hls) -> Snapshot:
    """A pruning step as a snapshot (validation accuracy only; test accuracy is kept for stage ends)."""
    layers = [LayerSnapshot(name=name, dsp=v["dsp"], bram18=v["bram18"], lut=v["lut"], ff=v["ff"],
                            weights=int(v["weights"]), nonzero=int(v["nonzero"]), stored_parameters=int(v["nonzero"]),
                            precision=str(hls.layer(name).precision.weight), reuse_factor=hls.layer(name).reuse_factor)
              for name, v in step.per_layer.items()]
    totals = {key: step.resources[key] for key in ("dsp", "bram18", "lut", "ff")}
    status = ("accepted" if step.accepted else "rejected") + (", repair step" if step.repair else "") + (
        ", after recovery fine-tuning" if step.recovered else "")
    return Snapshot(label=f"prune step {step.step + 1} ({status})", stage="prune-step",
                    val_accuracy=step.val_accuracy, test_accuracy=None, totals=totals, latency_cycles=0,
                    parameters=sum(layer.weights for layer in layers),
                    stored_parameters=sum(layer.nonzero for layer in layers), layers=layers, seconds=step.seconds,
                    notes={"accepted": step.accepted, "sparsity": step.sparsity, "solver": step.solver,
                           "gap": step.gap})


def decompose_stage(ctx: RunContext, model: nn.Module, hls) -> StageResult:
    """Quantized CP/Tucker decomposition: ranks chosen per layer by sensitivity under the target, then fine-tune."""
    from tenfold.pipeline.decompose_step import decompose_and_finetune

    return decompose_and_finetune(ctx, model, hls)


def quantize_stage(ctx: RunContext, model: nn.Module, hls) -> StageResult:
    """Lower fixed-point widths per layer while validation accuracy stays within the tolerance."""
    from tenfold.pipeline.quantize_step import quantize_model_for_run

    return quantize_model_for_run(ctx, model, hls)


def joint_stage(ctx: RunContext, model: nn.Module, hls) -> StageResult:
    """One multiple-choice knapsack over per-layer actions (keep, prune, decompose, lower precision)."""
    from tenfold.pipeline.joint import joint_compress

    return joint_compress(ctx, model, hls)


def with_finetune_seed(ctx: RunContext, offset: int):
    """The recipe's fine-tuning config with a seed offset, so successive stages do not repeat one shuffle."""
    return dataclasses.replace(ctx.finetune_config(), seed=ctx.seed + offset)
