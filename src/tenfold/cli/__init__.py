"""The `tenfold` command line: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tenfold import __version__
from tenfold.errors import TenfoldError


def build_parser() -> argparse.ArgumentParser:
    from tenfold.cli.decompose_cmd import add_decompose_parser
    from tenfold.cli.demo_cmd import add_demo_parser
    from tenfold.cli.estimate_cmd import add_estimate_parser
    from tenfold.cli.export_cmd import add_export_parser
    from tenfold.cli.info_cmd import add_info_parsers
    from tenfold.cli.prune_cmd import add_prune_parser
    from tenfold.cli.quantize_cmd import add_quantize_parser
    from tenfold.cli.run_cmd import add_run_parser
    from tenfold.cli.sweep_cmd import add_sweep_parser
    from tenfold.cli.train_cmd import add_evaluate_parser, add_train_parser

    parser = argparse.ArgumentParser(
        prog="tenfold",
        description="Fit trained PyTorch networks onto FPGAs: resource-aware knapsack pruning and quantized "
        "tensor decomposition, priced by an hls4ml-faithful hardware model.",
    )
    parser.add_argument("--version", action="version", version=f"tenfold {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(subparsers)
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_estimate_parser(subparsers)
    add_prune_parser(subparsers)
    add_decompose_parser(subparsers)
    add_quantize_parser(subparsers)
    add_run_parser(subparsers)
    add_sweep_parser(subparsers)
    add_export_parser(subparsers)
    add_info_parsers(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn tenfold's errors into one red line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    from tenfold.cli.common import err_console

    try:
        return int(_dispatch(args) or 0)
    except TenfoldError as exc:
        from rich.markup import escape

        # escaped: messages quote things like tenfold[distributed] or [low, high], which rich would eat as markup
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        return 130


SELF_DISTRIBUTED = {"train", "run"}  # commands that manage torchrun ranks themselves


def _dispatch(args: argparse.Namespace) -> int:
    """Run the handler; under torchrun every rank computes, but only rank 0 prints and writes --out."""
    from tenfold.train.distributed import distributed_session, is_main_process, launch_env

    if launch_env() is None or args.command in SELF_DISTRIBUTED:
        return args.handler(args)
    with distributed_session():
        if not is_main_process():
            import tempfile
            from pathlib import Path

            from tenfold.cli.common import console

            console.quiet = True
            if getattr(args, "out", None) is not None:
                args.out = Path(tempfile.mkdtemp(prefix="tenfold-rank-")) / Path(args.out).name
                args.overwrite = True
                args.resume = False if hasattr(args, "resume") else None
        return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
