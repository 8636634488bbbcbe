"""`fit` and `evaluate`: the one training loop every compression step fine-tunes with."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tenfold.errors import ConfigError, DataError
from tenfold.train.callbacks import Callback, TrainState
from tenfold.train.config import EpochRecord, EvalResult, TrainConfig, TrainReport
from tenfold.train.progress import ProgressReporter, make_reporter
from tenfold.train.seeding import seed_everything

DataLike = Dataset | DataLoader
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loader(data: DataLike, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None):
    """Wrap a dataset in a DataLoader (a ready DataLoader passes through unchanged)."""
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise DataError(
            f"expected a torch Dataset or DataLoader, got {type(data).__name__}; "
            "wrap tensors with torch.utils.data.TensorDataset(x, y)"
        )
    if len(data) == 0:  # type: ignore[arg-type]
        raise DataError("the dataset is empty; check the data path and the split sizes")
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0)


def model_device(model: nn.Module) -> torch.device:
    """The device the model's parameters live on (CPU for a parameter-free model)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters; nothing to train")
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, config.epochs), eta_min=config.min_lr
        )
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


def _check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise ConfigError(
            f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step}; "
            "lower the learning rate, check the inputs for NaN/inf, or enable grad_clip_norm"
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLike,
    *,
    batch_size: int = 512,
    loss_fn: LossFn | None = None,
    progress: bool | ProgressReporter = False,
    description: str = "evaluate",
) -> EvalResult:
    """Mean loss and top-1 accuracy of `model` on `data`, in eval mode; the model's mode is restored."""
    loss_fn = loss_fn or nn.CrossEntropyLoss(reduction="sum")
    loader = make_loader(data, batch_size, shuffle=False)
    device = model_device(model)
    was_training = model.training
    model.eval()
    reporter = make_reporter(progress)
    total_loss, correct, count = 0.0, 0, 0
    start = time.perf_counter()
    try:
        task = reporter.add_task(description, total=len(loader))
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            _check_output_shape(outputs, targets)
            loss = loss_fn(outputs, targets)
            total_loss += float(loss) if _is_sum_reduced(loss_fn) else float(loss) * len(targets)
            correct += int((outputs.argmax(dim=1) == targets).sum())
            count += len(targets)
            reporter.advance(task)
        reporter.remove_task(task)
    finally:
        reporter.close()
        model.train(was_training)
    return EvalResult(
        loss=total_loss / max(count, 1),
        accuracy=correct / max(count, 1),
        n_samples=count,
        seconds=time.perf_counter() - start,
    )


