"""The decomposition recipe: which layers were decomposed and how, so a checkpoint can rebuild the structure.

A checkpoint stores the zoo spec and the state dict; the state dict of a decomposed model holds factors
where the zoo model has weights. ``tenfold.train.save_checkpoint`` records :func:`decomposition_recipe`
in the checkpoint's metadata, and ``Checkpoint.build_model`` replays it with
:func:`apply_decomposition_recipe_` on the freshly created zoo model (placeholder factors of the right
shapes) before loading the state dict — as it does for a shrink recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tenfold.decompose.grid import as_factor_grid
from tenfold.decompose.layers import check_form, check_method, decompose_layer, factor_shapes
from tenfold.decompose.model import _set_module, _unknown_layer, decomposed_layers
from tenfold.errors import ModelError

__all__ = ["RECIPE_KEY", "apply_decomposition_recipe_", "decomposition_recipe"]

RECIPE_KEY = "decomposition"
"""Key of the recipe in a checkpoint's metadata."""


def decomposition_recipe(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{layer name: {"form", "method", "rank", "precision", "scale"}}`` for every decomposed layer (JSON-ready)."""
    return {layer.name: layer.recipe() for layer in decomposed_layers(model)}


def apply_decomposition_recipe_(model: nn.Module, recipe: Mapping[str, Mapping[str, Any]]) -> nn.Module:
    """In place: replace each layer named in ``recipe`` by its decomposed form with zero factors; return ``model``.

    The factors are placeholders for ``load_state_dict`` to fill.
    """
    modules = dict(model.named_modules())
    for name, entry in recipe.items():
        if name not in modules:
            raise _unknown_layer(name, [n for n in modules if n], "decomposition recipe layer")
        try:
            method, form = check_method(entry["method"]), check_form(entry["form"])
            rank = entry["rank"]
            rank = (int(rank[0]), int(rank[1])) if isinstance(rank, list | tuple) else int(rank)
            grid = as_factor_grid(entry["precision"], entry["scale"])
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ModelError(
                f"decomposition recipe entry for layer '{name}' is malformed ({exc!r}): {entry!r}"
            ) from None
        layer = modules[name]
        weight = getattr(layer, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ModelError(f"decomposition recipe names layer '{name}', which has no weight to decompose")
        factors = [torch.zeros(shape, dtype=weight.dtype, device=weight.device)
                   for shape in factor_shapes(tuple(weight.shape), method, rank)]
        _set_module(model, name, decompose_layer(layer, method, rank, grid, form=form, factors=factors, name=name))
    return model
