"""How much each structure matters to the loss, on a scale that lets layers compete fairly.

Per-weight saliencies (L1, L2, first-order Taylor |w·∂L/∂w| accumulated over minibatches, diagonal-Fisher
½·w²·E[g²]) are summed per structure and normalised per layer, because raw magnitudes differ by orders of
magnitude between layers (the reference DAP code does not normalise, so wide layers are starved).

`normalize="auto"` uses what measured best on the jet-tagger MLP (see tests and benchmarks): Taylor and
Fisher saliencies already estimate a loss change, a unit shared by all layers, so they are left as they are;
L1/L2 magnitudes are not comparable across layers and are divided by the layer's largest structure value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tenfold.errors import ConfigError, DataError
from tenfold.prune.structures import StructureSet

METHODS = ("l1", "l2", "taylor", "fisher")
NORMALISATIONS = ("auto", "none", "layer_mean", "layer_max", "layer_sum")


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight the layer computes with (masked when pruned)."""
    return module.weight.detach()


def _parameter_for_grad(module: nn.Module) -> nn.Parameter:
    return getattr(module, "weight_orig", module.weight)


def weight_saliency(
    model: nn.Module,
    layers: list[str],
    method: str = "taylor",
    data: Dataset | DataLoader | None = None,
    *,
    batches: int = 8,
    batch_size: int = 128,
    seed: int = 0,
    loss_fn: Callable | None = None,
) -> dict[str, torch.Tensor]:
    """Per-weight saliency of each layer in `layers` (same shape as the weight)."""
    if method not in METHODS:
        raise ConfigError(f"unknown importance {method!r}; use one of {', '.join(METHODS)}")
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ConfigError(f"layers not in the model: {missing}")
    weights = {name: effective_weight(modules[name]) for name in layers}
    for name, weight in weights.items():
        if not torch.isfinite(weight).all():
            raise ConfigError(f"layer {name} has NaN or inf weights; fix the model before pruning it")
    if method == "l1":
        return {name: w.abs() for name, w in weights.items()}
    if method == "l2":
        return {name: w.pow(2) for name, w in weights.items()}
    if data is None:
        raise DataError(f"importance '{method}' needs data to compute gradients; pass training data")
    loader = data if isinstance(data, DataLoader) else DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    accumulated = {name: torch.zeros_like(w) for name, w in weights.items()}
    was_training = model.training
    model.eval()  # batch-norm statistics stay fixed while we only measure
    count = 0
    try:
        for index, (inputs, targets) in enumerate(loader):
            if index >= batches:
                break
            model.zero_grad(set_to_none=True)
            loss_fn(model(inputs), targets).backward()
            for name in layers:
                grad = _parameter_for_grad(modules[name]).grad
                if grad is None:
                    continue
                if method == "taylor":
                    accumulated[name] += (weights[name] * grad).abs()
                else:
                    accumulated[name] += grad.pow(2)
            count += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if count == 0:
        raise DataError("no batches were available to compute importance; the training data is empty")
    if method == "taylor":
        return {name: acc / count for name, acc in accumulated.items()}
    return {name: 0.5 * weights[name].pow(2) * acc / count for name, acc in accumulated.items()}


def structure_values(
    structures: StructureSet,
    saliency: dict[str, torch.Tensor],
    *,
    method: str = "taylor",
    normalize: str = "auto",
) -> np.ndarray:
    """One value per structure (concatenated over layers), normalised per layer."""
    if normalize not in NORMALISATIONS:
        raise ConfigError(f"unknown normalisation {normalize!r}; use one of {', '.join(NORMALISATIONS)}")
    if normalize == "auto":
        normalize = "none" if method in {"taylor", "fisher"} else "layer_max"
    values = []
    for layer in structures.layers:
        flat = saliency[layer.name].reshape(-1).double().numpy()
        group_values = np.zeros(layer.n_groups)
        valid = layer.group_of_weight >= 0
        np.add.at(group_values, layer.group_of_weight[valid], flat[valid])
        if method == "l2":
            group_values = np.sqrt(group_values)
        alive = group_values > 0
        if normalize != "none" and alive.any():
            scale = {"layer_mean": group_values[alive].mean(), "layer_max": group_values.max(),
                     "layer_sum": group_values.sum()}[normalize]
            group_values = group_values / scale if scale > 0 else group_values
        values.append(group_values)
    return np.concatenate(values) if values else np.zeros(0)
