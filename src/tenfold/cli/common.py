"""What every subcommand shares: console, data and model options, and turning errors into one clear line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

# tables stay readable when output goes to a file or CI log (rich would fall back to 80 columns)
console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=160)
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


def add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    """--device --precision --reuse --strategy --io --clock --config: the FPGA and hls4ml settings."""
    group = parser.add_argument_group("FPGA and hls4ml settings")
    group.add_argument("--device", default="xcvu13p", help="FPGA part or board (default xcvu13p, hls4ml's)")
    group.add_argument("--precision", default="fixed<16,6>", help="default precision (hls4ml string)")
    group.add_argument("--reuse", type=int, default=1, help="ReuseFactor for every layer (default 1)")
    group.add_argument("--strategy", default="Latency", help="Latency, Resource or resource_unrolled")
    group.add_argument("--io", default="io_parallel", help="io_parallel or io_stream")
    group.add_argument("--clock", type=float, default=5.0, help="clock period in ns (default 5)")
    group.add_argument("--config", type=Path, default=None, help="hls4ml-style config (YAML or JSON)")


def read_hls4ml_config(path: Path) -> dict[str, Any]:
    """An hls4ml-style config file (YAML or JSON); its HLSConfig section if it has one."""
    from tenfold.io import read_yaml_mapping

    loaded = read_yaml_mapping(path, what="config file", hint="hls4ml's hls_config with a 'Model' section")
    return loaded.get("HLSConfig", loaded)


def hls_config_from_args(args: argparse.Namespace, model: nn.Module | None = None,
                         input_shape: tuple[int, ...] | None = None, *, nearest_reuse: bool = True):
    """The HLSConfig the hardware options describe; without --config, each layer gets the nearest valid RF."""
    from tenfold.hardware import make_config
    from tenfold.hardware.estimate import uniform_reuse_config

    config = make_config(device=args.device, precision=args.precision, reuse_factor=args.reuse,
                         strategy=args.strategy, io_type=args.io, clock_period_ns=args.clock,
                         hls4ml_config=read_hls4ml_config(args.config) if args.config else None)
    if nearest_reuse and args.config is None and model is not None and input_shape is not None:
        config = uniform_reuse_config(config, model, input_shape)
    return config
