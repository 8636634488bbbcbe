"""Output folders that never swallow earlier results."""

from __future__ import annotations

from pathlib import Path

from tenfold.errors import ConfigError


def prepare_output_dir(path: str | Path, *, overwrite: bool = False, auto_suffix: bool = False) -> Path:
    """Create `path` for a run's outputs.

    A non-empty folder is refused (so a second run cannot clobber the first) unless `overwrite` is set;
    with `auto_suffix` the next free name `path-2`, `path-3`, ... is used instead.
    """
    base = Path(path)
    candidate = base
    if not overwrite and _non_empty(candidate):
        if not auto_suffix:
            raise ConfigError(
                f"output folder {base} is not empty; choose another --out or pass --overwrite to reuse it"
            )
        index = 2
        while _non_empty(candidate := base.with_name(f"{base.name}-{index}")):
            index += 1
    if candidate.exists() and not candidate.is_dir():
        raise ConfigError(f"output path {candidate} exists and is a file, not a folder")
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def _non_empty(path: Path) -> bool:
    return (path.is_dir() and any(path.iterdir())) or path.is_file()
