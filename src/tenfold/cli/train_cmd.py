"""`tenfold train` and `tenfold evaluate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from tenfold.cli.common import (
    add_data_arguments,
    build_model,
    console,
    count_parameters,
    load_data_from_args,
)
from tenfold.io import ensure_not_input
from tenfold.train import TrainConfig, evaluate, fit, save_checkpoint, seed_everything
from tenfold.train.distributed import distributed_session, is_main_process


def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a model",
        description="Train a zoo model (or fine-tune a checkpoint) and save a tenfold checkpoint.",
    )
    parser.add_argument("model", help="zoo name (e.g. lenet, jet_mlp, resnet20) or a tenfold checkpoint file")
    parser.add_argument("--pretrained", type=Path, default=None, help="start from these weights (zoo models)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (never an input)")
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--schedule", choices=["cosine", "constant", "step"], default="cosine")
    parser.add_argument("--patience", type=int, default=None, help="early stopping after N epochs without gain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT.state (written after every epoch)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_train)


def add_evaluate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy and loss of a model on a dataset",
        description="Evaluate a zoo model (with --pretrained weights) or a tenfold checkpoint on a test split.",
    )
    parser.add_argument("model", help="zoo name or a tenfold checkpoint file")
    parser.add_argument("--pretrained", type=Path, default=None, help="weights for a zoo model")
    add_data_arguments(parser)
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    """Train; under `torchrun --nproc-per-node N` every rank trains (DDP) and only rank 0 writes and prints."""
    with distributed_session():
        return _run_train(args)


def _run_train(args: argparse.Namespace) -> int:
    main = is_main_process()
    ensure_not_input(args.out, [args.model, args.pretrained, args.data_path], what="--out")
    splits = load_data_from_args(args)
    seed_everything(args.seed)  # the initial weights too, so a run repeats (and equals its torchrun twin)
    model = build_model(args.model, splits, args.pretrained)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        early_stopping_patience=args.patience,
        seed=args.seed,
    )
    state_path = args.out.with_name(args.out.name + ".state")
    if main:
        console.print(
            f"training [bold]{args.model}[/bold] ({count_parameters(model):,} parameters) on "
            f"[bold]{splits.name}[/bold]: {len(splits.train)} train / {len(splits.val)} val / "
            f"{len(splits.test)} test"
        )
    report = fit(
        model,
        splits.train,
        splits.val,
        config,
        progress=not args.no_progress,
        checkpoint_path=state_path,
        resume=args.resume,
    )
    test = evaluate(model, splits.test)
    if not main:
        return 130 if report.interrupted else 0
    save_checkpoint(
        args.out,
        model,
        metadata={
            "dataset": splits.name,
            "classes": list(splits.classes),
            "input_shape": list(splits.input_shape),
            "mean": list(splits.mean),
            "std": list(splits.std),
            "train_config": config.to_dict(),
            "best_val_accuracy": report.best_val_accuracy,
            "test_accuracy": test.accuracy,
            "interrupted": report.interrupted,
        },
    )
    if not report.interrupted:
        state_path.unlink(missing_ok=True)
    status = "interrupted — best weights saved; rerun with --resume to continue" if report.interrupted else "done"
    console.print(
        f"{status}: best val acc {_pct(report.best_val_accuracy)} (epoch "
        f"{(report.best_epoch or 0) + 1}), test acc {_pct(test.accuracy)}, {report.seconds:.1f}s → {args.out}"
    )
    return 130 if report.interrupted else 0


def run_evaluate(args: argparse.Namespace) -> int:
    splits = load_data_from_args(args)
    model = build_model(args.model, splits, args.pretrained)
    data = {"train": splits.train, "val": splits.val, "test": splits.test}[args.split]
    result = evaluate(model, data, batch_size=args.batch_size, progress=not args.no_progress)
    payload = {
        "model": args.model,
        "dataset": splits.name,
        "split": args.split,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "n_samples": result.n_samples,
        "parameters": count_parameters(model),
        "seconds": result.seconds,
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    table = Table(title=f"{args.model} on {splits.name} ({args.split})")
    for key in ("accuracy", "loss", "n_samples", "parameters", "seconds"):
        table.add_column(key, justify="right")
    table.add_row(
        _pct(result.accuracy), f"{result.loss:.4f}", str(result.n_samples), f"{payload['parameters']:,}",
        f"{result.seconds:.1f}",
    )
    console.print(table)
    return 0



def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
