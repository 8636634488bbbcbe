"""Keep shift-add constants shift-add while fine-tuning, so the DSP count the knapsack chose survives training.

Under the Latency strategy (or reuse factor 1) every weight is a constant the synthesiser folds into the logic:
a product by a constant with few non-zero canonical-signed-digit (CSD) digits becomes one or two LUT adders,
only the others take a DSP (:mod:`tenfold.hardware.cost`). The knapsack prices each weight by its code *now*,
so it keeps many "free" small weights; fine-tuning then moves them to codes with more digits and they take DSPs
after all — a Latency model pruned to a 5% DSP budget came out of fine-tuning at 2-3x its target.

:class:`ShiftAddLock` stops that drift with a straight-through projection: while it is attached, the forward
pass sees every locked weight snapped to the nearest value of its fixed-point type with fewer CSD digits than
the DSP threshold, gradients reach the float weight unchanged (so a weight can still walk to another cheap
value), and when training ends the locked weights are written back snapped. Weights priced as DSP products are
left free by default: if one drifts to a cheap code, it trades a DSP for LUT adders. When the budget also caps
LUTs that trade breaks it (a jet MLP pruned to ``dsp<=0.05x,lut<=0.05x`` ended 35% over its LUT cap), so
``both_ways=True`` also keeps DSP products on codes with at least the threshold's digits (for weight types up to
20 bits, where the table of such codes stays small) and every cheap weight at its exact digit count (a zero
stays zero: a pruned-in-all-but-name weight that grows back costs an accumulation adder).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from tenfold.errors import ConfigError
from tenfold.hardware.arith import csd_digit_counts
from tenfold.hardware.cost import CostParams, weight_codes
from tenfold.hardware.fixed_point import FixedPoint
from tenfold.hardware.hls_config import HLSConfig, Strategy
from tenfold.hardware.layers import extract_layers
from tenfold.train.callbacks import Callback, TrainState

__all__ = ["ShiftAddLock", "cheap_codes", "dear_codes", "shift_add_lock", "snap_to_table"]

_MAX_TABLE = 2_000_000
DEAR_MAX_WIDTH = 20  # widest weight type whose DSP-product codes are tabulated (2^20 codes)


def cheap_codes(precision: FixedPoint, max_digits: int) -> np.ndarray:
    """Sorted integer codes of ``precision`` with at most ``max_digits`` non-zero CSD digits (0 included).

    Built from sums of up to ``max_digits`` signed powers of two (a CSD form with d digits is such a sum, and
    any such sum has a CSD form with at most d digits), then kept to the type's code range.
    """
    if max_digits < 0:
        raise ConfigError(f"max_digits must be >= 0, got {max_digits}")
    width = precision.width
    if (2 * width + 1) ** max_digits > _MAX_TABLE:
        raise ConfigError(f"a table of {width}-bit codes with up to {max_digits} CSD digits is too large; "
                          "lower csd_dsp_threshold or the weight width")
    powers = np.array([1 << i for i in range(width)], dtype=np.int64)
    signed = np.concatenate([powers, -powers])
    codes = np.zeros(1, dtype=np.int64)
    for _ in range(max_digits):
        codes = np.unique(np.concatenate([codes, (codes[:, None] + signed[None, :]).reshape(-1)]))
    codes = codes[(codes >= precision.min_code) & (codes <= precision.max_code)]
    return codes[csd_digit_counts(codes) <= max_digits]


def dear_codes(precision: FixedPoint, min_digits: int) -> np.ndarray:
    """Sorted integer codes of ``precision`` with at least ``min_digits`` non-zero CSD digits (the DSP products)."""
    if precision.width > DEAR_MAX_WIDTH:
        raise ConfigError(f"tabulating the DSP-product codes of a {precision.width}-bit type is too large "
                          f"(at most {DEAR_MAX_WIDTH} bits)")
    every = np.arange(precision.min_code, precision.max_code + 1, dtype=np.int64)
    return every[csd_digit_counts(every) >= min_digits]


def snap_to_table(values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Each value replaced by the nearest entry of the sorted 1-D ``table`` (ties go to the smaller entry)."""
    if table.numel() == 1:
        return table.expand_as(values).clone()
    index = torch.searchsorted(table, values.contiguous()).clamp(1, table.numel() - 1)
    low, high = table[index - 1], table[index]
    return torch.where(values - low <= high - values, low, high)


