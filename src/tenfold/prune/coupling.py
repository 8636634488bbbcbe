"""Which layer's inputs disappear with a neuron or filter: traced with torch.fx, so only true chains qualify.

Removing output channel c of a layer also removes input c of the next weighted layer — but only if nothing
else reads that channel (a residual add or a concatenation would). Layers whose outputs fan out, feed the
model output, or pass through an unknown operation are reported as not neuron-prunable, with the reason.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from tenfold.errors import ModelError

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.SiLU, nn.GELU,
                nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.sigmoid, torch.tanh, torch.nn.functional.max_pool2d,
             torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_avg_pool2d}


@dataclass
class Coupling:
    """How a layer's output channels reach the next weighted layer."""

    layer: str
    prunable: bool
    reason: str = ""
    next_layer: str | None = None
    norms: list[str] = field(default_factory=list)
    flattened: bool = False  # a Flatten sits between: channel c → next inputs [c·k, (c+1)·k)


def trace_couplings(model: nn.Module) -> dict[str, Coupling]:
    """Coupling of every Linear/Conv layer of `model`, keyed by module path."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable control flow
        raise ModelError(
            f"neuron/filter structures need a model torch.fx can trace ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); use --structure pattern or weight instead"
        ) from None
    modules = dict(model.named_modules())
    couplings = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], WEIGHTED):
            continue
        couplings[node.target] = _follow(node, modules)
    return couplings


def _follow(start: fx.Node, modules: dict[str, nn.Module]) -> Coupling:
    layer = start.target
    module = modules[layer]
    if getattr(module, "groups", 1) != 1:
        return Coupling(layer, False, "grouped/depthwise convolution")
    coupling = Coupling(layer, False)
    current = start
    while True:
        users = list(current.users)
        if len(users) != 1:
            coupling.reason = "its output is used more than once (e.g. a residual connection)" if users else "no user"
            return coupling
        user = users[0]
        if user.op == "output":
            coupling.reason = "it produces the model's output"
            return coupling
        if user.op == "call_module":
            target = modules[user.target]
            if isinstance(target, WEIGHTED):
                if getattr(target, "groups", 1) != 1:
                    coupling.reason = f"it feeds a grouped convolution ({user.target})"
                    return coupling
                coupling.prunable, coupling.next_layer = True, user.target
                return coupling
            if isinstance(target, NORMS):
                coupling.norms.append(user.target)
            elif isinstance(target, nn.Flatten):
                coupling.flattened = True
            elif not isinstance(target, PASS_THROUGH):
                coupling.reason = f"it feeds {type(target).__name__} ({user.target}), which mixes channels"
                return coupling
        elif user.op == "call_function" and user.target in FUNCTIONS:
            pass
        elif (user.op == "call_function" and user.target is torch.flatten) or (
            user.op == "call_method" and user.target in {"flatten", "view", "reshape"}
        ):
            coupling.flattened = True
        else:
            name = getattr(user.target, "__name__", str(user.target))
            coupling.reason = f"it feeds {name}, which combines tensors" if user.target in {operator.add, torch.add,
                                                                                            torch.cat} else (
                f"it feeds an operation tenfold cannot follow ({name})")
            return coupling
        current = user
