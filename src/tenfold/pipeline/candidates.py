"""Per-layer candidate actions for joint compression, each priced by the hardware model and valued by the loss.

An action changes one layer only: keep it, prune its DSP patterns to a level, decompose it at a rank with
fixed-point factors, lower its weight precision, or prune *and* lower the precision. Its cost is the layer's
resource vector after the action (the hardware model re-prices the changed weights and HLS settings; a
decomposed layer adds the on-chip regeneration kernel and stores factors instead of weights); its value is
the loss increase measured on a few fixed training batches with only that layer changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

RESOURCE_KEYS = ("dsp", "bram18", "lut", "ff", "params")


@dataclass
class Action:
    """One way to treat one layer, with what it costs and what it loses."""

    layer: str
    kind: str  # keep | prune | precision | prune+precision | decompose
    prune_level: float | None = None
    width: int | None = None
    rank: int | None = None
    cost: dict[str, float] = field(default_factory=dict)
    loss_increase: float = 0.0
    mask: torch.Tensor | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.kind == "keep":
            return "keep"
        text = []
        if self.prune_level is not None:
            text.append(f"prune {100 * self.prune_level:.0f}%")
        if self.width is not None:
            text.append(f"{self.width}-bit weights")
        if self.rank is not None:
            text.append(f"CP rank {self.rank}")
        return ", ".join(text)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "mask"} | {"action": self.describe()}


class LossProbe:
    """Loss on a fixed set of training batches; the same batches for every candidate keeps values comparable."""

    def __init__(self, model: nn.Module, data, batches: int, batch_size: int = 128, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        x, y = data.tensors[0], data.tensors[1]
        order = torch.randperm(len(x), generator=generator)[: batches * batch_size]
        self.inputs, self.targets = x[order], y[order]
        self.model = model
        self.baseline = self.loss()

    @torch.no_grad()
    def loss(self) -> float:
        was_training = self.model.training
        self.model.eval()
        try:
            return float(nn.functional.cross_entropy(self.model(self.inputs), self.targets))
        finally:
            self.model.train(was_training)

    def increase_with(self, module: nn.Module, weight: torch.Tensor) -> float:
        """Loss increase with `module.weight` temporarily replaced by `weight` (restored exactly)."""
        parameter = _weight_tensor(module)
        saved = parameter.detach().clone()
        try:
            with torch.no_grad():
                parameter.copy_(weight)
                _sync_masked(module)
            return self.loss() - self.baseline
        finally:
            with torch.no_grad():
                parameter.copy_(saved)
                _sync_masked(module)


def _weight_tensor(module: nn.Module) -> torch.Tensor:
    """The stored weight (the `_orig` parameter when a pruning mask sits on it)."""
    return module.weight_orig if hasattr(module, "weight_orig") else module.weight


def _sync_masked(module: nn.Module) -> None:
    if hasattr(module, "weight_orig"):
        module.weight = module.weight_orig * module.weight_mask


def effective_weight(module: nn.Module) -> torch.Tensor:
    return (module.weight_orig * module.weight_mask if hasattr(module, "weight_orig") else module.weight).detach()


def with_weight_precision(hls, layer: str, width: int, weight: torch.Tensor | None = None):
    """The HLS config with one layer's weight type narrowed to `width` bits.

    Integer bits come from the weights' range when they are given (so a narrow type spends its bits on the
    fraction, as post-training calibration would), else from the old type; rounding and saturation are kept.
    """
    import math

    from tenfold.hardware import FixedPoint

    config = hls.layer(layer)
    old = config.precision.weight
    integer = old.integer
    if weight is not None:
        peak = float(weight.abs().max())
        integer = math.floor(math.log2(peak)) + 2 if peak > 0 else 1
    integer = min(integer, width)
    new = dataclasses.replace(old, width=width, integer=integer)
    FixedPoint.parse(new.to_hls4ml())  # validated like any user-given type
    precision = dataclasses.replace(config.precision, weight=new)
    return hls.with_layer(layer, precision=precision)


def pattern_prune_masks(model: nn.Module, input_shape, hls, layer: str, levels: list[float],
                        saliency: dict[str, torch.Tensor] | None = None) -> dict[float, tuple[float, torch.Tensor]]:
    """For each level, a mask removing that share of the layer's *remaining* DSP patterns, least important first.

    Levels are relative to what is still alive, so each round offers finer steps than the last (0.5 on a layer
    already half pruned takes it to 75%): absolute levels gave one-shot jumps too coarse for small conv layers.
    A pattern's importance is its summed saliency when `saliency` has the layer (the pruner's Taylor
    |w·dL/dw|), else its L1 norm. Returns level -> (share of all the layer's patterns removed, mask); levels that
    would remove nothing new are left out, and a layer always keeps one pattern.
    """
    from tenfold.prune import build_structures

    structures = build_structures(model, input_shape, hls, "pattern", layers=[layer])
    if not structures.layers:
        return {}
    info = structures.layers[0]
    weight = effective_weight(model.get_submodule(layer)).flatten().double()
    score = saliency[layer] if saliency is not None and layer in saliency else weight.abs()
    score = score.detach().flatten().double().numpy()
    groups = info.group_of_weight
    valid = groups >= 0
    n_groups = info.n_groups
    value = np.bincount(groups[valid], weights=score[valid], minlength=n_groups)
    alive = np.bincount(groups[valid], weights=(weight.numpy()[valid] != 0).astype(float), minlength=n_groups) > 0
    n_alive = int(alive.sum())
    order = np.lexsort((value, alive))  # dead patterns first, then the alive ones from the least important
    out: dict[float, tuple[float, torch.Tensor]] = {}
    seen: set[int] = set()
    for level in levels:
        drop_alive = min(round(level * n_alive), n_alive - 1)
        if drop_alive <= 0 or drop_alive in seen:
            continue
        seen.add(drop_alive)
        drop = n_groups - n_alive + drop_alive
        keep = np.ones(n_groups, dtype=bool)
        keep[order[:drop]] = False
        mask = np.ones(len(groups))
        mask[valid] = keep[groups[valid]]
        out[level] = (drop / n_groups, torch.from_numpy(mask).to(torch.float32).reshape(info.weight_shape))
    return out


def layer_cost(pricer, layer: str, weight: torch.Tensor | None = None, hls=None) -> dict[str, float]:
    """The hardware model's resources of one layer holding `weight` (default: as traced) under `hls`."""
    cost = pricer.price(layer, weight=weight, config=hls)
    return {"dsp": cost.dsp, "bram18": cost.bram18, "lut": cost.lut, "ff": cost.ff, "params": float(cost.n_nonzero)}


def quantized_weight(weight: torch.Tensor, hls, layer: str) -> torch.Tensor:
    precision = hls.layer(layer).precision.weight
    return torch.as_tensor(np.asarray(precision.quantize(weight.double().numpy())), dtype=weight.dtype)


def build_candidates(model: nn.Module, input_shape, hls, layers: list[str], probe: LossProbe, *,
                     prune_levels: list[float], widths: list[int], rank_ratios: list[float], bits: int,
                     regeneration: str = "buffer", progress: Callable[[int, int, str], None] | None = None,
                     saliency: dict[str, torch.Tensor] | None = None) -> dict[str, list[Action]]:
    """Every candidate action of every layer, priced and valued (the model is restored after each probe).

    The model is traced once; each candidate re-prices only its own layer (`LayerPricer`), so building the
    candidates costs one loss probe per action, not one whole-model estimate per action. `prune_levels` are
    shares of each layer's remaining patterns (`pattern_prune_masks`), ranked by `saliency` when given.
    """
    from tenfold.hardware import LayerPricer

    pricer = LayerPricer(model, input_shape, hls)
    total = len(layers) * (1 + len(prune_levels) * (1 + len(widths)) + len(widths) + len(rank_ratios))
    done = 0
    out: dict[str, list[Action]] = {}

    def tick(text: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, text)

    for name in layers:
        module = model.get_submodule(name)
        weight = effective_weight(module)
        actions = [Action(layer=name, kind="keep", cost=layer_cost(pricer, name))]
        tick(f"{name}: keep")
        masks = pattern_prune_masks(model, input_shape, hls, name, prune_levels, saliency) if prune_levels else {}
        for level in prune_levels:
            if level in masks:
                share, mask = masks[level]
                actions.append(_probe(pricer, module, probe, weight * mask, hls, name,
                                      Action(layer=name, kind="prune", prune_level=share, mask=mask)))
            tick(f"{name}: prune {level:.2f}")
        for width in widths:
            narrow = with_weight_precision(hls, name, width, weight)
            if str(narrow.layer(name).precision.weight) == str(hls.layer(name).precision.weight):
                for label in [f"{width} bits", *(f"prune {level:.2f} at {width} bits" for level in prune_levels)]:
                    tick(f"{name}: {label}")
                continue
            actions.append(_probe(pricer, module, probe, quantized_weight(weight, narrow, name), narrow,
                                  name, Action(layer=name, kind="precision", width=width)))
            tick(f"{name}: {width} bits")
            for level in prune_levels:
                if level in masks:
                    share, mask = masks[level]
                    actions.append(_probe(pricer, module, probe, quantized_weight(weight * mask, narrow, name),
                                          narrow, name,
                                          Action(layer=name, kind="prune+precision", prune_level=share, width=width,
                                                 mask=mask)))
                tick(f"{name}: prune {level:.2f} at {width} bits")
        for ratio in rank_ratios:
            if not hasattr(module, "weight_mask"):  # a pruned layer is not decomposed: factors would lose the zeros
                action = _decompose_candidate(pricer, module, probe, weight, hls, name, ratio, bits, regeneration)
                if action is not None:
                    actions.append(action)
            tick(f"{name}: rank ratio {ratio}")
        out[name] = actions
    return out


def _probe(pricer, module, probe: LossProbe, new_weight, hls, name: str, action: Action) -> Action:
    action.loss_increase = probe.increase_with(module, new_weight)
    action.cost = layer_cost(pricer, name, new_weight, hls)
    return action


def _decompose_candidate(pricer, module, probe, weight, hls, name, ratio, bits, regeneration: str) -> Action | None:
    """Quantized CP (kernel modes merged) keeping `ratio` of the layer's parameters, priced like
    `tenfold.decompose.pricing` prices it (weights regenerated on chip, `regeneration` mode)."""
    from tenfold.decompose import FactorGrid, compose_weight, decompose_weight, rank_for_ratio
    from tenfold.decompose.pricing import price_decomposed_layer

    method = "cp3"
    rank = rank_for_ratio(tuple(weight.shape), ratio, method)
    if not isinstance(rank, int) or rank < 1:
        return None
    grid = FactorGrid(f"fixed<{bits},1>", "per_factor")
    factors, _ = decompose_weight(weight.double(), method, rank, grid, seed=0, n_iter_max=30)
    stored = sum(f.numel() for f in factors)
    if stored >= weight.numel():
        return None
    rebuilt = compose_weight(method, tuple(weight.shape), factors).to(weight.dtype)
    action = Action(layer=name, kind="decompose", rank=rank)
    action.loss_increase = probe.increase_with(module, rebuilt)
    cost = price_decomposed_layer(pricer.price(name, config=hls), tuple(weight.shape), method, rank,
                                  bits, hls, mode=regeneration)
    action.cost = {"dsp": cost.dsp, "bram18": cost.bram18, "lut": cost.lut, "ff": cost.ff, "params": float(stored)}
    return action