class ShiftAddLock(Callback):
    """Straight-through projection of chosen weights onto the codes of their cost class while training.

    ``locks`` maps a module to a list of (bool mask over its weight, sorted table of the values those weights may
    take); the masks do not overlap. A module pruned with :mod:`torch.nn.utils.prune` (``weight_orig`` and a mask
    hook that recomputes ``weight`` before every forward) gets a second hook that runs after the mask hook; a
    plain weight gets a :mod:`torch.nn.utils.parametrize` parametrization, removed (its snapped value kept) on
    release. Either way the optimiser keeps training the same float tensor.
    """

    def __init__(self, locks: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        self.locks = locks
        self._handles: list = []

    @property
    def n_locked(self) -> int:
        return int(sum(int(mask.sum()) for classes in self.locks.values() for mask, _ in classes))

    def on_train_begin(self, state: TrainState) -> None:
        self.attach()

    def on_train_end(self, state: TrainState) -> None:
        self.release()

    def attach(self) -> None:
        """Start projecting in every forward pass (idempotent)."""
        if self._handles:
            return
        for module, classes in self.locks.items():  # bound per module: a deep copy keeps working hooks
            if hasattr(module, "weight_orig"):
                self._handles.append(module.register_forward_pre_hook(partial(_project, classes=classes)))
            else:
                parametrize.register_parametrization(module, "weight", _Snap(classes))
                self._handles.append(module)

    def release(self) -> None:
        """Stop projecting and write the locked weights back snapped, so the model keeps the cheap codes."""
        for handle in self._handles:
            if isinstance(handle, nn.Module):
                parametrize.remove_parametrizations(handle, "weight", leave_parametrized=True)
            else:
                handle.remove()
        self._handles = []
        with torch.no_grad():
            for module, classes in self.locks.items():
                if not hasattr(module, "weight_orig"):  # the parametrization left the snapped value behind
                    continue
                target = module.weight_orig
                target.copy_(_snapped(target.detach(), classes))
                module.weight = module.weight_orig * module.weight_mask  # what the mask hook would compute


def _snapped(weight: torch.Tensor, classes) -> torch.Tensor:
    """``weight`` with each class's entries moved to the nearest value of that class's table."""
    out = weight
    for mask, table in classes:
        snapped = snap_to_table(weight, table.to(weight.device, weight.dtype))  # no-op: built in this dtype
        out = torch.where(mask.to(weight.device), snapped, out)
    return out


class _Snap(nn.Module):
    """Parametrization: locked entries snapped in the forward pass, identity gradient (straight through)."""

    def __init__(self, classes) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (_snapped(weight.detach(), self.classes) - weight.detach())


def _project(module: nn.Module, _inputs, *, classes) -> None:
    """Forward sees the locked weights snapped; the gradient passes straight through to the float weight."""
    weight = module.weight
    module.weight = weight + (_snapped(weight.detach(), classes) - weight.detach())


def shift_add_lock(model: nn.Module, input_shape: tuple[int, ...], config: HLSConfig,
                   params: CostParams | None = None, layers: Iterable[str] | None = None,
                   both_ways: bool = False) -> ShiftAddLock | None:
    """A lock for every folded layer (Latency strategy or reuse factor 1) whose weights are not all DSP products.

    A weight is locked when its current code has fewer CSD digits than ``params.csd_dsp_threshold`` — exactly the
    weights the hardware model prices without a DSP. Left alone: layers narrow enough that every product goes to
    LUTs, and layers whose weight is already a parametrization (decomposed layers). Returns None when nothing
    needs locking (e.g. the Resource strategy at a reuse factor > 1). ``both_ways`` keeps every weight's exact
    CSD digit count below the threshold (a zero stays zero, a power of two stays a power of two) and the DSP
    products on DSP-product codes (weight types up to 20 bits), so neither the DSP nor the LUT count of the
    weights moves while training; pass it when the budget caps LUTs.
    """
    params = params or CostParams()
    wanted = set(layers) if layers is not None else None
    modules = dict(model.named_modules())
    locks: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    data_precision = config.default.precision.result
    specs = extract_layers(model, input_shape)
    weighted = [spec.name for spec in specs if spec.has_weights]
    if wanted is not None and wanted - set(weighted):
        raise ConfigError(f"unknown layer(s) {sorted(wanted - set(weighted))}; weighted layers: {', '.join(weighted)}")
    for spec in specs:
        incoming, data_precision = data_precision, config.layer(spec.name).precision.result
        if not spec.has_weights or (wanted is not None and spec.name not in wanted):
            continue
        layer_config = config.layer(spec.name)
        folded = layer_config.strategy == Strategy.LATENCY or layer_config.reuse_factor == 1
        precision = layer_config.precision.weight
        if not folded or min(precision.width, incoming.width) <= params.lut_mult_max_bits:
            continue
        module = modules.get(spec.name)
        plain = isinstance(getattr(module, "_parameters", {}).get("weight"), nn.Parameter)
        if module is None or not (hasattr(module, "weight_orig") or plain) or parametrize.is_parametrized(module):
            continue  # e.g. a decomposed layer, whose weight is regenerated from factors
        dtype = module.weight.dtype  # tables are built once in the weight's dtype (exact up to 24-bit codes)
        codes = weight_codes(module.weight.detach(), precision)
        digits = csd_digit_counts(codes).reshape(module.weight.shape)
        cheap = digits < params.csd_dsp_threshold
        classes = []
        if both_ways:  # exact digit counts: a zero stays zero (no new accumulation adder), one adder stays one
            tabulated = cheap_codes(precision, params.csd_dsp_threshold - 1)
            for count in range(params.csd_dsp_threshold):
                members = digits == count
                if members.any():
                    table = tabulated[csd_digit_counts(tabulated) == count] * precision.lsb
                    classes.append((torch.from_numpy(members), torch.from_numpy(table).to(dtype)))
        elif cheap.any():
            table = torch.from_numpy(cheap_codes(precision, params.csd_dsp_threshold - 1) * precision.lsb).to(dtype)
            classes.append((torch.from_numpy(cheap), table))
        if both_ways and precision.width <= DEAR_MAX_WIDTH and not cheap.all():
            table = torch.from_numpy(dear_codes(precision, params.csd_dsp_threshold) * precision.lsb).to(dtype)
            if table.numel():
                classes.append((torch.from_numpy(~cheap), table))
        if classes:
            locks[module] = classes
    return ShiftAddLock(locks) if locks else None
