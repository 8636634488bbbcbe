"""Shared helpers for benchmarks: where the shared data is, and writing JSON plus a Markdown table."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "src"))

from tenfold.io import atomic_write_json, atomic_write_text  # noqa: E402


def shared_data(relative: str) -> Path:
    """A path under the benchmark data folder ($TENFOLD_SHARED_DATA or ../shared/data); exits if absent."""
    base = Path(os.environ.get("TENFOLD_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = base / relative
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (set TENFOLD_SHARED_DATA)")
    return path


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write bench/results/NAME.json and NAME.md atomically and return their paths."""
    json_path = atomic_write_json(RESULTS / f"{name}.json", payload | {"environment": environment()})
    md_path = atomic_write_text(RESULTS / f"{name}.md", markdown)
    return json_path, md_path
