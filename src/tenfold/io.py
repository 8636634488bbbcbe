"""Safe file output: every file tenfold writes appears whole or not at all, and inputs are never clobbered."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from tenfold.errors import CheckpointError


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it over `path` only if the block succeeds.

    A crash or Ctrl-C half-way leaves the old file (if any) untouched and no partial file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """`torch.save` through a temporary file, so a checkpoint is never half-written."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def ensure_not_input(output: str | Path, inputs: list[str | Path | None], what: str = "output") -> None:
    """Refuse to write where an input lives: tenfold never overwrites the file it was given."""
    out = Path(output).resolve()
    for candidate in inputs:
        if candidate is None:
            continue
        path = Path(candidate)
        if path.exists() and path.resolve() == out:
            raise CheckpointError(
                f"the {what} path {output} is also an input; tenfold never overwrites its inputs. "
                "Choose a different output path."
            )


def _json_default(obj: Any) -> Any:
    """Make numpy/torch scalars, paths and dataclass-like objects JSON-serialisable."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")



def read_yaml_mapping(path: str | Path, *, what: str, hint: str) -> dict:
    """A YAML (or JSON) file that must hold a mapping; every problem is one ConfigError naming the file.

    `what` names the file's role in messages ("config file", "sweep file"); `hint` says what it should hold.
    """
    import yaml

    from tenfold.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist ({hint})")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping ({hint})")
    return loaded
