"""Copying modules safely when they carry `torch.nn.utils.parametrize` parametrizations.

`parametrize` gives each parametrized module its own generated class and puts the parametrized tensors on it
as properties. `copy.deepcopy` keeps that class, so the copy and the original share it: registering another
parametrization on the copy (fake quantization of a bias, say) silently changes the original too, which then
fails with a KeyError on its next forward. `clone_module` gives every parametrized module of the copy a class
of its own.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize


def isolate_parametrized_classes_(model: nn.Module) -> nn.Module:
    """Give each parametrized submodule a private copy of its generated class (in place)."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            cls = module.__class__
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    return model


def clone_module(model: nn.Module, memo: dict | None = None) -> nn.Module:
    """`copy.deepcopy` whose parametrized submodules no longer share classes with the original's."""
    return isolate_parametrized_classes_(copy.deepcopy(model, memo))
