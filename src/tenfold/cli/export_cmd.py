"""`tenfold export`: an hls4ml project (bit-exact C simulation check), an ONNX file (checked with onnxruntime),
or HLS C++ that regenerates each layer's weights on chip from quantized CP factors (bit-exact check with g++)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from torch import nn

from tenfold.cli.common import (
    add_data_arguments,
    add_hardware_arguments,
    build_model,
    console,
    hls_config_from_args,
    load_data_from_args,
)
from tenfold.errors import ConfigError
from tenfold.io import atomic_write_json, ensure_not_input

TARGETS = ("hls4ml", "onnx", "hls-cp")
CP_MODES = ("cp4", "cp3", "linear")
CP_SCALES = ("per_component_pow2", "per_factor")


def add_export_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write an hls4ml project, an ONNX file or HLS weight-regeneration C++ (and check them)",
        description="--to hls4ml: convert with hls4ml's PyTorch front end using tenfold's per-layer settings and, "
        "with --check, compare its C simulation with tenfold's bit-exact emulation. --to onnx: write model.onnx "
        "(pruning masks and parametrizations baked in) and compare onnxruntime with PyTorch. --to hls-cp: decompose "
        "every Conv/Linear weight with quantized CP-ALS and write HLS C++ that regenerates it from the factors; "
        "with --check, compile it with g++ and compare every weight bit for bit.",
    )
    parser.add_argument("model", help="a tenfold checkpoint (pruned or not) or a zoo name")
    parser.add_argument("--pretrained", type=Path, default=None)
    parser.add_argument("--to", default="hls4ml", choices=TARGETS, help="target (default hls4ml)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (refused if not empty)")
    parser.add_argument("--overwrite", action="store_true")
    add_hardware_arguments(parser)
    parser.add_argument("--check", action="store_true",
                        help="hls4ml: C simulation vs emulation; onnx: check on test samples instead of random "
                        "inputs; hls-cp: compile with g++ and compare the regenerated weights bit for bit")
    parser.add_argument("--samples", type=int, default=500, help="test samples used by --check")
    cp = parser.add_argument_group("hls-cp (weight regeneration from quantized CP factors)")
    cp.add_argument("--rank", type=int, default=8, help="CP rank per layer (capped at the layer's largest "
                    "sensible rank; default 8)")
    cp.add_argument("--bits", type=int, default=8, help="factor code bits (default 8)")
    cp.add_argument("--mode", default="cp4", choices=CP_MODES,
                    help="conv kernels: cp4 keeps every mode, cp3 merges the kernel modes, linear uses (out, in·k·k)")
    cp.add_argument("--scale", default="per_component_pow2", choices=CP_SCALES,
                    help="power-of-two scale per rank-one term (default) or per factor")
    cp.add_argument("--parallelism", type=int, default=1,
                    help="weights regenerated per clock (per layer, the largest divisor of the last mode size "
                    "not above this)")
    parser.add_argument("--opset", type=int, default=18, help="onnx: ONNX opset (>= 18, default 18)")
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from tenfold.pipeline import prepare_output_dir

    ensure_not_input(args.out, [args.model, args.pretrained, args.data_path], what="--out")
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    _check_target_options(args)
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    splits = load_data_from_args(args)
    model = build_model(args.model, splits, args.pretrained).eval()
    if args.to == "onnx":
        return _export_onnx(args, model, splits, out)
    if args.to == "hls-cp":
        return _export_hls_cp(args, model, splits, out)
    return _export_hls4ml(args, model, splits, out)


def _check_target_options(args: argparse.Namespace) -> None:
    """Refuse bad target options before any data is loaded or model built."""
    if args.to == "hls-cp":
        if args.rank < 1 or args.parallelism < 1:
            raise ConfigError(f"--rank and --parallelism must be >= 1, got {args.rank} and {args.parallelism}")
        if not 2 <= args.bits <= 32:
            raise ConfigError(f"--bits must be in 2..32 (factor code width), got {args.bits}")
    if args.to == "onnx":
        from tenfold.export.onnx_export import MIN_OPSET, require_onnx

        require_onnx()
        if args.opset < MIN_OPSET:
            raise ConfigError(f"--opset must be >= {MIN_OPSET} (the torch.export-based exporter's oldest), "
                              f"got {args.opset}")


def _export_hls4ml(args: argparse.Namespace, model: nn.Module, splits, out: Path) -> int:
    from tenfold.export import check_bit_exact, export_hls4ml

    config = hls_config_from_args(args, model, splits.input_shape)
    project, quantized = export_hls4ml(model, config, splits.input_shape, out / "hls4ml_prj", compile=args.check)
    atomic_write_json(out / "hls4ml_config.json", project.hls_config)
    console.print(f"hls4ml project written to [bold]{project.output_dir}[/bold]")
    if args.check:
        inputs = splits.test.tensors[0][: args.samples]
        report = check_bit_exact(project, quantized, config, inputs)
        atomic_write_json(out / "check.json", report.__dict__ | {"bit_exact": report.bit_exact,
                                                                  "compile_seconds": project.compile_seconds})
        status = "[green]bit-exact[/green]" if report.bit_exact else "[red]MISMATCH[/red]"
        console.print(f"C simulation vs tenfold emulation on {report.samples} samples: {status} "
                      f"({report.mismatched_values} differing values, max |diff| {report.max_abs_difference:g}; "
                      f"compiled in {project.compile_seconds:.1f}s)")
        return 0 if report.bit_exact else 1
    return 0


def _export_onnx(args: argparse.Namespace, model: nn.Module, splits, out: Path) -> int:
    from tenfold.export.onnx_export import export_onnx

    check_data = splits.test.tensors[0][: args.samples] if args.check else None
    checkpoint = Path(args.model) if Path(args.model).exists() else None
    report = export_onnx(model, splits.input_shape, out / "model.onnx", opset=args.opset, check_data=check_data,
                         samples=min(args.samples, 64), seed=args.seed, checkpoint=checkpoint)
    atomic_write_json(out / "onnx_report.json", report.to_dict())
    status = "[green]match[/green]" if report.within_tolerance else "[red]MISMATCH[/red]"
    baked = f"; baked {len(report.baked)} mask(s)/parametrization(s)" if report.baked else ""
    console.print(f"ONNX (opset {report.opset}) written to [bold]{report.path}[/bold]{baked}")
    console.print(f"onnxruntime vs PyTorch on {report.samples} {'test' if args.check else 'random'} samples: {status} "
                  f"(max |diff| {report.max_abs_difference:.3g}, argmax agreement {report.argmax_agreement:.1%})")
    return 0 if report.within_tolerance else 1


def _lanes(wanted: int, last: int) -> int:
    """The largest divisor of the last mode size that is at most ``wanted``."""
    return max(d for d in range(1, min(wanted, last) + 1) if last % d == 0)


def _export_hls_cp(args: argparse.Namespace, model: nn.Module, splits, out: Path) -> int:
    from rich.table import Table

    from tenfold.decompose import quantized_cp_als
    from tenfold.export.hls_cp import check_cp_export, export_cp_model, mode_sizes

    config = hls_config_from_args(args, model, splits.input_shape)
    layers, precisions, lanes = {}, {}, {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            continue
        weight = module.weight.detach().float()  # the effective weight, pruning masks included
        sizes = mode_sizes(tuple(weight.shape), args.mode)
        rank = min(args.rank, math.prod(sizes) // max(sizes))
        result = quantized_cp_als(weight.reshape(sizes), rank, f"fixed<{args.bits},1>", scale=args.scale,
                                  seed=args.seed)
        layers[name] = (result, tuple(weight.shape), args.mode)
        precisions[name] = config.layer(name).precision.weight
        lanes[name] = _lanes(args.parallelism, sizes[-1])
    if not layers:
        raise ConfigError("the model has no Linear or Conv1d/Conv2d layer to decompose")
    project = export_cp_model(layers, out / "hls_cp_prj", weight_precision=precisions, parallelism=lanes,
                              device=config.device)
    table = Table("layer", "weight", "rank", "rel. error", "DSP", "BRAM18", "LUT", "cycles", "bytes saved")
    summary = []
    for layer in project.layers:
        cost = layer.cost
        table.add_row(layer.name, "×".join(map(str, layer.original_shape)), str(layer.spec.rank),
                      f"{layer.result.relative_error:.4f}", str(cost["dsp"]), str(cost["bram18"]),
                      f"{cost['lut']:.0f}", str(cost["cycles"]), str(cost["bytes_saved"]))
        summary.append({"name": layer.name, "shape": list(layer.original_shape), "mode": layer.mode,
                        "rank": layer.spec.rank, "relative_error": float(layer.result.relative_error),
                        "weight_type": layer.spec.weight_type, "cost": cost})
    atomic_write_json(out / "decomposition.json", {"factor_bits": args.bits, "scale": args.scale, "layers": summary})
    console.print(table)
    console.print(f"weight-regeneration C++ written to [bold]{project.output_dir}[/bold]")
    if not args.check:
        return 0
    report = check_cp_export(project)
    atomic_write_json(out / "check.json", report.to_dict())
    status = "[green]bit-exact[/green]" if report.bit_exact else "[red]MISMATCH[/red]"
    total = sum(layer.n_weights for layer in report.layers)
    console.print(f"C simulation vs tenfold's model on {total} weights: {status} ({report.mismatches} differing; "
                  f"compiled in {report.compile_seconds:.1f}s)")
    return 0 if report.bit_exact else 1
