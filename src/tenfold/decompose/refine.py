"""Data-aware factor refinement: fit each decomposed layer to what the original layer computed.

CP-ALS minimises the error of the *weights*; what matters is the error of the layer's *outputs* on the
inputs it actually sees, and the error that earlier decomposed layers pass down. Refinement walks the layers in
order and, for each, trains its factors (through the fixed-point grid, straight-through) so that its output on
the decomposed model's own activations matches the original layer's output on the original model's
activations, on a few calibration batches. It costs a few forward passes per layer and lifts the accuracy
before fine-tuning, so the fine-tuning epochs start much closer to the original model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tenfold.decompose.layers import FactorizedLayer, is_decomposed
from tenfold.decompose.model import requantize_
from tenfold.errors import ConfigError, ModelError
from tenfold.train.loop import DataLike, make_loader, model_device

__all__ = ["RefineReport", "refine_factors", "settle_decomposed"]


@dataclass
class RefineReport:
    """Per layer: relative output error (||Y_dec - Y|| / ||Y||) before and after refinement."""

    error_before: dict[str, float] = field(default_factory=dict)
    error_after: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _inputs_of(model: nn.Module, module: nn.Module, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors `module` receives when `model` runs on each batch (eval mode, no gradients)."""
    captured: list[torch.Tensor] = []

    def hook(_module, args):
        captured.append(args[0].detach())

    handle = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        handle.remove()
    if len(captured) != len(batches):
        raise ModelError(f"{type(module).__name__} ran {len(captured)} times for {len(batches)} batches; refinement "
                         "needs each layer to run once per forward pass (shared layers are not supported)")
    return captured


def _relative_error(layer: nn.Module, inputs: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
    with torch.no_grad():
        num = sum(float((layer(x) - y).pow(2).sum()) for x, y in zip(inputs, targets, strict=True))
        den = sum(float(y.pow(2).sum()) for y in targets)
    return (num / max(den, 1e-30)) ** 0.5


def refine_factors(original: nn.Module, decomposed: nn.Module, data: DataLike, *, layers: Sequence[str] | None = None,
                   batches: int = 4, batch_size: int = 128, steps: int = 100, lr: float = 1e-3,
                   seed: int = 0) -> RefineReport:
    """In place: refine the factors of `decomposed`'s decomposed layers (default: all of them, in model order).

    `original` is the model `decomposed` came from (unchanged). Each layer gets `steps` Adam steps on the
    mean squared output error over `batches` calibration batches; a layer whose error does not improve keeps
    its starting factors. Factors end on their grid (`requantize_`).
    """
    if steps < 1 or batches < 1:
        raise ConfigError(f"steps and batches must be >= 1, got steps={steps}, batches={batches}")
    started = time.perf_counter()
    names = list(layers) if layers is not None else [
        n for n, m in decomposed.named_modules() if is_decomposed(m) or isinstance(m, FactorizedLayer)]
    for name in names:
        for model, what in ((decomposed, "decomposed"), (original, "original")):
            try:
                model.get_submodule(name)
            except AttributeError:
                raise ModelError(f"layer {name!r} is not in the {what} model") from None
    loader = make_loader(data, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    device = model_device(decomposed)
    calibration = []
    for index, (inputs, _targets) in enumerate(loader):
        if index >= batches:
            break
        calibration.append(inputs.to(device))
    was_training = (original.training, decomposed.training)
    original.eval()
    decomposed.eval()
    report = RefineReport()
    generator = torch.Generator().manual_seed(seed)
    try:
        for name in names:
            reference = original.get_submodule(name)
            layer = decomposed.get_submodule(name)
            with torch.no_grad():
                targets = [reference(x) for x in _inputs_of(original, reference, calibration)]
            inputs = _inputs_of(decomposed, layer, calibration)
            before = _relative_error(layer, inputs, targets)
            start_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
            params = [p for p in layer.parameters() if p.requires_grad]
            if params:
                optimizer = torch.optim.Adam(params, lr=lr)
                for _step in range(steps):
                    pick = int(torch.randint(len(inputs), (1,), generator=generator))
                    optimizer.zero_grad(set_to_none=True)
                    loss = nn.functional.mse_loss(layer(inputs[pick]), targets[pick])
                    loss.backward()
                    optimizer.step()
                requantize_(layer)
            after = _relative_error(layer, inputs, targets)
            if not after < before:  # never hand back a layer that got worse
                layer.load_state_dict(start_state)
                after = before
            report.error_before[name], report.error_after[name] = before, after
    finally:
        original.train(was_training[0])
        decomposed.train(was_training[1])
    report.seconds = time.perf_counter() - started
    return report


def settle_decomposed(original: nn.Module, decomposed: nn.Module, data: DataLike, *, refine_steps: int = 200,
                      bn_batches: int = 20, seed: int = 0) -> str:
    """The step between decomposing and fine-tuning, shared by the CLI, `tenfold run` and the benchmarks.

    With `refine_steps` > 0 the factors are refined (`refine_factors`); otherwise, with `bn_batches` > 0, the
    BatchNorm statistics are re-measured. (Not both: refinement matches the original layers' outputs, which
    assume the original statistics.) Returns what was done: "refined", "BN recalibrated" or "unchanged".
    """
    if refine_steps > 0:
        refine_factors(original, decomposed, data, steps=refine_steps, lr=3e-3, seed=seed)
        return "refined"
    if bn_batches > 0:
        from tenfold.train.batchnorm import recalibrate_batchnorm

        recalibrate_batchnorm(decomposed, data, batches=bn_batches, seed=seed)
        return "BN recalibrated"
    return "unchanged"
