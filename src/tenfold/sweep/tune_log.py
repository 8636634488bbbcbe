"""One console line per finished, failed or retried trial, from a Ray Tune callback (Tune's tables are off).

Tune pickles its callbacks into the experiment state and brings them back on `--resume`, so the callback holds
no console: it prints through this module's sink, which `run_sweep` points at its log for the sweep's duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ray.tune import Callback
from rich.markup import escape

_sink: Callable[[str], None] | None = None


@contextlib.contextmanager
def logging_to(log: Callable[[str], None] | None) -> Iterator[None]:
    """Send trial lines to `log` (rich markup) while the block runs."""
    global _sink
    previous, _sink = _sink, log
    try:
        yield
    finally:
        _sink = previous


class TrialLog(Callback):
    """Reports trial endings as they happen."""

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        if result.get("error"):
            _emit(f"[red]✗[/red] {trial.trial_id} failed: {escape(str(result['error']))}")
        elif not result.get("finished"):
            _emit(f"[yellow]■[/yellow] {trial.trial_id} stopped early after {escape(str(result.get('stage', '?')))}")
        else:
            costs = ", ".join(f"{k} {result[k]:,.0f}" for k in ("dsp", "bram18", "lut")
                              if isinstance(result.get(k), int | float))
            _emit(f"[green]✓[/green] {trial.trial_id}: val {100 * float(result['val_accuracy']):.2f}%, {costs}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        _emit(f"[yellow]↻[/yellow] {trial.trial_id} lost its worker; retrying (the run resumes where it stopped)")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        _emit(f"[red]✗[/red] {trial.trial_id} crashed; see {trial.path}/error.txt")


def _emit(message: str) -> None:
    if _sink is not None:
        _sink(message)
