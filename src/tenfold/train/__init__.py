"""Training and evaluation with progress, seeding, early stopping, resumable atomic checkpoints and hooks."""

from __future__ import annotations

from tenfold.train.batchnorm import recalibrate_batchnorm
from tenfold.train.callbacks import Callback, LambdaCallback, TrainState
from tenfold.train.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from tenfold.train.config import EpochRecord, EvalResult, TrainConfig, TrainReport
from tenfold.train.loop import evaluate, fit, make_loader
from tenfold.train.progress import ProgressReporter, RichProgressReporter, make_reporter
from tenfold.train.seeding import seed_everything

__all__ = [
    "Callback",
    "Checkpoint",
    "EpochRecord",
    "EvalResult",
    "LambdaCallback",
    "ProgressReporter",
    "RichProgressReporter",
    "TrainConfig",
    "TrainReport",
    "TrainState",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model",
    "make_loader",
    "make_reporter",
    "recalibrate_batchnorm",
    "save_checkpoint",
    "seed_everything",
]
