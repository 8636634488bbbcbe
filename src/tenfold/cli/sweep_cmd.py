"""`tenfold sweep SWEEP.yaml`: many `tenfold run` recipes on Ray Tune, and the accuracy/hardware Pareto front."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from tenfold.cli.common import console

EXIT_INTERRUPTED = 130


def add_sweep_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="sweep a run recipe's budget, reuse factor, strategy, ... on Ray Tune and find the Pareto front",
        description="Run a design-space sweep (see examples/sweep_digits.yaml): every trial is a full `tenfold run` "
        "of the base recipe with the trial's values, in OUT/trials/<trial_id>/. Writes sweep.json, sweep.md, "
        "pareto.png (accuracy against DSP, BRAM18, LUT, latency) and best/. Needs Ray Tune: "
        "pip install 'tenfold[distributed]'.",
    )
    parser.add_argument("config", type=Path, help="YAML sweep file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the sweep file's 'output')")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier sweep in the output folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep in the output folder")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of a private local Ray")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the private local Ray (default: this machine's, or enough for max_concurrent)")
    parser.set_defaults(handler=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Errors are printed here, escaped: sweep messages quote YAML like `[low, high]`, which rich would eat."""
    from tenfold.cli.common import err_console
    from tenfold.errors import TenfoldError

    try:
        return _sweep(args)
    except TenfoldError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C skips Tune's last save; what finished is still on disk
        err_console.print(f"[yellow]interrupted[/yellow]: continue with {_resume_hint(args)}", soft_wrap=True)
        return EXIT_INTERRUPTED


def _sweep(args: argparse.Namespace) -> int:
    from tenfold.errors import ConfigError
    from tenfold.sweep.config import load_sweep_config
    from tenfold.sweep.runner import require_ray, run_sweep

    require_ray()
    config = load_sweep_config(args.config)
    out = args.out or (Path(config.output) if config.output else None)
    if out is None:
        raise ConfigError("no output folder: pass --out DIR or set 'output' in the sweep file")
    action = "resuming" if args.resume else "running"
    console.print(f"{action} sweep {config.name}: {config.expected_trials} trials ({config.search} search) → {out}")
    report = run_sweep(config, out, overwrite=args.overwrite, resume=args.resume, address=args.address,
                       num_cpus=args.num_cpus, log=console.print)
    print_sweep_summary(report)
    if not report.complete:
        console.print(f"[yellow]sweep interrupted[/yellow]: continue with {_resume_hint(args, out)}", soft_wrap=True)
        return EXIT_INTERRUPTED
    return 0


def _resume_hint(args: argparse.Namespace, out: Path | None = None) -> str:
    out = out or args.out
    return escape(f"tenfold sweep {args.config}" + (f" --out {out}" if out else "") + " --resume")


def print_sweep_summary(report) -> None:
    """The trial table, the Pareto-optimal configurations and where the outputs are."""
    from tenfold.sweep.results import table_rows

    headers, rows = table_rows(report)
    table = Table(title=f"sweep {report.config.name}: {report.config.metric} ({report.config.mode}); "
                        "★ = Pareto-optimal")
    for header in headers:
        table.add_column(header, justify="left" if header in ("trial", "status") else "right")
    for row in rows:  # values such as joint.widths print as [12, 10], which rich would read as markup
        table.add_row(*(escape(cell) for cell in row), style="bold" if report.best and report.best in row else None)
    console.print(table)
    if report.best:
        console.print(f"best: [bold]{report.best}[/bold] (copied to {report.outputs.get('best')})")
    for key in ("sweep_md", "sweep_json", "pareto_png"):
        if key in report.outputs:
            console.print(f"{key:>11}: [bold]{report.outputs[key]}[/bold]")
