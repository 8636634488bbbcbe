"""`tenfold models` and `tenfold datasets`: what the zoo and the loaders offer."""

from __future__ import annotations

import argparse

from tenfold.cli.common import console


def add_info_parsers(subparsers) -> None:
    models = subparsers.add_parser("models", help="list the model zoo")
    models.set_defaults(handler=run_models)
    datasets = subparsers.add_parser("datasets", help="list the dataset loaders")
    datasets.set_defaults(handler=run_datasets)


def run_models(args: argparse.Namespace) -> int:
    from tenfold.models import list_models

    for name in list_models():
        console.print(name)
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from tenfold.data import list_datasets

    for name in list_datasets():
        console.print(name)
    return 0
