"""`tenfold quantize`: fixed-point types for a trained model (post-training, QAT or per-layer search)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from tenfold.cli.common import (
    add_data_arguments,
    add_hardware_arguments,
    build_model,
    console,
    hls_config_from_args,
    load_data_from_args,
)
from tenfold.errors import ConfigError
from tenfold.io import atomic_write_json, atomic_write_text, ensure_not_input

METHODS = ("ptq", "qat", "search")


def add_quantize_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="give a model fixed-point types: post-training (ptq), quantization-aware training (qat) or search",
        description="Quantize a trained model to hls4ml fixed-point types. ptq picks integer bits per layer from "
        "calibration ranges at the --precision width; qat fine-tunes with the exact ap_fixed arithmetic in the "
        "forward pass; search finds the narrowest per-layer widths within --tolerance of the float accuracy. "
        "Writes the quantized checkpoint, the hls4ml config and a report to --out.",
    )
    parser.add_argument("model", help="a tenfold checkpoint or a zoo name (with --pretrained)")
    parser.add_argument("--pretrained", type=Path, default=None)
    add_data_arguments(parser)
    parser.add_argument("--method", choices=METHODS, default="ptq", help="ptq (default), qat or search")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="headroom over the largest calibrated activation (0.1 = 10%%)")
    parser.add_argument("--accum-width", type=int, default=None,
                        help="ptq (and qat --calibrate): accumulator bits (default: exact products, nothing lost)")
    parser.add_argument("--calibration-batches", type=int, default=None,
                        help="calibrate on at most this many training batches (default: all)")
    parser.add_argument("--calibrate", action="store_true",
                        help="qat: start from per-layer integer bits chosen by ptq instead of --precision as is")
    parser.add_argument("--epochs", type=int, default=5, help="qat: fine-tuning epochs (5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="qat: learning rate (1e-3)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="search: allowed absolute accuracy drop (0.01)")
    parser.add_argument("--widths", default="16,14,12,10,9,8,7,6,5,4",
                        help="search: candidate widths, comma-separated (16,14,12,10,9,8,7,6,5,4)")
    parser.add_argument("--kinds", default="weight,result", help="search: types to narrow (weight,result[,accum])")
    parser.add_argument("--bisect", action="store_true", help="search: binary-search each layer once (faster)")
    parser.add_argument("--exact", action="store_true",
                        help="search: score candidates with the bit-exact emulation (slower)")
    add_hardware_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder (refused if not empty)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_quantize)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers like 16,12,8, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    return values


def run_quantize(args: argparse.Namespace) -> int:
    from tenfold.pipeline import prepare_output_dir
    from tenfold.train import seed_everything

    ensure_not_input(args.out, [args.model, args.pretrained, args.data_path], what="--out")
    if args.calibration_batches is not None and args.calibration_batches < 1:
        raise ConfigError(f"--calibration-batches must be >= 1, got {args.calibration_batches}")
    widths = _int_list(args.widths, "--widths")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    splits = load_data_from_args(args)
    seed_everything(args.seed)
    model = build_model(args.model, splits, args.pretrained).eval()
    config = hls_config_from_args(args, model, splits.input_shape)
    runner = {"ptq": _run_ptq, "qat": _run_qat, "search": _run_search}[args.method]
    quantized, details = runner(args, model, config, splits, widths=widths, kinds=kinds)
    _write_outputs(args, out, model, config, quantized, splits, details)
    return 0


def _calibration_loader(splits):
    from tenfold.train import make_loader

    return make_loader(splits.train, 256, shuffle=False)


def _run_ptq(args, model, config, splits, **_: Any):
    from tenfold.quantize import post_training_quantize

    result = post_training_quantize(model, config, _calibration_loader(splits), margin=args.margin,
                                    accum_width=args.accum_width, max_batches=args.calibration_batches)
    return result.model, {"ranges": [r.to_dict() for r in result.ranges.values()]}


def _run_qat(args, model, config, splits, **_: Any):
    from tenfold.quantize import post_training_quantize, qat
    from tenfold.train import TrainConfig

    if args.calibrate:
        config = post_training_quantize(model, config, _calibration_loader(splits), margin=args.margin,
                                        accum_width=args.accum_width, max_batches=args.calibration_batches).config
    train_config = TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    result = qat(model, config, splits.train, splits.val, train_config, progress=not args.no_progress)
    report = result.report
    return result.model, {"qat": {"float_val_accuracy": report.float_accuracy,
                                  "initial_val_accuracy": report.initial_accuracy,
                                  "final_val_accuracy": report.final_accuracy,
                                  "hardware_val_accuracy": report.hardware_accuracy,
                                  "train": report.train.to_dict()}}


def _run_search(args, model, config, splits, *, widths: list[int], kinds: list[str]):
    from tenfold.quantize import quantize_model, search_precision
    from tenfold.train import make_reporter

    reporter = make_reporter(not args.no_progress)
    task = reporter.add_task("precision search", total=None)

    def on_step(step) -> None:
        reporter.advance(task)
        mark = "[green]kept[/green]" if step.accepted else "[red]too inaccurate[/red]"
        reporter.log(f"{step.layer} {step.kind} -> {step.width} bits: val acc {100 * step.accuracy:.2f}% {mark}")

    try:
        report = search_precision(model, config, splits.val, tolerance=args.tolerance, widths=widths, kinds=kinds,
                                  input_shape=splits.input_shape, calibration_data=_calibration_loader(splits),
                                  margin=args.margin, bisect=args.bisect, hardware=args.exact, progress=on_step)
    finally:
        reporter.close()
    details = report.to_dict()
    details.pop("hls_config", None)
    return quantize_model(model, report.config), {"search": details, "search_markdown": report.to_markdown()}


def _write_outputs(args, out: Path, model, given_config, quantized, splits, details: dict[str, Any]) -> None:
    from tenfold.hardware import estimate
    from tenfold.quantize import hardware_accuracy, raise_on_overflow, to_float
    from tenfold.train import evaluate, save_checkpoint

    config = quantized.config
    if args.method != "qat":  # qat checks before training; check what ptq and search chose
        raise_on_overflow(quantized, _calibration_loader(splits), max_batches=args.calibration_batches or 8)
    float_test = evaluate(model, splits.test).accuracy
    quantized_test = evaluate(quantized, splits.test).accuracy
    hardware_test = hardware_accuracy(quantized, splits.test)
    before = estimate(model, splits.input_shape, given_config, validate_reuse=False).totals
    after = estimate(model, splits.input_shape, config, validate_reuse=False).totals
    precisions: dict[str, dict[str, str]] = {}
    for site in quantized.quantizer_sites():
        precisions.setdefault(site.layer, {})[site.kind] = site.quantizer.precision.to_cpp()
    hls4ml = config.to_hls4ml()
    markdown_extra = details.pop("search_markdown", "")
    payload = {
        "method": args.method, "precision": args.precision, "dataset": splits.name,
        "input_shape": list(splits.input_shape), "float_test_accuracy": float_test,
        "quantized_test_accuracy": quantized_test, "hardware_test_accuracy": hardware_test,
        "resources_before": before, "resources_after": after, "precisions": precisions,
        "hls_config": hls4ml, "device": config.device, "io_type": config.io_type.value,
    } | details
    metadata = {"dataset": splits.name, "input_shape": list(splits.input_shape), "quantization": args.method,
                "hls_config": hls4ml, "test_accuracy": hardware_test if hardware_test is not None else quantized_test}
    save_checkpoint(out / "quantized.pt", to_float(quantized), metadata=metadata)
    atomic_write_json(out / "hls4ml_config.json", hls4ml)
    atomic_write_json(out / "report.json", payload)
    atomic_write_text(out / "report.md", _markdown(payload, markdown_extra))
    _print_summary(payload, out)


def _markdown(payload: dict[str, Any], extra: str) -> str:
    lines = [f"# Quantization report ({payload['method']}, --precision {payload['precision']})", "",
             f"Test accuracy: float {100 * payload['float_test_accuracy']:.2f}%, quantized "
             f"{100 * payload['quantized_test_accuracy']:.2f}%"
             + (f", bit-exact emulation {100 * payload['hardware_test_accuracy']:.2f}%"
                if payload["hardware_test_accuracy"] is not None else "") + ".", "",
             "| resource | --precision everywhere | quantized |", "|---|---|---|"]
    for key in ("dsp", "bram18", "lut", "ff"):
        lines.append(f"| {key} | {payload['resources_before'][key]:,.0f} | {payload['resources_after'][key]:,.0f} |")
    lines += ["", "| layer | kind | type |", "|---|---|---|"]
    for layer, kinds in payload["precisions"].items():
        for kind, text in kinds.items():
            lines.append(f"| {layer} | {kind} | `{text}` |")
    text = "\n".join(lines) + "\n"
    return text + ("\n" + extra if extra else "")


def _print_summary(payload: dict[str, Any], out: Path) -> None:
    table = Table(title=f"quantized ({payload['method']})")
    for column in ("", "--precision everywhere", "quantized"):
        table.add_column(column, justify="right" if column else "left")
    for key in ("dsp", "bram18", "lut", "ff"):
        table.add_row(key, f"{payload['resources_before'][key]:,.0f}", f"{payload['resources_after'][key]:,.0f}")
    hardware = payload["hardware_test_accuracy"]
    table.add_row("test accuracy", f"{100 * payload['float_test_accuracy']:.2f}% (float)",
                  f"{100 * payload['quantized_test_accuracy']:.2f}%"
                  + (f" ({100 * hardware:.2f}% bit-exact)" if hardware is not None else ""))
    console.print(table)
    console.print(f"outputs in [bold]{out}[/bold]")
    console.print(json.dumps({"report": str(out / "report.json")}))
