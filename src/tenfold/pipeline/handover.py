"""Hand the compressed model over: an hls4ml project checked bit for bit in C simulation, and ONNX if asked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from tenfold.errors import TenfoldError
from tenfold.io import atomic_write_json
from tenfold.pipeline.context import RunContext


def plain_model(model: nn.Module) -> nn.Module:
    """The model with compression state baked into ordinary layers (what converters understand)."""
    from tenfold.modules import clone_module
    from tenfold.prune import remove_masks
    from tenfold.prune.masks import refresh_masked_weights

    plain = clone_module(refresh_masked_weights(model))
    try:
        from tenfold.decompose import materialize
    except ImportError:  # pragma: no cover - decomposition layers not installed in this build
        materialize = None
    if materialize is not None:
        plain = materialize(plain)
    remove_masks(plain)
    return plain.eval()


def export_outputs(ctx: RunContext, model: nn.Module, hls, out_dir: Path) -> dict[str, Any]:
    """Write what `export` asks for; failures are recorded in the report instead of losing the run."""
    section = ctx.config.export
    results: dict[str, Any] = {}
    plain = plain_model(model)
    samples = ctx.splits.test.tensors[0][: section.check_samples]
    if section.hls4ml:
        results |= _hls4ml(plain, hls, ctx.input_shape, samples, out_dir)
    if section.onnx:
        results |= _onnx(plain, ctx.input_shape, samples, out_dir)
    return results


def _hls4ml(model: nn.Module, hls, input_shape, samples, out_dir: Path) -> dict[str, Any]:
    from tenfold.export import check_bit_exact, export_hls4ml

    if shutil.which("g++") is None:
        return {"hls4ml": "skipped: g++ not found (install g++ to compile the C simulation)"}
    try:
        project, quantized = export_hls4ml(model, hls, input_shape, out_dir / "hls4ml_prj")
        check = check_bit_exact(project, quantized, hls, samples)
    except TenfoldError as exc:
        return {"hls4ml": f"failed: {exc}"}
    atomic_write_json(out_dir / "csim_check.json", check.__dict__ | {"bit_exact": check.bit_exact})
    verdict = "bit-exact" if check.bit_exact else f"{check.mismatched_values} mismatched values"
    return {"hls4ml": str(out_dir / "hls4ml_prj"), "csim": verdict, "csim_samples": check.samples,
            "csim_compile_seconds": round(project.compile_seconds, 1)}


def _onnx(model: nn.Module, input_shape, samples, out_dir: Path) -> dict[str, Any]:
    try:
        from tenfold.export import export_onnx
    except ImportError:
        return {"onnx": "skipped: this tenfold has no ONNX exporter"}
    try:
        report = export_onnx(model, input_shape, out_dir / "model.onnx", check_data=samples)
    except TenfoldError as exc:
        return {"onnx": f"failed: {exc}"}
    return {"onnx": str(out_dir / "model.onnx"), "onnx_check": getattr(report, "to_dict", lambda: str(report))()}
