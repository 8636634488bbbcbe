"""`tenfold demo`: the main job on scikit-learn digits, with a summary table."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from tenfold.cli.common import console
from tenfold.pipeline import DemoConfig, run_demo


def add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on scikit-learn digits (no downloads)",
        description="Train tenfold's reference models on scikit-learn digits, compress them (joint pruning + "
        "precision for DSPs, quantized decomposition for memory), export to hls4ml with a C-simulation check, and "
        "print the before/after tables and where the reports and plots are.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (runs/demo)")
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="reuse a non-empty output folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    config = DemoConfig(out_dir=args.out, epochs=args.epochs, seed=args.seed, overwrite=args.overwrite)
    console.print("[bold]tenfold demo[/bold]: scikit-learn digits (1,797 8×8 images, 10 classes), CPU")
    result = run_demo(config, progress=not args.no_progress)
    sizes = result.dataset["sizes"]
    table = Table(title=f"digits: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test")
    for column in ("model", "architecture", "parameters", "val acc", "test acc", "train time", "DSP", "BRAM18",
                   "LUT", "latency"):
        table.add_column(column, justify="left" if column in {"model", "architecture"} else "right")
    for row in result.models:
        table.add_row(
            row.model,
            row.architecture,
            f"{row.parameters:,}",
            f"{100 * row.val_accuracy:.2f}%",
            f"{100 * row.test_accuracy:.2f}%",
            f"{row.train_seconds:.1f}s",
            f"{row.hardware['dsp']:,.0f}",
            f"{row.hardware['bram18']:,.0f}",
            f"{row.hardware['lut']:,.0f}",
            f"{row.hardware.get('latency_ns', 0):,.0f} ns",
        )
    console.print(table)
    console.print(f"FPGA estimate: {config.device}, {config.precision}, {config.strategy} strategy, "
                  f"ReuseFactor {config.reuse_factor}, io_parallel, 5 ns clock (hls4ml's defaults)")
    for row in result.models:
        if "csim" in row.hardware:
            samples = row.hardware.get("csim_samples")
            console.print(f"hls4ml C simulation of {row.model} vs tenfold's bit-exact emulation"
                          f"{f' on {samples} test images' if samples else ''}: [bold]{row.hardware['csim']}[/bold]")
    from tenfold.cli.run_cmd import print_run_summary

    for run_report in result.runs:
        print_run_summary(run_report)
    console.print(f"checkpoints and report: [bold]{result.out_dir}[/bold] (report: {result.report_path})")
    console.print(f"total time {result.seconds:.1f}s")
    return 0
