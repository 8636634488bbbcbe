"""Reorder hidden channels so the weights one multiplier shares are alike in importance: same function, better pruning.

Under hls4ml's Resource layout a DSP pattern binds weights that sit side by side (for a Dense layer after a
Flatten: a few channels at one pixel, for one output), so whether a pattern can go depends on which channels
happen to sit next to each other. The order of a hidden layer's channels is arbitrary:
permuting a layer's outputs (and its batch norm) and the next layer's inputs the same way computes the same
function. `choose_orders` picks, per traced chain, the order that lets the most importance survive when each
layer keeps a given share of its patterns (pairwise-swap hill climbing), the idea behind channel permutations for
N:M sparsity (Pool & Yu, NeurIPS 2021) applied to hls4ml's multiplier patterns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tenfold.errors import ConfigError, ModelError
from tenfold.prune.coupling import trace_couplings
from tenfold.prune.physical import _set_module, _slice_inputs, _slice_norm, _slice_outputs
from tenfold.prune.structures import StructureSet


@dataclass
class Permutation:
    """What reordering did: the new order of each producer's channels and the importance it lets survive."""

    orders: dict[str, list[int]] = field(default_factory=dict)  # producer layer → old channel at each new position
    kept_before: float = 0.0  # share of all saliency in the kept patterns, original order
    kept_after: float = 0.0  # the same after reordering
    swaps: int = 0


class _LayerView:
    """One layer's saliency, its pattern ids and the current input/output orders; scores a share of patterns."""

    def __init__(self, group_of_weight: np.ndarray, saliency: np.ndarray, keep: float) -> None:
        groups = group_of_weight.reshape(saliency.shape)
        self.valid = groups >= 0  # fixed by position, so computed once for the many scores of the hill climb
        self.valid_groups = groups[self.valid]
        self.saliency = saliency
        self.n_groups = int(group_of_weight.max()) + 1 if (group_of_weight >= 0).any() else 0
        self.k = max(1, round(keep * self.n_groups)) if self.n_groups else 0
        self.out_order = np.arange(saliency.shape[0])
        self.in_columns = np.arange(saliency.shape[1])  # inputs are dim 1 for Linear and Conv weights

    def score(self, out_order: np.ndarray | None = None, in_columns: np.ndarray | None = None) -> float:
        if not self.k:
            return 0.0
        s = self.saliency[self.out_order if out_order is None else out_order]
        s = s[:, self.in_columns if in_columns is None else in_columns]
        values = np.bincount(self.valid_groups, weights=s[self.valid], minlength=self.n_groups)
        if self.k >= len(values):
            return float(values.sum())
        return float(np.partition(values, len(values) - self.k)[len(values) - self.k:].sum())


def _in_columns(order: np.ndarray, per_channel: int) -> np.ndarray:
    """Input columns of the consumer for a channel order (a Flatten spreads channel c over per_channel inputs)."""
    if per_channel == 1:
        return order
    return (order[:, None] * per_channel + np.arange(per_channel)[None, :]).reshape(-1)


def _chains(model: nn.Module, names: set[str]) -> list[tuple[str, str, list[str], int, int]]:
    """(producer, consumer, norms between, channels, consumer inputs per channel) of every reorderable chain."""
    modules = dict(model.named_modules())
    chains = []
    try:
        couplings = trace_couplings(model)
    except ModelError as error:  # its message is about neuron structures; say what fails here
        raise ModelError(f"channel permutation needs a model torch.fx can trace ({error}); "
                         "turn permute off for this model") from None
    for name, coupling in couplings.items():
        nxt = coupling.next_layer
        if not coupling.prunable or name not in names or nxt not in names:
            continue
        channels = modules[name].weight.shape[0]
        inputs = modules[nxt].weight.shape[1]
        per_channel = inputs // channels if isinstance(modules[nxt], nn.Linear) else 1
        if channels >= 2 and per_channel * channels == inputs:
            chains.append((name, nxt, list(coupling.norms), channels, per_channel))
    return chains


