"""Progress display for long loops: rich bars in a terminal, silence in libraries and tests.

Every long loop in tenfold talks to a `ProgressReporter`; pass `progress=False` for silence, `True` for rich
bars, or your own reporter (e.g. one that forwards to a GUI or a logger).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressReporter:
    """No-op reporter; the interface every reporter implements."""

    def add_task(self, description: str, total: int | None = None, completed: int = 0) -> Any:
        return None

    def advance(self, task: Any, amount: int = 1) -> None:
        """Move a task forward."""

    def remove_task(self, task: Any) -> None:
        """Drop a finished inner task from the display."""

    def log(self, message: str) -> None:
        """Print a line above the bars."""

    def close(self) -> None:
        """Stop the display (safe to call more than once)."""


class RichProgressReporter(ProgressReporter):
    """rich progress bars on stderr, with per-epoch lines printed above them."""

    def __init__(self, console: Console | None = None, *, log_lines: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.log_lines = log_lines
        self._progress = Progress(
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._started = False

    def _ensure_started(self) -> None:
        if not self._started:
            self._progress.start()
            self._started = True

    def add_task(self, description: str, total: int | None = None, completed: int = 0) -> TaskID:
        self._ensure_started()
        return self._progress.add_task(description, total=total, completed=completed)

    def advance(self, task: Any, amount: int = 1) -> None:
        if task is not None:
            self._progress.advance(task, amount)

    def remove_task(self, task: Any) -> None:
        if task is not None:
            self._progress.remove_task(task)

    def log(self, message: str) -> None:
        if self.log_lines:
            self.console.print(message)

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False


def make_reporter(progress: bool | ProgressReporter) -> ProgressReporter:
    """Turn the common `progress=` argument into a reporter."""
    if isinstance(progress, ProgressReporter):
        return progress
    return RichProgressReporter() if progress else ProgressReporter()
