"""A physically smaller model from neuron/filter pruning: dead neurons, their norms and next inputs removed.

hls4ml then simply builds narrower layers. The shrink is recorded as a recipe (kept channels per layer),
so a checkpoint can rebuild the small model from the zoo spec plus the recipe.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tenfold.errors import ModelError
from tenfold.prune.coupling import trace_couplings
from tenfold.prune.masks import remove_masks

Recipe = dict[str, list[int]]


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _alive_outputs(module: nn.Module) -> list[int]:
    weight = module.weight.detach().reshape(module.weight.shape[0], -1)
    alive = (weight != 0).any(dim=1)
    if module.bias is not None:
        alive |= module.bias.detach() != 0
    kept = torch.nonzero(alive).flatten().tolist()
    return kept or [0]  # a layer never disappears completely


def shrink(model: nn.Module, recipe: Recipe | None = None) -> tuple[nn.Module, Recipe]:
    """Remove dead output channels (all-zero weights and bias) along traced chains; return model and recipe.

    Exact when the activation between the layers maps 0 to 0 (ReLU, LeakyReLU, Tanh, ELU, …); otherwise a
    `ModelError` names the layer.
    """
    model = copy.deepcopy(model)
    remove_masks(model)
    couplings = trace_couplings(model)
    recipe_out: Recipe = {}
    for name, coupling in couplings.items():
        if not coupling.prunable:
            continue
        layer = model.get_submodule(name)
        kept = recipe[name] if recipe is not None and name in recipe else _alive_outputs(layer)
        if recipe is None and len(kept) == layer.weight.shape[0]:
            continue
        _check_zero_preserving(model, name, coupling)
        index = torch.tensor(kept, dtype=torch.long)
        _set_module(model, name, _slice_outputs(layer, index))
        for norm in coupling.norms:
            _set_module(model, norm, _slice_norm(model.get_submodule(norm), index))
        nxt = model.get_submodule(coupling.next_layer)
        _set_module(model, coupling.next_layer, _slice_inputs(nxt, index, layer.weight.shape[0]))
        recipe_out[name] = kept
    if hasattr(model, "tenfold_spec"):
        model.tenfold_shrink = recipe_out
    return model, recipe_out


def _check_zero_preserving(model: nn.Module, name: str, coupling) -> None:
    graph_modules = dict(model.named_modules())
    for candidate in graph_modules.values():
        if isinstance(candidate, nn.Sigmoid | nn.Softplus | nn.GELU):
            raise ModelError(
                f"cannot physically remove neurons of {name}: the model uses {type(candidate).__name__}, which does "
                "not map 0 to 0; keep the masked model instead"
            )


def _slice_outputs(layer: nn.Module, index: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(layer)
    with torch.no_grad():
        new.weight = nn.Parameter(layer.weight.detach()[index].clone())
        if layer.bias is not None:
            new.bias = nn.Parameter(layer.bias.detach()[index].clone())
    if isinstance(layer, nn.Linear):
        new.out_features = len(index)
    else:
        new.out_channels = len(index)
    return new


def _slice_norm(norm: nn.Module, index: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(norm)
    with torch.no_grad():
        if norm.weight is not None:
            new.weight = nn.Parameter(norm.weight.detach()[index].clone())
            new.bias = nn.Parameter(norm.bias.detach()[index].clone())
        if norm.running_mean is not None:
            new.running_mean = norm.running_mean[index].clone()
            new.running_var = norm.running_var[index].clone()
    new.num_features = len(index)
    return new


def _slice_inputs(layer: nn.Module, index: torch.Tensor, channels: int) -> nn.Module:
    new = copy.deepcopy(layer)
    weight = layer.weight.detach()
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            per_channel = layer.in_features // channels
            columns = (index[:, None] * per_channel + torch.arange(per_channel)[None, :]).reshape(-1)
            new.weight = nn.Parameter(weight[:, columns].clone())
            new.in_features = len(columns)
        else:
            new.weight = nn.Parameter(weight[:, index].clone())
            new.in_channels = len(index)
    return new
