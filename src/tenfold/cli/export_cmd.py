"""`tenfold export`: write an hls4ml project for a model and prove its C simulation matches tenfold bit for bit."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def add_export_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write an hls4ml project (and check its C simulation bit for bit)",
        description="Convert a model with hls4ml's PyTorch front end using tenfold's per-layer settings, compile "
        "the C simulation with g++ and, with --check, compare it with tenfold's bit-exact emulation.",
    )
    parser.add_argument("model", help="a tenfold checkpoint (pruned or not) or a zoo name")
    parser.add_argument("--pretrained", type=Path, default=None)
    parser.add_argument("--to", default="hls4ml", choices=["hls4ml"], help="target (hls4ml)")
    parser.add_argument("--out", type=Path, required=True, help="project folder (refused if not empty)")
    parser.add_argument("--overwrite", action="store_true")
    add_hardware_arguments(parser)
    parser.add_argument("--check", action="store_true", help="compare the C simulation with tenfold's emulation")
    parser.add_argument("--samples", type=int, default=500, help="test samples used by --check")
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from tenfold.export import check_bit_exact, export_hls4ml
    from tenfold.pipeline import prepare_output_dir

    ensure_not_input(args.out, [args.model, args.pretrained, args.data_path], what="--out")
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    splits = load_data_from_args(args)
    model = build_model(args.model, splits, args.pretrained).eval()
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
