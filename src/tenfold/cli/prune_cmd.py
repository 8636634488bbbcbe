"""`tenfold prune`: resource-aware structured pruning of a model for an FPGA budget."""

from __future__ import annotations

import argparse
import json
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


def add_prune_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="prune a model to fit an FPGA resource budget (knapsack over DSP patterns, BRAM blocks, neurons)",
        description="Iteratively prune a trained model under a resource budget, fine-tuning between steps, and "
        "stop when validation accuracy would drop by more than --tolerance. Writes the pruned model, a report and "
        "an hls4ml config to --out.",
    )
    parser.add_argument("model", help="a tenfold checkpoint or a zoo name (with --pretrained)")
    parser.add_argument("--pretrained", type=Path, default=None)
    add_data_arguments(parser)
    parser.add_argument("--budget", required=True, help="e.g. 'dsp<=0.1x,bram<=0.3x', 'dsp<=500', 'bram<=20%%'")
    parser.add_argument("--structure", default="pattern", choices=["weight", "pattern", "block", "neuron"])
    parser.add_argument("--importance", default="taylor", choices=["l1", "l2", "taylor", "fisher"])
    parser.add_argument("--schedule", default="polynomial", choices=["constant", "polynomial", "binary"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed absolute accuracy drop (0.01)")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--regularization", type=float, default=0.0, help="group-lasso strength on the structures")
    parser.add_argument("--retries", type=int, default=2,
                        help="after a rejected step, steps bisecting towards it (default 2)")
    parser.add_argument("--recovery-epochs", type=int, default=0,
                        help="extra fine-tuning epochs for a step that misses the tolerance, before rejecting it")
    parser.add_argument("--final-epochs", type=int, default=0,
                        help="after the last step, fine-tune the final masks this many more epochs (discarded if it "
                             "ends below the tolerance or raises a resource over the budget)")
    parser.add_argument("--no-repair", action="store_true",
                        help="no extra step when fine-tuning left the final model over the budget")
    parser.add_argument("--no-lock-constants", action="store_true",
                        help="Latency layers: let fine-tuning move weights priced as shift-add constants (no DSP) "
                             "to codes that need a DSP (by default they are kept cheap, so the DSP count holds)")
    parser.add_argument("--rewind", action="store_true", help="rewind surviving weights to the unpruned values")
    parser.add_argument("--permute", action="store_true",
                        help="first reorder hidden channels (same function) so each multiplier pattern holds weights "
                             "of like importance: pattern/block structures at a reuse factor > 1")
    parser.add_argument("--solver", default="auto", choices=["auto", "exact", "greedy", "lagrangian"])
    add_hardware_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder (refused if not empty)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    from tenfold.pipeline import prepare_output_dir
    from tenfold.prune import PruneConfig, Pruner, shrink
    from tenfold.train import TrainConfig, evaluate, save_checkpoint

    ensure_not_input(args.out, [args.model, args.pretrained, args.data_path], what="--out")
    prune_config = PruneConfig(
        budget=args.budget, structure=args.structure, importance=args.importance, schedule=args.schedule,
        steps=args.steps, retries=args.retries, recovery_epochs=args.recovery_epochs, repair=not args.no_repair,
        lock_constants=not args.no_lock_constants, permute=args.permute, final_epochs=args.final_epochs,
        tolerance=args.tolerance, regularization=args.regularization, rewind=args.rewind,
        solver=args.solver, seed=args.seed,
        finetune=TrainConfig(epochs=args.finetune_epochs, lr=args.lr, seed=args.seed, restore_best=False),
    )
    out = args.out if args.resume else prepare_output_dir(args.out, overwrite=args.overwrite)
    splits = load_data_from_args(args)
    model = build_model(args.model, splits, args.pretrained)
    hls = hls_config_from_args(args, model, splits.input_shape)
    result = Pruner(prune_config, hls, splits.input_shape).fit(
        model, splits.train, splits.val, checkpoint_dir=out, resume=args.resume, progress=not args.no_progress)
    report = result.report
    test_accuracy = evaluate(result.model, splits.test).accuracy
    payload = report.to_dict() | {"test_accuracy": test_accuracy, "hls_config": hls.to_hls4ml(),
                                  "device": hls.device, "io_type": hls.io_type.value}
    metadata = {"dataset": splits.name, "input_shape": list(splits.input_shape), "pruning": args.structure,
                "budget": args.budget, "test_accuracy": test_accuracy}
    save_checkpoint(out / "pruned.pt", result.model, metadata=metadata)
    if args.structure == "neuron":
        small, recipe = shrink(result.model)
        save_checkpoint(out / "pruned_small.pt", small, metadata=metadata | {"shrink": recipe})
    atomic_write_json(out / "report.json", payload)
    atomic_write_json(out / "hls4ml_config.json", hls.to_hls4ml())
    atomic_write_text(out / "report.md", _markdown(report, test_accuracy))
    _print_summary(report, test_accuracy, out)
    return 0


def _markdown(report, test_accuracy: float) -> str:
    lines = [f"# Pruning report ({report.structure}, budget {report.budget})", "",
             "| | baseline | pruned | reduction |", "|---|---|---|---|"]
    reduction = report.reduction()
    for key in ("dsp", "bram18", "lut", "ff", "params"):
        lines.append(f"| {key} | {report.baseline_resources[key]:,.0f} | {report.final_resources[key]:,.0f} | "
                     f"{100 * reduction.get(key, 0):.1f}% |")
    lines.append(f"| val accuracy | {100 * report.baseline_accuracy:.2f}% | {100 * report.final_accuracy:.2f}% | |")
    lines += ["", f"Test accuracy of the pruned model: {100 * test_accuracy:.2f}%. Budget met: {report.met_budget}.",
              "", "| step | target fraction | accepted | val acc | DSP | BRAM18 | sparsity | solver | gap |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in report.steps:
        gap = "n/a" if s.gap is None else f"{100 * s.gap:.2f}%"
        accepted = str(s.accepted) + (" (repair)" if s.repair else "") + (" (recovered)" if s.recovered else "")
        lines.append(f"| {s.step + 1} | {s.fraction:.2f} | {accepted} | {100 * s.val_accuracy:.2f}% | "
                     f"{s.resources['dsp']:,.0f} | {s.resources['bram18']:,.0f} | {100 * s.sparsity:.1f}% | "
                     f"{s.solver} | {gap} |")
    return "\n".join(lines) + "\n"


def _print_summary(report, test_accuracy: float, out: Path) -> None:
    table = Table(title=f"pruned ({report.structure}) under {report.budget}")
    for column in ("", "baseline", "pruned", "reduction"):
        table.add_column(column, justify="right" if column else "left")
    reduction = report.reduction()
    for key in ("dsp", "bram18", "lut", "ff", "params"):
        table.add_row(key, f"{report.baseline_resources[key]:,.0f}", f"{report.final_resources[key]:,.0f}",
                      f"{100 * reduction.get(key, 0):.1f}%")
    table.add_row("val accuracy", f"{100 * report.baseline_accuracy:.2f}%", f"{100 * report.final_accuracy:.2f}%", "")
    console.print(table)
    met = "[green]met[/green]" if report.met_budget else "[red]not met within the tolerance[/red]"
    console.print(f"budget {met}; test accuracy {100 * test_accuracy:.2f}%; outputs in [bold]{out}[/bold]")
    console.print(json.dumps({"report": str(out / "report.json")}))
