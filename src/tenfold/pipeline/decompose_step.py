"""The decomposition stage of `tenfold run`: sensitivity-valued rank choice, quantized CP/Tucker, fine-tuning."""

from __future__ import annotations

from typing import Any

from torch import nn

from tenfold.pipeline.context import RunContext
from tenfold.report import Snapshot, take_snapshot


def decompose_and_finetune(ctx: RunContext, model: nn.Module, hls) -> tuple[nn.Module, Any, list[Snapshot]]:
    """Meet `decompose.target` with one rank per layer chosen by measured loss, then fine-tune the factors."""
    from tenfold.decompose import (
        SensitivityConfig,
        accounting_method,
        decompose_model,
        rank_sensitivity,
        requantize_,
        select_ranks,
        settle_decomposed,
    )
    from tenfold.errors import ConfigError
    from tenfold.pipeline.stages import with_finetune_seed
    from tenfold.train import evaluate, fit

    section = ctx.config.decompose
    if section.method not in ("cp", "cp3", "tucker2"):
        raise ConfigError(f"decompose.method: one of cp, cp3, tucker2, got {section.method!r}")
    precision = f"fixed<{section.bits},1>"
    layers = section.layers or _default_layers(model)
    sensitivity = rank_sensitivity(
        model, ctx.splits.train,
        SensitivityConfig(method=accounting_method(section.method), precision=precision,
                          n_batches=section.sensitivity_batches, n_iter_max=section.n_iter_max, seed=ctx.seed),
        layers=layers)
    plan = select_ranks(sensitivity, section.target)
    decomposed, _ = decompose_model(model, plan.ranks, method=section.method, precision=precision,
                                    form=section.form, layers=list(plan.ranks), skip=(), seed=ctx.seed,
                                    n_iter_max=section.n_iter_max)
    settle_decomposed(model, decomposed, ctx.splits.train, refine_steps=section.refine_steps,
                      bn_batches=section.bn_recalibration_batches, seed=ctx.seed)
    snapshots = [take_snapshot(decomposed, ctx.input_shape, hls, regeneration=section.regeneration,
                               label="decomposed (before fine-tuning)",
                               stage="decompose-step", val_accuracy=evaluate(decomposed, ctx.splits.val).accuracy,
                               notes={"ranks": plan.ranks, "target": section.target, "ratio": plan.ratio})]
    finetune = with_finetune_seed(ctx, 200)
    if finetune.epochs > 0:
        fit(decomposed, ctx.splits.train, ctx.splits.val, finetune, progress=ctx.progress, teacher=ctx.teacher())
        requantize_(decomposed)
    return decomposed, hls, snapshots


def _default_layers(model: nn.Module) -> list[str]:
    """Every Conv/Linear layer without a pruning mask (a pruned layer's zeros would be lost to the factors)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d) and not hasattr(module, "weight_mask")]
