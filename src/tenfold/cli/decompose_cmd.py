"""`tenfold decompose`: quantized CP/Tucker decomposition of a trained model to a compression target."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from tenfold.cli.common import (
    add_data_arguments,
    add_hardware_arguments,
    build_model,
    console,
    hls_config_from_args,
    load_data_from_args,
)
from tenfold.io import atomic_write_json, atomic_write_text, ensure_not_input

DECOMPOSE_CHOICES = ("cp", "cp3", "tucker2")


def add_decompose_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "decompose",
        help="decompose a model's layers into fixed-point factors to meet a compression target",
        description="Measure each layer's loss increase at a ladder of ranks, choose one rank per layer with a "
        "multiple-choice knapsack to meet --target (e.g. 10x fewer parameters of the decomposed layers), replace "
        "the layers by quantized factors (the chip stores the factors and rebuilds the weights), fine-tune the "
        "factors with straight-through quantization, and write the model, a report and an hls4ml config to --out.",
    )
    parser.add_argument("model", help="a tenfold checkpoint or a zoo name (with --pretrained)")
    parser.add_argument("--pretrained", type=Path, default=None)
    add_data_arguments(parser)
    parser.add_argument("--target", default="10x",
                        help="'10x' fewer parameters, 'params<=50000', 'bits<=0.05x', or a hardware budget")
    parser.add_argument("--bits", type=int, default=8, help="factor width in bits (8)")
    parser.add_argument("--method", default="cp3", choices=DECOMPOSE_CHOICES,
                        help="cp (all modes), cp3 (kernel modes merged, default) or tucker2")
    parser.add_argument("--form", default="reconstructed", choices=["reconstructed", "factorized"])
    parser.add_argument("--value", default="loss", choices=["loss", "error"],
                        help="rank choice by measured loss increase (default) or reconstruction error only")
    parser.add_argument("--layers", default=None, help="comma-separated layer names (default: every Conv/Linear)")
    parser.add_argument("--sensitivity-batches", type=int, default=4)
    parser.add_argument("--n-iter-max", type=int, default=50)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--refine-steps", type=int, default=200,
                        help="data-aware refinement: steps per layer fitting its factors to the original layer's "
                        "outputs right after decomposing (0 = off)")
    parser.add_argument("--bn-batches", type=int, default=20,
                        help="without refinement: batches to re-measure BatchNorm statistics on (0 = off)")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="distillation weight from the original model during fine-tuning (0 = off)")
    parser.add_argument("--augment", default="none", choices=["none", "crop", "flip_crop"],
                        help="batch augmentation during fine-tuning (flip_crop for natural images)")
    add_hardware_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder (refused if not empty)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_decompose)


def run_decompose(args: argparse.Namespace) -> int:
    from tenfold.decompose import (
        SensitivityConfig,
        accounting_method,
        decompose_model,
        rank_sensitivity,
        requantize_,
        select_ranks,
        settle_decomposed,
    )
    from tenfold.decompose.pricing import estimate_decomposed
    from tenfold.hardware import estimate
    from tenfold.pipeline import prepare_output_dir
    from tenfold.train import TrainConfig, evaluate, fit, save_checkpoint
    from tenfold.train.augment import frozen_teacher
    from tenfold.train.progress import make_reporter

    for flag, value in (("--refine-steps", args.refine_steps), ("--bn-batches", args.bn_batches)):
        if value < 0:
            from tenfold.errors import ConfigError

            raise ConfigError(f"{flag} must be >= 0 (0 turns it off), got {value}")
    ensure_not_input(args.out, [args.model, args.pretrained, args.data_path], what="--out")
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    splits = load_data_from_args(args)
    model = build_model(args.model, splits, args.pretrained)
    hls = hls_config_from_args(args, model, splits.input_shape)
    reporter = make_reporter(not args.no_progress)
    before = {"val": evaluate(model, splits.val).accuracy, "test": evaluate(model, splits.test).accuracy}
    layers = [name.strip() for name in args.layers.split(",")] if args.layers else None
    task: dict = {}

    def progress(done: int, total: int, description: str) -> None:
        if "id" not in task:
            task["id"] = reporter.add_task("rank sensitivity", total=total)
        reporter.advance(task["id"])

    sensitivity = rank_sensitivity(
        model, splits.train,
        SensitivityConfig(method=accounting_method(args.method), precision=f"fixed<{args.bits},1>",
                          n_batches=args.sensitivity_batches, n_iter_max=args.n_iter_max, seed=args.seed),
        layers=layers, progress=progress)
    if "id" in task:
        reporter.remove_task(task["id"])
    plan = select_ranks(sensitivity, args.target, value=args.value)
    decomposed, report = decompose_model(model, plan.ranks, method=args.method, precision=f"fixed<{args.bits},1>",
                                         form=args.form, layers=list(plan.ranks), skip=(), seed=args.seed,
                                         n_iter_max=args.n_iter_max)
    settle_decomposed(model, decomposed, splits.train, refine_steps=args.refine_steps, bn_batches=args.bn_batches,
                      seed=args.seed)
    after = {"val": evaluate(decomposed, splits.val).accuracy, "test": evaluate(decomposed, splits.test).accuracy}
    tuned = None
    if args.finetune_epochs > 0:
        fit(decomposed, splits.train, splits.val,
            TrainConfig(epochs=args.finetune_epochs, lr=args.lr, seed=args.seed, augment=args.augment,
                        distill_alpha=args.distill),
            progress=reporter, teacher=frozen_teacher(model) if args.distill > 0 else None)
        requantize_(decomposed)
        tuned = {"val": evaluate(decomposed, splits.val).accuracy, "test": evaluate(decomposed, splits.test).accuracy}
    reporter.close()
    base_cost = estimate(model, splits.input_shape, hls)
    costs = {mode: estimate_decomposed(decomposed, splits.input_shape, hls, mode=mode).totals
             for mode in ("stream", "buffer")}
    payload = {"plan": plan.to_dict(), "decomposition": report.to_dict(), "accuracy": {
        "before": before, "after_decomposition": after, "after_finetune": tuned},
        "resources": {"before": base_cost.totals, "stream": costs["stream"], "buffer": costs["buffer"]},
        "hls_config": hls.to_hls4ml()}
    metadata = {"dataset": splits.name, "input_shape": list(splits.input_shape), "target": args.target,
                "test_accuracy": (tuned or after)["test"]}
    save_checkpoint(out / "decomposed.pt", decomposed, metadata=metadata)
    atomic_write_json(out / "report.json", payload)
    atomic_write_json(out / "hls4ml_config.json", hls.to_hls4ml())
    atomic_write_text(out / "report.md", _markdown(plan, report, before, after, tuned, base_cost.totals, costs))
    _print_summary(plan, report, before, after, tuned, out)
    return 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _markdown(plan, report, before, after, tuned, base, costs) -> str:
    lines = [f"# Decomposition report (target {plan.target}, {plan.method}, {plan.precision} factors)", "",
             f"Parameters of the decomposed layers: {plan.params_before:,} → {plan.params_after:,} "
             f"({plan.ratio:.1f}x); whole model {plan.model_params_before:,} → {plan.model_params_after:,}.", "",
             "| | before | after decomposition | after fine-tuning |", "|---|---|---|---|",
             f"| val accuracy | {_pct(before['val'])} | {_pct(after['val'])} | {_pct(tuned and tuned['val'])} |",
             f"| test accuracy | {_pct(before['test'])} | {_pct(after['test'])} | {_pct(tuned and tuned['test'])} |",
             "", "| resource | before | regenerate while streaming | regenerate into a buffer |", "|---|---|---|---|"]
    for key in ("dsp", "bram18", "lut", "ff"):
        lines.append(f"| {key} | {base[key]:,.0f} | {costs['stream'][key]:,.0f} | {costs['buffer'][key]:,.0f} |")
    lines += ["", "| layer | method | rank | params before | params after | relative error |",
              "|---|---|---|---|---|---|"]
    for layer in report.layers:
        lines.append(f"| {layer.name} | {layer.method} | {layer.rank} | {layer.params_before:,} | "
                     f"{layer.params_after:,} | {layer.relative_error:.3f} |")
    return "\n".join(lines) + "\n"


def _print_summary(plan, report, before, after, tuned, out: Path) -> None:
    table = Table(title=f"decomposed ({plan.method}, {plan.precision}) for {plan.target}")
    for column in ("", "before", "after decomposition", "after fine-tuning"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("params (decomposed layers)", f"{plan.params_before:,}", f"{plan.params_after:,}",
                  f"{plan.ratio:.1f}x fewer")
    table.add_row("val accuracy", _pct(before["val"]), _pct(after["val"]), _pct(tuned and tuned["val"]))
    table.add_row("test accuracy", _pct(before["test"]), _pct(after["test"]), _pct(tuned and tuned["test"]))
    console.print(table)
    console.print(f"ranks: {plan.ranks}; outputs in [bold]{out}[/bold]")
