"""How much the loss grows when one layer's weight is replaced by its rank-r quantized CP (or Tucker-2) form.

Rank selection needs, for every candidate layer and rank, a price in accuracy. Measuring it directly is
cheap on a few batches: decompose each (layer, rank) once, swap only that layer's weight for the
reconstruction, evaluate, put the weight back bit for bit. The increases are then summed across layers by
the selector — an additive approximation that ignores interactions, the usual one in rank selection.

Candidate ranks default to a ladder from compression ratios (the ranks that store the weight 2x, 4x, …
64x smaller), plus "keep" (no decomposition, zero increase, full cost).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset

from tenfold.decompose._checks import max_cp_rank
from tenfold.decompose.accounting import account_layer, decomposable_layers, decomposed_shape, tucker2_ranks
from tenfold.decompose.cp import cp_reshape, cp_unreshape
from tenfold.decompose.quantized import SCALE_MODES, as_precision, quantized_cp_als
from tenfold.decompose.tucker import quantized_tucker
from tenfold.errors import ConfigError, DataError, ModelError

__all__ = [
    "DEFAULT_RATIOS",
    "LayerSensitivity",
    "Progress",
    "RankCandidate",
    "RankSensitivity",
    "SensitivityConfig",
    "rank_ladder",
    "rank_sensitivity",
    "reconstruct_weight",
]

DEFAULT_RATIOS = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
Progress = Callable[[int, int, str], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SensitivityConfig:
    """How to decompose and how much data to look at.

    ``precision`` is the factor type (ap_fixed), ``scale`` how factors are scaled (see
    :mod:`tenfold.decompose.quantized`), ``ratios`` the compression ratios the default rank ladder aims at,
    ``batch_size`` only applies when a Dataset (not a DataLoader) is given.
    """

    method: str = "cp4"
    precision: str = "fixed<8,1>"
    scale: str = "per_factor"
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    n_batches: int = 4
    batch_size: int = 256
    seed: int = 0
    n_iter_max: int = 50

    def __post_init__(self) -> None:
        decomposed_shape((1, 1), self.method)  # validates the method
        self.precision = as_precision(self.precision).to_hls4ml()  # validated, kept as a string for reports
        if self.scale not in SCALE_MODES:
            raise ConfigError(f"scale must be one of {', '.join(SCALE_MODES)}; got {self.scale!r}")
        self.ratios = tuple(float(r) for r in self.ratios)
        if not self.ratios or any(not math.isfinite(r) or r <= 1 for r in self.ratios):
            raise ConfigError(f"ratios are compression ratios > 1 (2 = half the parameters), got {self.ratios}")
        for name in ("n_batches", "batch_size", "n_iter_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    @property
    def factor_bits(self) -> int:
        return as_precision(self.precision).width


@dataclass(frozen=True)
class RankCandidate:
    """One choice for a layer: its rank (None = keep the layer) and what it does to loss and weight."""

    rank: int | None
    loss_increase: float
    relative_error: float  # ||W - Ŵ||_F / ||W||_F of the quantized reconstruction; 0 for keep
    seconds: float = 0.0  # time spent decomposing


@dataclass
class LayerSensitivity:
    """The candidates of one layer, "keep" first, then ranks ascending."""

    name: str
    module_type: str
    shape: tuple[int, ...]
    candidates: list[RankCandidate]

    @property
    def ranks(self) -> list[int]:
        return [c.rank for c in self.candidates if c.rank is not None]

    def candidate(self, rank: int | None) -> RankCandidate:
        for candidate in self.candidates:
            if candidate.rank == rank:
                return candidate
        raise ConfigError(f"layer {self.name} has no candidate rank {rank}; candidates: keep, {self.ranks}")


@dataclass
class RankSensitivity:
    """Loss increase per (layer, rank) on the same batches, plus what the selector needs to price choices."""

    layers: list[LayerSensitivity]
    baseline_loss: float
    other_params: int  # model parameters outside the candidate layers' weights (biases, norms, other layers)
    n_samples: int
    config: SensitivityConfig = field(default_factory=SensitivityConfig)
    seconds: float = 0.0

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> LayerSensitivity:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ModelError(f"no layer {name!r} in the sensitivity table; layers: {', '.join(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_loss": self.baseline_loss,
            "other_params": self.other_params,
            "n_samples": self.n_samples,
            "seconds": self.seconds,
            "config": asdict(self.config) | {"ratios": list(self.config.ratios)},
            "layers": [{"name": layer.name, "module_type": layer.module_type, "shape": list(layer.shape),
                        "candidates": [asdict(c) for c in layer.candidates]} for layer in self.layers],
        }


# ---------------------------------------------------------------------------------------------- ranks


def rank_ladder(shape: Sequence[int], method: str = "cp4", ratios: Iterable[float] = DEFAULT_RATIOS) -> list[int]:
    """Ranks that store the weight about ``ratio`` times smaller, for each ratio; ascending, no duplicates.

    Each ratio's rank is the largest one within its parameter budget (at least 1), capped at the largest
    sensible CP rank (numel / largest mode) or the channel counts (Tucker-2); ranks that would not store fewer
    parameters than the weight itself are dropped.
    """
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    ranks = set()
    for ratio in ratios:
        ratio = float(ratio)
        if not math.isfinite(ratio) or ratio <= 1:
            raise ConfigError(f"compression ratios must be > 1, got {ratio}")
        rank = _tucker2_rank_for(shape, numel / ratio) if method == "tucker2" else \
            _cp_rank_for(decomposed_shape(shape, method), numel / ratio)
        if account_layer(shape, method, rank).params_after < numel:
            ranks.add(rank)
    return sorted(ranks)


def _cp_rank_for(sizes: tuple[int, ...], budget: float) -> int:
    return max(1, min(int(budget // sum(sizes)), max_cp_rank(sizes)))


def _tucker2_rank_for(shape: tuple[int, ...], budget: float) -> int:
    out_ch, in_ch, kernel = shape[0], shape[1], math.prod(shape[2:])
    best = 1
    for rank in range(1, min(out_ch, in_ch) + 1):
        if out_ch * rank + in_ch * rank + rank * rank * kernel > budget:
            break
        best = rank
    return best


# ---------------------------------------------------------------------------------------------- decompose


def reconstruct_weight(weight: torch.Tensor, rank: int, config: SensitivityConfig | None = None
                       ) -> tuple[torch.Tensor, float]:
    """The layer weight rebuilt from its rank-``rank`` quantized decomposition, and its relative error."""
    config = config or SensitivityConfig()
    data = weight.detach()
    if config.method == "tucker2":
        r_out, r_in = tucker2_ranks(tuple(data.shape), rank)
        result = quantized_tucker(data, [r_out, r_in] + [None] * (data.ndim - 2), config.precision,
                                  scale=config.scale, n_iter_max=config.n_iter_max, seed=config.seed)
        rebuilt = result.tucker.to_tensor()
    else:
        qcp = quantized_cp_als(cp_reshape(data, config.method), rank, config.precision, scale=config.scale,
                               n_iter_max=config.n_iter_max, seed=config.seed)
        result = qcp
        rebuilt = cp_unreshape(qcp.cp.to_tensor(), tuple(data.shape))
    return rebuilt.to(device=weight.device, dtype=weight.dtype), float(result.relative_error)


# ---------------------------------------------------------------------------------------------- data and loss


def _cache_batches(data: DataLoader | Dataset, n_batches: int, batch_size: int, seed: int,
                   device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n_batches`` (inputs, targets) batches, drawn once so every evaluation sees the same data."""
    if isinstance(data, DataLoader):
        loader = data
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        raise DataError(f"data must be a torch DataLoader or Dataset (e.g. TensorDataset(x, y)), got "
                        f"{type(data).__name__}")
    batches = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a shuffling loader draws the same batches for the same seed
        for batch in loader:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                raise DataError("each batch must be (inputs, targets); wrap tensors as TensorDataset(x, y)")
            inputs, targets = batch[0], batch[1]
            batches.append((inputs.to(device), targets.to(device)))
            if len(batches) == n_batches:
                break
    if not batches:
        raise DataError("the data yielded no batches; pass a non-empty DataLoader or Dataset")
    return batches