def choose_orders(
    model: nn.Module,
    structures: StructureSet,
    saliency: dict[str, torch.Tensor],
    keep: float,
    *,
    passes: int = 4,
    max_pairs: int = 20_000,
    seed: int = 0,
) -> Permutation:
    """The channel orders that let the most saliency survive when every layer keeps `keep` of its patterns.

    `keep` is the share of patterns the budget will leave (e.g. 0.05 for `dsp<=0.05x`); `saliency` is per-weight
    importance (weight-shaped) for the layers in `structures`. Chains that fan out, feed the output or pass
    through an operation that mixes channels keep their order. Each pass tries every channel swap of a chain,
    or `max_pairs` random ones when a wide layer has more (512 channels: 130,816 swaps).
    """
    if not 0 < keep <= 1:
        raise ConfigError(f"keep is the share of patterns the budget leaves and must be in (0, 1], got {keep}")
    views = {}
    for layer in structures.layers:
        if layer.name not in saliency:
            continue
        values = saliency[layer.name].detach().cpu().double()
        if tuple(values.shape) != tuple(layer.weight_shape):
            raise ConfigError(f"saliency of {layer.name!r} has shape {tuple(values.shape)}, but the layer's weight "
                              f"has {tuple(layer.weight_shape)}; pass one value per weight")
        if not torch.isfinite(values).all():
            raise ConfigError(f"saliency of {layer.name!r} contains NaN or inf; fix the weights or the importance "
                              "data first")
        views[layer.name] = _LayerView(layer.group_of_weight, values.numpy(), keep)
    chains = _chains(model, set(views))
    result = Permutation(kept_before=_kept_share(views))
    rng = np.random.default_rng(seed)
    for _ in range(passes):
        improved = False
        for name, nxt, _norms, channels, per_channel in chains:
            producer, consumer = views[name], views[nxt]
            order = producer.out_order.copy()
            current = producer.score() + consumer.score()
            pairs = [(i, j) for i in range(channels) for j in range(i + 1, channels)]
            for index in rng.permutation(len(pairs))[:max_pairs]:
                i, j = pairs[index]
                trial = order.copy()
                trial[i], trial[j] = trial[j], trial[i]
                columns = _in_columns(trial, per_channel)
                value = producer.score(out_order=trial) + consumer.score(in_columns=columns)
                if value > current * (1 + 1e-9) + 1e-15:
                    order, current, improved = trial, value, True
                    producer.out_order, consumer.in_columns = order, columns
                    result.swaps += 1
        if not improved:
            break
    for name, _nxt, _norms, channels, _per_channel in chains:
        if not np.array_equal(views[name].out_order, np.arange(channels)):
            result.orders[name] = views[name].out_order.tolist()
    result.kept_after = _kept_share(views)
    return result


def apply_orders(model: nn.Module, orders: dict[str, list[int]]) -> nn.Module:
    """A copy of `model` with each listed layer's channels in the given order (and its chain's next inputs)."""
    if any(name.endswith("_mask") for name, _ in model.named_buffers()):
        raise ConfigError("channels can only be reordered before pruning: this model already has pruning masks "
                          "(reorder the unpruned model, or turn channel permutation off)")
    names = {name for name, module in model.named_modules() if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d)}
    chains = {chain[0]: chain for chain in _chains(model, names)}
    permuted = copy.deepcopy(model)
    for name, order in orders.items():
        if name not in chains:
            raise ConfigError(f"cannot reorder the channels of {name!r}: it is not a chain tenfold can follow "
                              f"(reorderable: {sorted(chains) or 'none'})")
        _, nxt, norms, channels, _per_channel = chains[name]
        if sorted(order) != list(range(channels)):
            raise ConfigError(f"the order for {name!r} must be a permutation of 0..{channels - 1}")
        index = torch.as_tensor(order, dtype=torch.long)
        _set_module(permuted, name, _slice_outputs(permuted.get_submodule(name), index))
        for norm in norms:
            _set_module(permuted, norm, _slice_norm(permuted.get_submodule(norm), index))
        _set_module(permuted, nxt, _slice_inputs(permuted.get_submodule(nxt), index, channels))
    return permuted


def _kept_share(views: dict[str, _LayerView]) -> float:
    total = sum(float(view.saliency.sum()) for view in views.values())
    return sum(view.score() for view in views.values()) / total if total > 0 else 0.0