def fit(
    model: nn.Module,
    train_data: DataLike,
    val_data: DataLike | None = None,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    loss_fn: LossFn | None = None,
    progress: bool | ProgressReporter = True,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
) -> TrainReport:
    """Train `model` in place and return the history.

    Seeded (shuffling, initial state), interruptible (Ctrl-C ends the current epoch cleanly, keeps the best
    weights and marks the report `interrupted`) and, with `checkpoint_path`, resumable: the full training
    state is written atomically after every epoch and `resume=True` continues from it to the same result.
    """
    config = config or TrainConfig()
    generator = seed_everything(config.seed)
    train_loader = make_loader(train_data, config.batch_size, shuffle=True, generator=generator)
    val_loader = make_loader(val_data, config.eval_batch_size, shuffle=False) if val_data is not None else None
    loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    device = model_device(model)
    optimizer = (
        optimizer_factory([p for p in model.parameters() if p.requires_grad])
        if optimizer_factory
        else _build_optimizer(model, config)
    )
    scheduler = _build_scheduler(optimizer, config)
    state = TrainState(model=model, optimizer=optimizer, config=config)
    report = TrainReport()
    best_state: dict[str, torch.Tensor] | None = None
    epochs_without_gain = 0
    start_epoch = 0

    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        from tenfold.train.checkpoint import load_training_state

        saved = load_training_state(checkpoint_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        report = _report_from_dict(saved["report"])
        best_state = saved.get("best_state")
        epochs_without_gain = saved["epochs_without_gain"]
        start_epoch = saved["epoch"] + 1
        state.step = saved["step"]

    reporter = make_reporter(progress)
    started = time.perf_counter() - report.seconds
    for callback in callbacks:
        callback.on_train_begin(state)
    try:
        epoch_task = reporter.add_task("epochs", total=config.epochs, completed=start_epoch)
        for epoch in range(start_epoch, config.epochs):
            state.epoch = epoch
            for callback in callbacks:
                callback.on_epoch_begin(state)
            record = _train_one_epoch(state, train_loader, val_loader, loss_fn, callbacks, reporter, device)
            scheduler.step()
            report.history.append(record)
            improved = record.val_accuracy is not None and (
                report.best_val_accuracy is None or record.val_accuracy > report.best_val_accuracy + config.min_delta
            )
            if improved:
                report.best_val_accuracy = record.val_accuracy
                report.best_epoch = epoch
                best_state = copy.deepcopy(model.state_dict())
                epochs_without_gain = 0
            else:
                epochs_without_gain += 1
            for callback in callbacks:
                callback.on_epoch_end(state, record)
            reporter.advance(epoch_task)
            reporter.log(_epoch_line(record, config.epochs))
            report.seconds = time.perf_counter() - started
            if checkpoint_path is not None:
                from tenfold.train.checkpoint import save_training_state

                save_training_state(
                    checkpoint_path,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    generator=generator,
                    report=report,
                    best_state=best_state,
                    epochs_without_gain=epochs_without_gain,
                    epoch=epoch,
                    step=state.step,
                )
            if config.early_stopping_patience is not None and epochs_without_gain >= config.early_stopping_patience:
                report.stopped_early = True
                break
            if state.stop_training:
                report.stopped_early = True
                break
    except KeyboardInterrupt:
        report.interrupted = True
        reporter.log("[yellow]interrupted: keeping the best weights so far[/yellow]")
    finally:
        reporter.close()
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    report.seconds = time.perf_counter() - started
    for callback in callbacks:
        callback.on_train_end(state)
    return report


def _train_one_epoch(
    state: TrainState,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    loss_fn: LossFn,
    callbacks: Sequence[Callback],
    reporter: ProgressReporter,
    device: torch.device,
) -> EpochRecord:
    model, optimizer, config = state.model, state.optimizer, state.config
    model.train()
    epoch_start = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    n_batches = len(train_loader)
    if config.max_batches_per_epoch is not None:
        n_batches = min(n_batches, config.max_batches_per_epoch)
    task = reporter.add_task(f"epoch {state.epoch + 1}/{config.epochs}", total=n_batches)
    total_loss, correct, count = 0.0, 0, 0
    for batch_index, (inputs, targets) in enumerate(train_loader):
        if batch_index >= n_batches:
            break
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        outputs = model(inputs)
        _check_output_shape(outputs, targets)
        loss = loss_fn(outputs, targets)
        _check_finite(loss, state.epoch, state.step)
        objective = loss
        for callback in callbacks:
            extra = callback.regularization(state)
            if extra is not None:
                objective = objective + extra
        objective.backward()
        for callback in callbacks:
            callback.on_after_backward(state)
        if config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
        state.step += 1
        state.batch_loss = float(loss.detach())
        for callback in callbacks:
            callback.on_step_end(state)
        total_loss += float(loss.detach()) * len(targets)
        correct += int((outputs.detach().argmax(dim=1) == targets).sum())
        count += len(targets)
        reporter.advance(task)
    reporter.remove_task(task)
    val_loss = val_accuracy = None
    if val_loader is not None:
        result = evaluate(model, val_loader, progress=False)
        val_loss, val_accuracy = result.loss, result.accuracy
        model.train()
    return EpochRecord(
        epoch=state.epoch,
        train_loss=total_loss / max(count, 1),
        train_accuracy=correct / max(count, 1),
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        lr=lr,
        seconds=time.perf_counter() - epoch_start,
    )


def _check_output_shape(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.dim() != 2 or outputs.shape[0] != targets.shape[0]:
        raise DataError(
            f"the model returned shape {tuple(outputs.shape)} for a batch of {targets.shape[0]} labels; "
            "expected (batch, num_classes) logits; check that the model matches the dataset"
        )
    if targets.numel() and int(targets.max()) >= outputs.shape[1]:
        raise DataError(
            f"label {int(targets.max())} is out of range for a model with {outputs.shape[1]} outputs; "
            "create the model with num_classes matching the dataset"
        )


def _is_sum_reduced(loss_fn: Any) -> bool:
    return getattr(loss_fn, "reduction", "mean") == "sum"


def _epoch_line(record: EpochRecord, epochs: int) -> str:
    val = (
        f" val_loss {record.val_loss:.4f} val_acc {record.val_accuracy:.4f}"
        if record.val_accuracy is not None
        else ""
    )
    return (
        f"epoch {record.epoch + 1}/{epochs}: loss {record.train_loss:.4f} acc {record.train_accuracy:.4f}"
        f"{val} lr {record.lr:.2e} ({record.seconds:.1f}s)"
    )


def _report_from_dict(values: dict[str, Any]) -> TrainReport:
    history = [EpochRecord(**item) for item in values.get("history", [])]
    rest = {k: v for k, v in values.items() if k != "history"}
    report = TrainReport(history=history, **rest)
    if report.best_val_accuracy is not None and math.isnan(report.best_val_accuracy):
        report.best_val_accuracy = None
    return report
