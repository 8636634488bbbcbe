"""Training settings and records as plain dataclasses, so they serialise to JSON and YAML unchanged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from tenfold.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step")
AUGMENTATIONS = ("none", "crop", "flip_crop")


@dataclass
class TrainConfig:
    """How to train or fine-tune a model.

    `early_stopping_patience` counts epochs without a validation-accuracy gain larger than `min_delta`;
    `restore_best` puts back the weights of the best validation epoch when training ends.
    `batch_size` is the global batch: under DDP each of N processes trains on batch_size / N samples per step.
    `distributed`: None uses DDP whenever a torch.distributed process group is up; True also starts one from
    the torchrun environment (an error without torchrun); False never uses DDP.
    `augment` perturbs image batches on the fly ("crop": random shifts of up to `crop_padding` pixels with zero
    padding; "flip_crop": also random horizontal flips, for natural images, not digits), seeded with `seed`.
    `distill_alpha` > 0 mixes in knowledge distillation from a teacher passed to `fit` (compression steps pass
    the uncompressed model): loss = (1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T).
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    min_lr: float = 0.0
    step_size: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    max_batches_per_epoch: int | None = None
    eval_batch_size: int = 512
    seed: int = 0
    grad_clip_norm: float | None = None
    distributed: bool | None = None
    augment: Literal["none", "crop", "flip_crop"] = "none"
    crop_padding: int = 4
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that would make training meaningless, naming the field and a valid range."""
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                f"early_stopping_patience must be >= 1 or None, got {self.early_stopping_patience}"
            )
        if self.max_batches_per_epoch is not None and self.max_batches_per_epoch < 1:
            raise ConfigError(f"max_batches_per_epoch must be >= 1 or None, got {self.max_batches_per_epoch}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.crop_padding < 0:
            raise ConfigError(f"crop_padding must be >= 0, got {self.crop_padding}")
        if not 0 <= self.distill_alpha <= 1:
            raise ConfigError(f"distill_alpha must be in [0, 1] (0 turns distillation off), got {self.distill_alpha}")
        if not self.distill_temperature > 0:
            raise ConfigError(f"distill_temperature must be > 0, got {self.distill_temperature}")
        if self.distributed not in (None, True, False):
            raise ConfigError(f"distributed must be true, false or null (automatic), got {self.distributed!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (e.g. a YAML section); unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s): {', '.join(unknown)}; valid options: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EpochRecord:
    """What one epoch did; the history of a run is a list of these."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class EvalResult:
    """Loss and accuracy of a model on one dataset."""

    loss: float
    accuracy: float
    n_samples: int
    seconds: float = 0.0


@dataclass
class TrainReport:
    """Outcome of `fit`: per-epoch history and which epoch's weights the model holds now."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
