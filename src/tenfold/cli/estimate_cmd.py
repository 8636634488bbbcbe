"""`tenfold estimate`: per-layer FPGA resources and latency of a model, with totals and % of the device."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from tenfold.cli.common import add_hardware_arguments, console, hls_config_from_args
from tenfold.errors import ConfigError


def add_estimate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="FPGA resources and latency of a model as hls4ml would build it",
        description="Price a model per layer (DSP, BRAM18, LUT, FF, latency, II) on a device; flags resources "
        "over the device's capacity. Optionally compares with a real synthesis report.",
    )
    parser.add_argument("model", help="zoo name (e.g. jet_mlp, resnet20) or a tenfold checkpoint file")
    parser.add_argument("--pretrained", type=Path, default=None, help="weights for a zoo model")
    parser.add_argument("--input-shape", default=None, help="per-sample input shape, e.g. 16 or 3,32,32")
    add_hardware_arguments(parser)
    parser.add_argument("--nearest-reuse", action="store_true",
                        help="use the nearest valid ReuseFactor per layer instead of failing on invalid ones")
    parser.add_argument("--report", type=Path, default=None,
                        help="a real *_csynth.xml, vivado_synth.rpt or hls4ml project folder to compare with")
    parser.add_argument("--regeneration", choices=["stream", "buffer"], default="stream",
                        help="decomposed layers: rebuild weights from factors as the layer consumes them (stream, "
                        "no weight memory) or once into the weight memory (buffer, saves external traffic)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(handler=run_estimate)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--input-shape must be integers like 16 or 3,32,32, got {text!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape must be positive integers like 16 or 3,32,32, got {text!r}")
    return shape


def run_estimate(args: argparse.Namespace) -> int:
    from tenfold.decompose.pricing import estimate_decomposed
    from tenfold.hardware import load_report
    from tenfold.hardware.reports import compare
    from tenfold.models import default_input_shape
    from tenfold.train import load_checkpoint, load_model

    model = load_model(args.model, pretrained=args.pretrained)
    shape = _parse_shape(args.input_shape) if args.input_shape else None
    if shape is None and Path(args.model).is_file():
        stored = load_checkpoint(args.model).metadata.get("input_shape")
        shape = tuple(stored) if stored else None
    shape = shape or default_input_shape(model)
    if shape is None:
        raise ConfigError("cannot tell the model's input shape; pass --input-shape, e.g. --input-shape 3,32,32")
    config = hls_config_from_args(args, model, shape, nearest_reuse=args.nearest_reuse)
    cost = estimate_decomposed(model, shape, config, mode=args.regeneration)
    comparison = compare(cost.to_dict(), load_report(args.report)) if args.report else None
    if args.json:
        payload = cost.to_dict() | {"model": args.model, "input_shape": list(shape)}
        if comparison is not None:
            payload["comparison"] = comparison
        print(json.dumps(payload, indent=2, default=str))
        return 0
    _print_table(args.model, shape, cost)
    if comparison is not None:
        _print_comparison(args.report, comparison)
    return 0


def _print_table(name: str, shape: tuple[int, ...], cost) -> None:
    device = cost.device
    table = Table(title=f"{name} {tuple(shape)} on {device.name} ({cost.io_type}, {cost.clock_period_ns:g} ns clock)")
    for column in ("layer", "type", "RF", "strategy", "precision", "weights", "nonzero", "DSP", "BRAM18", "LUT",
                   "FF", "latency", "II"):
        table.add_column(column, justify="left" if column in {"layer", "type", "strategy", "precision"} else "right")
    for layer in cost.layers:
        weighted = layer.n_weights > 0
        table.add_row(
            layer.name, layer.module_type, str(layer.reuse_factor) if weighted else "", layer.strategy,
            layer.precision, f"{layer.n_weights:,}" if weighted else "", f"{layer.n_nonzero:,}" if weighted else "",
            f"{layer.dsp:,.0f}", f"{layer.bram18:,.0f}", f"{layer.lut:,.0f}", f"{layer.ff:,.0f}",
            str(layer.latency_cycles), str(layer.ii_cycles),
        )
    totals, share = cost.totals, cost.utilization()
    over = set(cost.over_budget())

    def cell(resource: str) -> str:
        text = f"{totals[resource]:,.0f}"
        return f"[bold red]{text}[/bold red]" if resource in over else f"[bold]{text}[/bold]"

    def pct(resource: str) -> str:
        text = f"{100 * share[resource]:.1f}%"
        return f"[bold red]{text}[/bold red]" if resource in over else text

    table.add_section()
    table.add_row("total", "", "", "", "", "", "", cell("dsp"), cell("bram18"), cell("lut"), cell("ff"),
                  str(cost.latency_cycles), str(cost.ii_cycles))
    table.add_row(f"% of {device.name}", "", "", "", "", "", "", pct("dsp"), pct("bram18"), pct("lut"), pct("ff"),
                  f"{cost.latency_ns:,.0f} ns", "")
    console.print(table)
    if over:
        console.print(f"[bold red]over the device's capacity:[/bold red] {', '.join(sorted(over))} — raise the "
                      "reuse factor, switch to the Resource strategy or io_stream, or compress the model")


def _print_comparison(path: Path, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"estimate vs synthesis report ({path})")
    for column in ("resource", "estimated", "reported", "error"):
        table.add_column(column, justify="left" if column == "resource" else "right")
    for row in rows:
        rel = row.get("rel_error")
        table.add_row(
            row["resource"],
            "n/a" if row["estimated"] is None else f"{row['estimated']:,.0f}",
            "n/a" if row["reported"] is None else f"{row['reported']:,.0f}",
            "n/a" if rel is None else f"{100 * rel:.1f}%",
        )
    console.print(table)
