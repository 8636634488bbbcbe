"""Group a model's weights into the structures the FPGA spends resources on, and price each one.

- `weight`: every weight alone (unstructured).
- `pattern`: the R weights one multiplier processes under ReuseFactor R (hls4ml's Resource layout:
  consecutive in `LayerSpec.weight_matrix()` order). Under the Latency strategy at R = 1 this is a weight.
- `block`: consecutive patterns whose ROM lanes fill whole BRAM18 words for the layer's weight width
  (e.g. 9 lanes = 4 BRAM18 at 16 bits, 2 lanes = 1 BRAM18 at 18 bits) — savings for any width.
- `neuron`: a Linear output / Conv filter, together with the next layer's matching inputs (traced).

Each structure's cost is the resource vector the hardware model says it saves. Costs are linear: a
weight's share of a multiplier pattern is the pattern's saving split over its non-zero weights, so a
structure's cost is the sum over its weights — exact whenever structures align with patterns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tenfold.errors import ConfigError
from tenfold.hardware.arith import BRAM18_SHAPES
from tenfold.hardware.cost import CostModel, ModelCost
from tenfold.hardware.devices import get_device
from tenfold.hardware.hls_config import HLSConfig, Strategy
from tenfold.hardware.layers import LayerSpec, extract_layers
from tenfold.prune.coupling import trace_couplings

STRUCTURES = ("weight", "pattern", "block", "neuron")
RESOURCES = ("dsp", "bram18", "lut", "ff", "params")


@dataclass
class LayerStructures:
    """The structures of one layer: which weights belong to which structure and what each one costs."""

    name: str
    structure: str
    group_of_weight: np.ndarray  # (n_weights,) in PyTorch flat order: structure id, or -1
    costs: np.ndarray  # (n_groups, len(RESOURCES))
    weight_shape: tuple[int, ...]
    coupled: dict[str, np.ndarray] = field(default_factory=dict)  # other layer → (its n_weights,) group ids
    note: str = ""
    coupled_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.costs.shape[0])

    def group_sizes(self) -> np.ndarray:
        valid = self.group_of_weight[self.group_of_weight >= 0]
        return np.bincount(valid, minlength=self.n_groups)


@dataclass
class StructureSet:
    """All prunable structures of a model plus the cost no structure can remove."""

    structure: str
    layers: list[LayerStructures]
    baseline: ModelCost
    fixed_cost: np.ndarray  # (len(RESOURCES),)
    skipped: dict[str, str] = field(default_factory=dict)  # layer → why it has no structures

    @property
    def n_items(self) -> int:
        return sum(layer.n_groups for layer in self.layers)

    def costs(self) -> np.ndarray:
        return np.concatenate([layer.costs for layer in self.layers]) if self.layers else np.zeros((0, len(RESOURCES)))

    def layer_of_item(self) -> np.ndarray:
        return np.concatenate([np.full(layer.n_groups, i) for i, layer in enumerate(self.layers)]) if self.layers \
            else np.zeros(0, dtype=int)


def _weight_shares(cost_model: CostModel, spec: LayerSpec, config: HLSConfig, data_precision, device) -> np.ndarray:
    """(n_weights, RESOURCES) linear cost share of every weight, in PyTorch flat order."""
    layer_config = config.layer(spec.name)
    kwargs = {"data_precision": data_precision, "device": device, "io_type": config.io_type}
    rf = layer_config.reuse_factor
    folded = layer_config.strategy == Strategy.LATENCY or rf == 1
    matrix = spec.weight_matrix().reshape(-1)
    nonzero = (matrix != 0).numpy()
    if folded:
        shares_hls = cost_model.savings(spec, layer_config, granularity="weight", **kwargs)
    else:
        pattern = cost_model.savings(spec, layer_config, granularity="pattern", **kwargs)
        counts = nonzero.reshape(-1, rf).sum(axis=1)
        per = np.where(counts[:, None] > 0, pattern / np.maximum(counts, 1)[:, None], 0.0)
        shares_hls = np.repeat(per, rf, axis=0) * nonzero[:, None]
    shares = np.zeros((matrix.numel(), len(RESOURCES)))
    order = spec.hls_order().numpy()
    shares[order, :4] = shares_hls
    shares[order, 4] = nonzero.astype(float)
    return shares


def _block_lanes(weight_bits: int, depth: int) -> int:
    """Patterns per BRAM block: the fewest ROM lanes whose bits fill whole BRAM18 words at this depth."""
    word = next((bits for max_depth, bits in BRAM18_SHAPES if depth <= max_depth), 1)
    return math.lcm(weight_bits, word) // weight_bits


def build_structures(
    model: nn.Module,
    input_shape: tuple[int, ...],
    config: HLSConfig,
    structure: str = "pattern",
    *,
    cost_model: CostModel | None = None,
    layers: list[str] | None = None,
) -> StructureSet:
    """Structures of `model` under `config`, priced by the hardware model (honouring current masks)."""
    if structure not in STRUCTURES:
        raise ConfigError(f"unknown structure {structure!r}; use one of {', '.join(STRUCTURES)}")
    cost_model = cost_model or CostModel()
    specs = extract_layers(model, input_shape)
    baseline = cost_model.estimate_specs(specs, config)
    device = get_device(config.device)
    weighted = [s for s in specs if s.has_weights]
    if layers is not None:
        unknown = set(layers) - {s.name for s in weighted}
        if unknown:
            names = ", ".join(s.name for s in weighted)
            raise ConfigError(f"unknown layer(s) {sorted(unknown)}; prunable layers: {names}")
        weighted = [s for s in weighted if s.name in layers]
    precisions = {}
    data_precision = config.default.precision.result
    for spec in specs:
        precisions[spec.name] = data_precision
        data_precision = config.layer(spec.name).precision.result
    shares = {s.name: _weight_shares(cost_model, s, config, precisions[s.name], device) for s in weighted}
    couplings = trace_couplings(model) if structure == "neuron" else {}
    neuron_layers = {name for name, c in couplings.items() if c.prunable and name in shares}
    # a weight shared by a neuron of layer L (its input) and a neuron of layer L+1 (its row) counts half for each
    incoming = {couplings[name].next_layer: name for name in neuron_layers}
    result, skipped = [], {}
    for spec in weighted:
        share = shares[spec.name]
        n = share.shape[0]
        layer_config = config.layer(spec.name)
        rf = layer_config.reuse_factor
        order = spec.hls_order().numpy()
        coupled: dict[str, np.ndarray] = {}
        coupled_shapes: dict[str, tuple[int, ...]] = {}
        note = ""
        own_factor = np.ones(n)
        if structure == "weight":
            groups = np.arange(n)
        elif structure in {"pattern", "block"}:
            hls_group = np.arange(n) // rf
            if structure == "block":
                folded = layer_config.strategy == Strategy.LATENCY or rf == 1
                lanes = 1 if folded else _block_lanes(layer_config.precision.weight.width, rf)
                hls_group //= lanes
                note = f"{lanes} pattern(s) per block"
            groups = np.empty(n, dtype=np.int64)
            groups[order] = hls_group
        else:
            coupling = couplings.get(spec.name)
            if spec.name not in neuron_layers:
                skipped[spec.name] = coupling.reason if coupling else "not traced"
                continue
            out = spec.weight.shape[0]
            groups = np.repeat(np.arange(out), n // out)  # PyTorch rows = output neurons / filters
            if spec.name in incoming:
                own_factor = np.where(_input_groups(spec, spec.weight.shape[1] if spec.weight.dim() > 2 else
                                                    _channels_of(specs, incoming[spec.name])) >= 0, 0.5, 1.0)
            nxt = next((s for s in specs if s.name == coupling.next_layer), None)
            if nxt is not None and nxt.has_weights:
                coupled[nxt.name] = _input_groups(nxt, out)
                coupled_shapes = {nxt.name: tuple(nxt.weight.shape)}
        n_groups = int(groups.max()) + 1 if groups.size else 0
        costs = np.zeros((n_groups, len(RESOURCES)))
        np.add.at(costs, groups, share * own_factor[:, None])
        for other, other_groups in coupled.items():
            other_share = shares.get(other)
            if other_share is None:  # the next layer is not pruned itself: still count what its inputs save
                other_spec = next(s for s in specs if s.name == other)
                other_share = _weight_shares(cost_model, other_spec, config, precisions[other], device)
            factor = 0.5 if other in neuron_layers else 1.0
            mask = other_groups >= 0
            np.add.at(costs, other_groups[mask], factor * other_share[mask])
        result.append(LayerStructures(spec.name, structure, groups, costs, tuple(spec.weight.shape), coupled, note,
                                      coupled_shapes))
    total = np.array([baseline.totals[r] for r in RESOURCES[:4]] + [sum(s.n_weights for s in weighted)], dtype=float)
    removable = sum((layer.costs.sum(axis=0) for layer in result), np.zeros(len(RESOURCES)))
    return StructureSet(structure, result, baseline, np.maximum(total - removable, 0.0), skipped)


def _channels_of(specs: list[LayerSpec], name: str) -> int:
    spec = next(s for s in specs if s.name == name)
    return int(spec.weight.shape[0])


def _input_groups(next_spec: LayerSpec, channels: int) -> np.ndarray:
    """For each weight of the next layer, which of the previous layer's output channels it reads (or -1)."""
    weight = next_spec.weight
    out, n_in = weight.shape[0], weight[0].numel()
    if weight.dim() > 2:  # conv: (out, C, k...) — input channel is dim 1
        per_channel = n_in // weight.shape[1]
        channel_of_input = np.repeat(np.arange(weight.shape[1]), per_channel)
    else:  # linear: inputs grouped per channel after a flatten of (C, H, W) in PyTorch order
        if n_in % channels:
            return np.full(weight.numel(), -1)
        channel_of_input = np.repeat(np.arange(channels), n_in // channels)
    return np.tile(channel_of_input, out)


def structure_masks(
    structures: StructureSet, keep: np.ndarray, model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Masks (1 = keep) for every affected parameter from a keep/drop decision per structure.

    Weight masks are keyed by module path. For neuron structures, with `model` given, a dropped neuron's
    bias and the affine terms of its batch norms are masked too (`"module:param"` keys), so the neuron
    outputs exactly zero and the physically smaller model computes the same function.
    """
    masks: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    offset = 0
    modules = dict(model.named_modules()) if model is not None else {}
    couplings = trace_couplings(model) if (model is not None and structures.structure == "neuron") else {}
    for layer in structures.layers:
        layer_keep = np.asarray(keep[offset : offset + layer.n_groups], dtype=float)
        offset += layer.n_groups
        shapes[layer.name] = layer.weight_shape
        mask = masks.setdefault(layer.name, np.ones(len(layer.group_of_weight)))
        in_group = layer.group_of_weight >= 0
        mask[in_group] *= layer_keep[layer.group_of_weight[in_group]]
        for other, groups in layer.coupled.items():
            shapes[other] = layer.coupled_shapes[other]
            other_mask = masks.setdefault(other, np.ones(len(groups)))
            valid = groups >= 0
            other_mask[valid] *= layer_keep[groups[valid]]
        if structures.structure == "neuron" and modules:
            module = modules[layer.name]
            if getattr(module, "bias", None) is not None:
                key = f"{layer.name}:bias"
                masks[key] = masks.get(key, np.ones(layer.n_groups)) * layer_keep
                shapes[key] = (layer.n_groups,)
            for norm in couplings[layer.name].norms:
                for param in ("weight", "bias"):
                    if getattr(modules[norm], param, None) is not None:
                        key = f"{norm}:{param}"
                        masks[key] = masks.get(key, np.ones(layer.n_groups)) * layer_keep
                        shapes[key] = (layer.n_groups,)
    return {name: torch.from_numpy(mask.astype(np.float32)).reshape(shapes[name]) for name, mask in masks.items()}
