"""`fit` and `evaluate`: the one training loop every compression step fine-tunes with."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tenfold.errors import ConfigError, DataError
from tenfold.train.augment import augment_batch, distillation_loss
from tenfold.train.callbacks import Callback, TrainState
from tenfold.train.config import EpochRecord, EvalResult, TrainConfig, TrainReport
from tenfold.train.distributed import (
    GlobalOrderShardSampler,
    all_reduce_sum,
    any_rank,
    broadcast_module_state,
    broadcast_object,
    distributed_session,
    get_rank,
    get_world_size,
    is_initialized,
    is_main_process,
    per_rank_batch_size,
    strided_indices,
    wrap_ddp,
)
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
    was_training = model.training
    model.eval()
    reporter = make_reporter(progress)
    start = time.perf_counter()
    try:
        total_loss, correct, count = _evaluation_sums(model, loader, loss_fn, reporter, description)
    finally:
        reporter.close()
        model.train(was_training)
    return EvalResult(
        loss=total_loss / max(count, 1),
        accuracy=correct / max(count, 1),
        n_samples=count,
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def _evaluation_sums(
    model: nn.Module, loader: DataLoader, loss_fn: LossFn, reporter: ProgressReporter, description: str
) -> tuple[float, int, int]:
    """Summed loss, correct predictions and sample count over `loader` (the model is in eval mode)."""
    device = model_device(model)
    total_loss, correct, count = 0.0, 0, 0
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
    return total_loss, correct, count


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
    teacher: nn.Module | None = None,
) -> TrainReport:
    """Train `model` in place and return the history.

    With `config.distill_alpha > 0`, `teacher` (e.g. the uncompressed model, see
    `tenfold.train.augment.frozen_teacher`) provides soft targets; it is only evaluated, never trained.

    Seeded (shuffling, initial state), interruptible (Ctrl-C ends the current epoch cleanly, keeps the best
    weights and marks the report `interrupted`) and, with `checkpoint_path`, resumable: the full training
    state is written atomically after every epoch and `resume=True` continues from it to the same result.

    Under torchrun (a process group is up, or `config.distributed=True`) the model trains wrapped in DDP:
    rank 0's weights and buffers are broadcast first, each rank trains on its share of every global batch,
    validation metrics are summed over ranks so early-stopping and best-weight decisions agree, only rank 0
    writes `checkpoint_path` and shows progress, and every rank ends with identical weights.
    """
    config = config or TrainConfig()
    if config.distill_alpha > 0 and teacher is None:
        raise ConfigError("distill_alpha > 0 needs a teacher model: pass fit(..., teacher=...) or set distill_alpha: 0")
    if teacher is not None and config.distill_alpha == 0:
        raise ConfigError("a teacher was given but distill_alpha is 0; set distill_alpha in (0, 1] to use it")
    with contextlib.ExitStack() as session:
        if config.distributed:
            session.enter_context(distributed_session(required=True))
        distributed = config.distributed is not False and is_initialized()
        return _fit(
            model, train_data, val_data, config, distributed=distributed, callbacks=callbacks, loss_fn=loss_fn,
            progress=progress, checkpoint_path=checkpoint_path, resume=resume, optimizer_factory=optimizer_factory,
            teacher=teacher,
        )


@dataclass
class _Run:
    """How one `fit` call executes: what the forward pass goes through and whether ranks must agree."""

    forward_model: nn.Module
    distributed: bool
    val_sharded: bool
    teacher: nn.Module | None = None


def _fit(
    model: nn.Module,
    train_data: DataLike,
    val_data: DataLike | None,
    config: TrainConfig,
    *,
    distributed: bool,
    callbacks: Sequence[Callback],
    loss_fn: LossFn | None,
    progress: bool | ProgressReporter,
    checkpoint_path: str | Path | None,
    resume: bool,
    optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None,
    teacher: nn.Module | None = None,
) -> TrainReport:
    generator = seed_everything(config.seed)
    if distributed:
        train_loader = _sharded_train_loader(train_data, config.batch_size, generator)
        val_loader = _sharded_eval_loader(val_data, config.eval_batch_size) if val_data is not None else None
    else:
        train_loader = make_loader(train_data, config.batch_size, shuffle=True, generator=generator)
        val_loader = make_loader(val_data, config.eval_batch_size, shuffle=False) if val_data is not None else None
    main = not distributed or is_main_process()
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

    if resume and checkpoint_path is not None:
        saved = _read_training_state(checkpoint_path) if main else None
        if distributed:  # rank 0 reads the file, so other ranks need no access to it
            saved = broadcast_object(saved)
        if saved is not None:
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

    run = _Run(forward_model=model, distributed=distributed, val_sharded=distributed and val_loader is not None
               and not isinstance(val_data, DataLoader), teacher=teacher.to(device).eval() if teacher else None)
    if distributed:
        broadcast_module_state(model)
        run.forward_model = wrap_ddp(model, device)
    reporter = make_reporter(progress if main else False)
    started = time.perf_counter() - report.seconds
    for callback in callbacks:
        callback.on_train_begin(state)
    try:
        epoch_task = reporter.add_task("epochs", total=config.epochs, completed=start_epoch)
        for epoch in range(start_epoch, config.epochs):
            state.epoch = epoch
            for callback in callbacks:
                callback.on_epoch_begin(state)
            record = _train_one_epoch(state, run, train_loader, val_loader, loss_fn, callbacks, reporter, device)
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
            if checkpoint_path is not None and main:
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
            if distributed:  # a callback on one rank may ask to stop; all ranks must stop together
                state.stop_training = any_rank(state.stop_training)
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
    if distributed and not report.interrupted:  # after an interruption the other ranks may be gone
        broadcast_module_state(model)
    report.seconds = time.perf_counter() - started
    for callback in callbacks:
        callback.on_train_end(state)
    return report


def _read_training_state(checkpoint_path: str | Path) -> dict[str, Any] | None:
    from tenfold.train.checkpoint import load_training_state

    return load_training_state(checkpoint_path) if Path(checkpoint_path).exists() else None


def _sharded_train_loader(data: DataLike, global_batch: int, generator: torch.Generator) -> DataLoader:
    """This rank's loader: its share of each global batch of the order a single process would draw."""
    if isinstance(data, DataLoader):
        raise ConfigError(
            "distributed training needs the training Dataset, not a DataLoader, so it can split every global "
            "batch across processes; pass the dataset and set TrainConfig.batch_size to the global batch"
        )
    make_loader(data, global_batch, shuffle=False)  # the same checks (a Dataset, not empty) as a single process
    world = get_world_size()
    sampler = GlobalOrderShardSampler(len(data), global_batch, get_rank(), world, generator)  # type: ignore[arg-type]
    return DataLoader(data, batch_size=per_rank_batch_size(global_batch, world), sampler=sampler,
                      generator=generator, num_workers=0)


