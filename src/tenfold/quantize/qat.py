"""Quantization-aware training: fine-tune the fake-quantized model so the weights adapt to their grid.

Why it beats rounding a trained model: at 4–6 bits the rounding errors of thousands of weights add up, and
only training can move the float weights so that their *quantized* values compute the right function. The
forward pass uses exact ap_fixed arithmetic (`tenfold.quantize.fake`), the backward pass the straight-through
estimator, and the loop is `tenfold.train.fit`, so seeding, early stopping, callbacks and progress are the
same as for any other fine-tuning.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.hls_config import HLSConfig
from tenfold.quantize.calibrate import raise_on_overflow
from tenfold.quantize.quantized_model import QuantizedModel, quantize_model
from tenfold.train import Callback, TrainConfig, TrainReport, evaluate, fit
from tenfold.train.loop import DataLike
from tenfold.train.progress import ProgressReporter

__all__ = ["QATReport", "QATResult", "copy_trained_weights", "hardware_accuracy", "qat"]


@dataclass
class QATReport:
    """Validation accuracy of the float model, the quantized model before and after QAT, and the training run.

    `hardware_accuracy` is measured with the bit-exact emulation (None when the model has layers it does not
    emulate); the other quantized accuracies use fake quantization. `kept_initial` says that fine-tuning
    ended below the starting accuracy, so the starting weights were kept.
    """

    float_accuracy: float
    initial_accuracy: float
    final_accuracy: float
    hardware_accuracy: float | None
    train: TrainReport
    kept_initial: bool = False
    hls_config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class QATResult:
    """The fine-tuned quantized model (use `to_float` to export it) and what happened."""

    model: QuantizedModel
    report: QATReport


def hardware_accuracy(model: QuantizedModel, data: DataLike, *, batch_size: int = 512) -> float | None:
    """Accuracy of `model` under the bit-exact emulation of hls4ml's arithmetic, or None if it cannot emulate it."""
    was = model.hardware_mode
    model.hardware_mode = True
    try:
        return evaluate(model, data, batch_size=batch_size).accuracy
    except ModelError:
        return None
    finally:
        model.hardware_mode = was


def qat(
    model: nn.Module,
    config: HLSConfig,
    train_data: DataLike,
    val_data: DataLike | None = None,
    train_config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | ProgressReporter = True,
    allow_overflow: bool = False,
    measure_hardware: bool = True,
) -> QATResult:
    """Fine-tune a fake-quantized copy of `model` under `config`'s types; `model` is not changed.

    Before training, a wrapping type that overflows on the first training batches raises
    `PrecisionOverflowError` naming the layer (pass `allow_overflow=True` to train anyway). Accuracies in
    the report are on `val_data` (on `train_data` if no validation data is given). If fine-tuning ends below
    the starting accuracy there, the starting weights are kept (`report.kept_initial`).
    """
    start = time.perf_counter()
    train_config = train_config or TrainConfig(epochs=5, lr=1e-3)
    reference = val_data if val_data is not None else train_data
    float_accuracy = evaluate(model, reference).accuracy
    quantized = quantize_model(model, config)
    if not allow_overflow:
        raise_on_overflow(quantized, train_data, max_batches=4)
    initial = evaluate(quantized, reference).accuracy
    initial_state = copy.deepcopy(quantized.state_dict())
    with torch.enable_grad():
        history = fit(quantized, train_data, val_data, train_config, callbacks=callbacks, progress=progress)
    quantized.eval()
    final = evaluate(quantized, reference).accuracy
    kept_initial = final < initial
    if kept_initial:  # never hand back a model worse than the one fine-tuning started from
        quantized.load_state_dict(initial_state)
        final = initial
    hardware = hardware_accuracy(quantized, reference) if measure_hardware else None
    report = QATReport(float_accuracy=float_accuracy, initial_accuracy=initial, final_accuracy=final,
                       hardware_accuracy=hardware, train=history, kept_initial=kept_initial,
                       hls_config=_hls4ml_or_empty(quantized.config),
                       seconds=time.perf_counter() - start)
    return QATResult(model=quantized, report=report)


def _hls4ml_or_empty(config: HLSConfig) -> dict[str, Any]:
    try:
        return config.to_hls4ml()
    except ConfigError:  # a type hls4ml cannot spell (AP_WRAP_SM): the report still stands
        return {}


def copy_trained_weights(quantized: QuantizedModel, target: nn.Module) -> nn.Module:
    """Write the float (shadow) weights a QAT run trained back into the model `quantized` was built from.

    Pipelines keep working on the plain model — pruning masks as `torch.nn.utils.prune` buffers, decomposed
    layers as factor parametrizations — while the fine-tuning itself ran on the fake-quantized copy. Each
    trained tensor goes where the same tensor lives in `target`: a quantized weight's `original` becomes a
    masked layer's `weight_orig` (masks are re-applied), a plain layer's `weight`, or a decomposed layer's
    factor `original<i>`; BatchNorm parameters and statistics copy by name. Returns `target`.
    """
    from tenfold.prune.masks import refresh_masked_weights

    target_state = target.state_dict()
    updates: dict[str, torch.Tensor] = {}
    for key, value in quantized.model.state_dict().items():
        if ".parametrizations." in f".{key}":
            prefix, rest = f".{key}".split(".parametrizations.", 1)
            prefix = prefix[1:]
            tensor, leaf = rest.split(".", 1)
            if not leaf.startswith("original"):
                continue  # a quantizer's or mask's own state: not trained
            stem = f"{prefix}." if prefix else ""
            names = ([f"{stem}{tensor}_orig", f"{stem}{tensor}", key] if leaf == "original"
                     else [key])
        else:
            names = [key]
        for name in names:
            if name in target_state and target_state[name].shape == value.shape:
                updates[name] = value.detach().clone()
                break
        else:
            raise ModelError(f"cannot place the trained tensor {key!r} in the target model; was `quantized` built "
                             "from it with quantize_model?")
    target.load_state_dict(updates, strict=False)
    with torch.no_grad():  # a masked weight's orig must stay zero where its mask is
        from tenfold.prune.masks import masked_parameters

        for module, param in masked_parameters(target):
            getattr(module, f"{param}_orig").mul_(getattr(module, f"{param}_mask"))
    return refresh_masked_weights(target)
