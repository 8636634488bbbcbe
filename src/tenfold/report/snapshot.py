"""What a model looks like at one moment of a run: accuracy, resources per layer, sparsity and rank.

Every stage (baseline, each pruning step, decomposition, quantization, the final model) becomes a
`Snapshot`, so tables and plots compare like with like: the same hardware model prices all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

RESOURCES = ("dsp", "bram18", "lut", "ff")


@dataclass
class LayerSnapshot:
    """One weighted layer: resources, non-zero share, and the rank when it is decomposed."""

    name: str
    dsp: float = 0.0
    bram18: float = 0.0
    lut: float = 0.0
    ff: float = 0.0
    weights: int = 0
    nonzero: int = 0
    stored_parameters: int = 0
    rank: int | None = None
    precision: str = ""
    reuse_factor: int = 1

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.weights if self.weights else 0.0


@dataclass
class Snapshot:
    """The model after one stage or step."""

    label: str
    stage: str
    val_accuracy: float | None
    test_accuracy: float | None
    totals: dict[str, float]
    latency_cycles: int
    parameters: int
    stored_parameters: int
    layers: list[LayerSnapshot] = field(default_factory=list)
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for layer, raw in zip(self.layers, data["layers"], strict=True):
            raw["sparsity"] = layer.sparsity
        return data


@dataclass
class RunReport:
    """The whole run: config, snapshots in order, the budget and whether it was met."""

    name: str
    budget: str | None
    snapshots: list[Snapshot] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    budget_limits: dict[str, float] = field(default_factory=dict)
    met_budget: bool | None = None
    export: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def baseline(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def final(self) -> Snapshot:
        return self.snapshots[-1]

    def reduction(self) -> dict[str, float]:
        """Fraction of each resource (and of the stored parameters) removed, baseline → final."""
        before = self.baseline.totals | {"parameters": self.baseline.stored_parameters}
        after = self.final.totals | {"parameters": self.final.stored_parameters}
        return {key: (1.0 - after[key] / value) if value else 0.0 for key, value in before.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "budget": self.budget, "budget_limits": self.budget_limits,
                "met_budget": self.met_budget, "reduction": self.reduction(),
                "snapshots": [s.to_dict() for s in self.snapshots], "export": self.export,
                "outputs": self.outputs, "seconds": self.seconds, "config": self.config}


def stored_parameters(module: nn.Module) -> int:
    """Numbers the chip must store: non-zero weights of plain layers, factor entries of decomposed ones."""
    total = 0
    for name, tensor in module.state_dict().items():
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith("_mask") or leaf in {"running_mean", "running_var"} or "scale" in leaf:
            continue
        if leaf.endswith("_orig"):
            mask = module.state_dict().get(name[: -len("_orig")] + "_mask")
            total += int((tensor * mask != 0).sum()) if mask is not None else int((tensor != 0).sum())
            continue
        total += int((tensor != 0).sum())
    return total


def take_snapshot(model: nn.Module, input_shape: tuple[int, ...], hls_config, *, label: str, stage: str,
                  val_accuracy: float | None = None, test_accuracy: float | None = None, seconds: float = 0.0,
                  notes: dict[str, Any] | None = None, regeneration: str = "buffer") -> Snapshot:
    """Price `model` with the hardware model and record what each weighted layer holds.

    Decomposed layers are priced with their on-chip weight regeneration (`regeneration`: "buffer" or "stream",
    see tenfold.decompose.pricing).
    """
    from tenfold.decompose.pricing import estimate_decomposed

    cost = estimate_decomposed(model, input_shape, hls_config, mode=regeneration)
    ranks = _ranks(model)
    layers = []
    for layer in cost.layers:
        if not layer.n_weights:
            continue
        config = hls_config.layer(layer.name)
        layers.append(LayerSnapshot(
            name=layer.name, dsp=layer.dsp, bram18=layer.bram18, lut=layer.lut, ff=layer.ff, weights=layer.n_weights,
            nonzero=layer.n_nonzero, stored_parameters=_layer_stored(model, layer.name, layer.n_nonzero),
            rank=ranks.get(layer.name), precision=str(config.precision.weight), reuse_factor=config.reuse_factor))
    return Snapshot(label=label, stage=stage, val_accuracy=val_accuracy, test_accuracy=test_accuracy,
                    totals=cost.totals, latency_cycles=cost.latency_cycles,
                    parameters=sum(p.numel() for p in model.parameters()), stored_parameters=stored_parameters(model),
                    layers=layers, seconds=seconds, notes=notes or {})


def _ranks(model: nn.Module) -> dict[str, int]:
    """Rank of every decomposed layer (Tucker-2: the larger of its two ranks)."""
    from tenfold.decompose import decomposed_layers

    return {layer.name: int(max(layer.rank) if isinstance(layer.rank, tuple) else layer.rank)
            for layer in decomposed_layers(model)}


def _layer_stored(model: nn.Module, name: str, nonzero: int) -> int:
    """Factor entries of a decomposed layer, non-zero weights otherwise."""
    from tenfold.decompose import decomposed_layers

    for layer in decomposed_layers(model):
        if layer.name == name:
            return int(sum(f.numel() for f in layer.factors))
    return nonzero


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when cost (x) should be low and accuracy (y) high, sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front