def _mean_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn) -> float:
    """Sample-weighted mean of ``loss_fn`` over the cached batches."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in batches:
            loss = loss_fn(model(inputs), targets)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ConfigError("loss_fn(outputs, targets) must return a scalar tensor (the batch's mean loss)")
            size = int(inputs.shape[0])
            total += float(loss) * size
            count += size
    return total / count


def _check_ranks(name: str, shape: tuple[int, ...], ranks: Sequence[int], method: str) -> list[int]:
    """Explicit candidate ranks, validated up front so a bad one fails before any decomposition runs."""
    out = sorted({int(r) for r in ranks}) if all(isinstance(r, int) and not isinstance(r, bool) for r in ranks) \
        else None
    if not out or out[0] < 1:
        raise ConfigError(f"candidate ranks of layer {name} must be positive integers, got {list(ranks)!r}")
    if method == "tucker2":
        limit = min(shape[0], shape[1])
    else:
        limit = max_cp_rank(decomposed_shape(shape, method))
    if out[-1] > limit:
        raise ConfigError(f"candidate rank {out[-1]} of layer {name} (weight {shape}) is above the largest useful "
                          f"{method} rank {limit}; use ranks 1..{limit}")
    return out


def _check_swappable(name: str, module: nn.Module) -> None:
    if hasattr(module, "weight_orig") or parametrize.is_parametrized(module, "weight"):
        raise ModelError(
            f"layer {name} carries a pruning mask or parametrization on its weight; decomposition replaces the "
            "whole weight, so make it plain first (torch.nn.utils.prune.remove(module, 'weight') or "
            "parametrize.remove_parametrizations) or leave the layer out of `layers`"
        )


# ---------------------------------------------------------------------------------------------- entry point


def rank_sensitivity(model: nn.Module, data: DataLoader | Dataset, config: SensitivityConfig | None = None, *,
                     loss_fn: LossFn | None = None, layers: Sequence[str] | None = None,
                     candidates: Mapping[str, Sequence[int]] | None = None,
                     progress: Progress | None = None) -> RankSensitivity:
    """Loss increase on ``config.n_batches`` batches for every candidate (layer, rank), one layer at a time.

    ``layers`` defaults to every Conv1d/Conv2d/Linear module; ``candidates`` overrides the rank ladder of the
    named layers. ``loss_fn(outputs, targets)`` returns a batch's mean loss (default cross-entropy).
    ``progress(done, total, description)`` is called after the baseline and after every evaluation. The model
    is evaluated in eval mode without gradients; its weights and train/eval flags are restored exactly, also
    when an evaluation fails.
    """
    started = time.perf_counter()
    config = config or SensitivityConfig()
    loss_fn = loss_fn or nn.functional.cross_entropy
    available = decomposable_layers(model)
    names = list(available) if layers is None else list(layers)
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise ModelError(f"layer(s) {missing or names} are not Conv1d/Conv2d/Linear modules of the model; "
                         f"candidates: {', '.join(available) or 'none'}")
    extra = sorted(set(candidates or {}) - set(names))
    if extra:
        raise ConfigError(f"candidates name layer(s) {extra} that are not being measured; layers: {', '.join(names)}")
    for name in names:
        _check_swappable(name, available[name])
    ladders = {}
    for name in names:
        shape = tuple(available[name].weight.shape)
        given = (candidates or {}).get(name)
        ladders[name] = rank_ladder(shape, config.method, config.ratios) if given is None else \
            _check_ranks(name, shape, given, config.method)
    total = 1 + sum(len(ladder) for ladder in ladders.values())
    device = next(iter(model.parameters())).device
    batches = _cache_batches(data, config.n_batches, config.batch_size, config.seed, device)
    flags = {module: module.training for module in model.modules()}
    done = 0
    try:
        model.eval()
        baseline = _mean_loss(model, batches, loss_fn)
        if not math.isfinite(baseline):
            raise DataError(f"the baseline loss is {baseline}; check the model and data before selecting ranks")
        done += 1
        if progress:
            progress(done, total, "baseline")
        results = []
        for name in names:
            module = available[name]
            rows = [RankCandidate(None, 0.0, 0.0)]
            for rank in ladders[name]:
                tic = time.perf_counter()
                rebuilt, error = reconstruct_weight(module.weight, rank, config)
                seconds = time.perf_counter() - tic
                loss = _loss_with_weight(model, module, rebuilt, batches, loss_fn)
                rows.append(RankCandidate(rank, loss - baseline, error, seconds))
                done += 1
                if progress:
                    progress(done, total, f"{name} rank {rank}")
            results.append(LayerSensitivity(name, type(module).__name__, tuple(module.weight.shape), rows))
    finally:
        for module, training in flags.items():
            module.train(training)
    weights = sum(available[name].weight.numel() for name in names)
    other = sum(p.numel() for p in model.parameters()) - weights
    return RankSensitivity(results, baseline, int(other), sum(int(b[0].shape[0]) for b in batches), config,
                           time.perf_counter() - started)


def _loss_with_weight(model: nn.Module, module: nn.Module, weight: torch.Tensor,
                      batches: list[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn) -> float:
    """Mean loss with ``module.weight`` temporarily set to ``weight`` (restored bit for bit afterwards)."""
    original = module.weight.detach().clone()
    try:
        with torch.no_grad():
            module.weight.copy_(weight)
        return _mean_loss(model, batches, loss_fn)
    finally:
        with torch.no_grad():
            module.weight.copy_(original)
