"""Hooks into the training loop: how masked fine-tuning, regularisers and progress plug into `fit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from tenfold.train.config import EpochRecord, TrainConfig


@dataclass
class TrainState:
    """What a callback may read (and, with care, change) while `fit` runs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    epoch: int = 0
    step: int = 0
    batch_loss: float = 0.0
    stop_training: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Base class with no-op hooks; subclass and override what you need.

    Order per step: forward, loss + `regularization(state)`, backward, `on_after_backward`
    (e.g. zero the gradients of pruned weights), optimiser step, `on_step_end` (e.g. re-apply masks).
    Set `state.stop_training = True` to end training after the current epoch.
    """

    def on_train_begin(self, state: TrainState) -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, state: TrainState) -> None:
        """Called at the start of every epoch."""

    def regularization(self, state: TrainState) -> torch.Tensor | None:
        """Extra loss term added to the data loss of every step (e.g. group lasso)."""
        return None

    def on_after_backward(self, state: TrainState) -> None:
        """Called after gradients exist, before the optimiser uses them."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after every optimiser step."""

    def on_epoch_end(self, state: TrainState, record: EpochRecord) -> None:
        """Called after validation at the end of every epoch."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once when training ends, also after an interruption."""


class LambdaCallback(Callback):
    """A callback from plain functions, for quick hooks without a subclass."""

    def __init__(
        self,
        *,
        on_after_backward: Any = None,
        on_step_end: Any = None,
        on_epoch_end: Any = None,
        regularization: Any = None,
    ) -> None:
        self._after_backward = on_after_backward
        self._step_end = on_step_end
        self._epoch_end = on_epoch_end
        self._regularization = regularization

    def on_after_backward(self, state: TrainState) -> None:
        if self._after_backward:
            self._after_backward(state)

    def on_step_end(self, state: TrainState) -> None:
        if self._step_end:
            self._step_end(state)

    def on_epoch_end(self, state: TrainState, record: EpochRecord) -> None:
        if self._epoch_end:
            self._epoch_end(state, record)

    def regularization(self, state: TrainState) -> torch.Tensor | None:
        return self._regularization(state) if self._regularization else None