def _sharded_eval_loader(data: DataLike, batch_size: int) -> DataLoader:
    """This rank's share of the validation data (a ready DataLoader is evaluated whole on every rank)."""
    if isinstance(data, DataLoader):
        return data
    make_loader(data, batch_size, shuffle=False)
    return DataLoader(data, batch_size=batch_size, sampler=strided_indices(len(data)), num_workers=0)  # type: ignore[arg-type]


def _validate(model: nn.Module, run: _Run, val_loader: DataLoader) -> EvalResult:
    """Validation metrics that every rank agrees on (summed over shards, or rank 0's for a given DataLoader)."""
    if not run.distributed:
        return evaluate(model, val_loader, progress=False)
    broadcast_module_state(model)  # batch-norm statistics differ per rank; rank 0's are the model's
    if not run.val_sharded:
        return broadcast_object(evaluate(model, val_loader, progress=False))
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    model.eval()
    try:
        sums = _evaluation_sums(model, val_loader, loss_fn, ProgressReporter(), "validate")
    finally:
        model.train()
    total_loss, correct, count = all_reduce_sum(sums)
    return EvalResult(loss=total_loss / max(count, 1), accuracy=correct / max(count, 1), n_samples=int(count))


def _loss_scale(run: _Run, train_loader: DataLoader, loss_fn: LossFn, step: int, batch: int) -> float:
    """Factor that makes DDP's gradient average equal the single-process gradient of the global batch.

    DDP averages the ranks' gradients; for a mean loss that is right only when every rank's batch is equal,
    so an uneven last batch is re-weighted by its share. A summed loss needs the world size back.
    """
    if not run.distributed:
        return 1.0
    world = get_world_size()
    if _is_sum_reduced(loss_fn):
        return float(world)
    sampler = train_loader.sampler
    if not isinstance(sampler, GlobalOrderShardSampler):
        return 1.0
    return world * batch / sampler.global_step_size(step)


def _train_one_epoch(
    state: TrainState,
    run: _Run,
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
    # one generator per (seed, epoch, rank): augmentation is reproducible and resumes exactly after a restart
    augment_generator = torch.Generator().manual_seed(config.seed * 1_000_003 + state.epoch * 101 + get_rank())
    for batch_index, (inputs, targets) in enumerate(train_loader):
        if batch_index >= n_batches:
            break
        inputs, targets = inputs.to(device), targets.to(device)
        inputs = augment_batch(inputs, config.augment, config.crop_padding, augment_generator)
        optimizer.zero_grad(set_to_none=True)
        outputs = run.forward_model(inputs)
        _check_output_shape(outputs, targets)
        loss = loss_fn(outputs, targets)
        if run.teacher is not None:
            with torch.no_grad():
                teacher_logits = run.teacher(inputs)
            soft = distillation_loss(outputs, teacher_logits, config.distill_temperature)
            if _is_sum_reduced(loss_fn):
                soft = soft * len(targets)
            loss = (1.0 - config.distill_alpha) * loss + config.distill_alpha * soft
        _check_finite(loss, state.epoch, state.step)
        scale = _loss_scale(run, train_loader, loss_fn, batch_index, len(targets))
        objective = loss if scale == 1.0 else loss * scale
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
    if run.distributed:
        total_loss, correct, count = all_reduce_sum([total_loss, correct, count])
    val_loss = val_accuracy = None
    if val_loader is not None:
        result = _validate(model, run, val_loader)
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
