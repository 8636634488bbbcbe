"""`tenfold run CONFIG.yaml`: the whole recipe — compress under one budget, verify, export, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from tenfold.cli.common import console


def add_run_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="compress a model under an FPGA budget from a YAML recipe and write model, report and plots",
        description="Run a compression recipe (see examples/*.yaml): prune, decompose and/or quantize under one "
        "budget, fine-tune, verify with the hardware model, export to hls4ml with a C-simulation check, and write "
        "report.json, report.md and plots to the output folder.",
    )
    parser.add_argument("config", type=Path, help="YAML recipe")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the recipe's 'output')")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in the output folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set prune.steps=2 (YAML value syntax)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_recipe)


def run_recipe(args: argparse.Namespace) -> int:
    import yaml

    from tenfold.errors import ConfigError
    from tenfold.pipeline.config import load_run_config
    from tenfold.pipeline.run import config_with_overrides, run

    config = load_run_config(args.config)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set prune.steps=2")
        overrides[key.strip()] = yaml.safe_load(value)
    if overrides:
        config = config_with_overrides(config, **overrides)
    out = args.out or (Path(config.output) if config.output else None)
    if out is None:
        raise ConfigError("no output folder: pass --out DIR or set 'output' in the recipe")
    from tenfold.train.distributed import distributed_session, is_main_process

    with distributed_session():  # a no-op unless launched by torchrun
        main = is_main_process()
        result = run(config, out, overwrite=args.overwrite, resume=args.resume,
                     progress=not args.no_progress and main)
    if main:
        print_run_summary(result.report)
    return 0


def print_run_summary(report) -> None:
    """The before/after table and where the outputs are."""
    from tenfold.report.markdown import summary_rows

    table = Table(title=report.name)
    for column in ("", "before", "after", "reduction"):
        table.add_column(column, justify="right" if column else "left")
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    if report.budget:
        met = "[green]met[/green]" if report.met_budget else "[red]not met within the tolerance[/red]"
        console.print(f"budget {report.budget}: {met}")
    for key, value in report.export.items():
        console.print(f"export {key}: {value}")
    for key in ("report_md", "report_json", "model", "hls4ml_config", "layer_resources", "pareto", "rank_sparsity"):
        if key in report.outputs:
            console.print(f"{key:>16}: [bold]{report.outputs[key]}[/bold]")
