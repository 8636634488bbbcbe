"""What every subcommand shares: console, data and model options, and turning errors into one clear line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

console = Console()
err_console = Console(stderr=True)


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """--data NAME [--data-path PATH] [--seed] [--max-train] [--max-test]."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default=None if required else "digits",
        required=required,
        help="dataset name: digits (default, ships with scikit-learn), mnist, fashion-mnist, cifar10, cifar100, "
        "jets, synthetic",
    )
    group.add_argument("--data-path", type=Path, default=None, help="folder or file the dataset is read from")
    group.add_argument("--max-train", type=int, default=None, help="use at most this many training samples")
    group.add_argument("--max-test", type=int, default=None, help="use at most this many test samples")
    group.add_argument("--val-fraction", type=float, default=0.1, help="share of training data held out (0.1)")


def load_data_from_args(args: argparse.Namespace):
    """DataSplits for the --data options; loader-specific options are only passed where they apply."""
    from tenfold.data import load_dataset

    kwargs: dict[str, Any] = {"seed": args.seed, "val_fraction": args.val_fraction}
    if args.max_train is not None:
        kwargs["max_train"] = args.max_train
    if args.max_test is not None:
        kwargs["max_test"] = args.max_test
    return load_dataset(args.data, args.data_path, **kwargs)


def build_model(source: str, splits, pretrained: Path | None) -> nn.Module:
    """A model from a checkpoint file or a zoo name sized for the dataset."""
    from tenfold.models import kwargs_for_data
    from tenfold.train import load_model

    path = Path(source)
    if path.exists() or path.suffix in {".pt", ".pth", ".th", ".ckpt"}:
        return load_model(path)
    kwargs = kwargs_for_data(source, splits.input_shape, splits.num_classes) if splits is not None else {}
    return load_model(source, pretrained=pretrained, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
