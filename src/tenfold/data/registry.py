"""Name -> loader dispatch, so the CLI and configs can say ``--dataset cifar10 --data PATH``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenfold.data.cifar import load_cifar10, load_cifar100
from tenfold.data.digits import load_digits
from tenfold.data.jets import load_jets
from tenfold.data.mnist import load_fashion_mnist, load_mnist
from tenfold.data.splits import DataSplits
from tenfold.data.synthetic import make_synthetic
from tenfold.errors import DataError

__all__ = ["DATASET_ALIASES", "list_datasets", "load_dataset"]

# Canonical name -> (loader, whether it reads a path).
_LOADERS: dict[str, tuple[Callable[..., DataSplits], bool]] = {
    "digits": (load_digits, False),
    "mnist": (load_mnist, True),
    "fashion-mnist": (load_fashion_mnist, True),
    "cifar10": (load_cifar10, True),
    "cifar100": (load_cifar100, True),
    "jets": (load_jets, True),
    "synthetic": (make_synthetic, False),
}
DATASET_ALIASES: dict[str, str] = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "lhc-jets": "jets",
    "lhc_jets": "jets",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


def list_datasets() -> list[str]:
    """Canonical dataset names accepted by :func:`load_dataset` (aliases not repeated)."""
    return list(_LOADERS)


def load_dataset(name: str, path: str | Path | None = None, **kwargs: Any) -> DataSplits:
    """Load dataset ``name`` (a canonical name or alias) from ``path`` with loader-specific options.

    Unknown names and options become DataErrors that list what is accepted, so a typo on the
    command line gets a useful answer rather than a TypeError.
    """
    key = str(name).strip().lower()
    key = DATASET_ALIASES.get(key, key)
    if key not in _LOADERS:
        aliases = ", ".join(f"{a} -> {c}" for a, c in DATASET_ALIASES.items())
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(_LOADERS)} (aliases: {aliases})")
    loader, takes_path = _LOADERS[key]
    if takes_path:
        args: tuple[Any, ...] = (path,)
    elif path is not None:
        raise DataError(f"dataset {key!r} is built in and takes no path, got {path!r}")
    else:
        args = ()
    try:
        inspect.signature(loader).bind(*args, **kwargs)
    except TypeError as exc:
        params = [p for p in inspect.signature(loader).parameters if p != "path"]
        raise DataError(f"dataset {key!r}: bad option(s) {sorted(kwargs)} ({exc}); accepted: {params}") from exc
    return loader(*args, **kwargs)
