"""The quantization stage of `tenfold run`: narrowest per-layer fixed-point types within the tolerance left."""

from __future__ import annotations

from typing import Any

from torch import nn

from tenfold.pipeline.context import RunContext
from tenfold.report import Snapshot


def quantize_model_for_run(ctx: RunContext, model: nn.Module, hls) -> tuple[nn.Module, Any, list[Snapshot]]:
    """Search (or calibrate) per-layer precisions; the returned model carries the quantized weights baked in.

    The accuracy budget is what earlier stages left of the run's tolerance, measured against the baseline.
    """
    from tenfold.quantize import post_training_quantize, quantize_model, search_precision, to_float
    from tenfold.train import evaluate

    section = ctx.config.quantize
    current = evaluate(quantize_model(model, hls), ctx.splits.val).accuracy
    left = max(0.0, ctx.config.tolerance - (ctx.baseline_val - current))
    if section.method == "search":
        report = search_precision(model, hls, ctx.splits.val, tolerance=left, widths=sorted(section.widths,
                                  reverse=True), input_shape=ctx.input_shape, calibration_data=ctx.splits.train,
                                  reference_accuracy=current)
        new_hls, notes = report.config, {"precision_search": report.to_dict()}
    else:
        result = post_training_quantize(model, hls, ctx.splits.train, width=max(section.widths))
        new_hls, notes = result.config, {"ptq_width": max(section.widths)}
    baked = to_float(quantize_model(model, new_hls))
    ctx.stage_notes["quantize"] = notes
    return baked, new_hls, []
