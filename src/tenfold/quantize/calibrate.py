"""Calibration: the range of values reaching every fixed-point cast, and which casts would overflow.

Post-training quantization picks integer bits from these ranges; QAT and the command line refuse a wrapping
type that overflows on calibration data, because two's complement wrap-around turns a large activation
into a large one of the opposite sign and nothing downstream recovers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from tenfold.errors import ConfigError, DataError
from tenfold.hardware.fixed_point import FixedPoint, Overflow
from tenfold.quantize.fake import round_scaled
from tenfold.quantize.quantized_model import QuantizedModel

__all__ = ["PrecisionOverflowError", "ValueRange", "find_overflows", "integer_bits_for", "observe_ranges",
           "overflows", "raise_on_overflow"]

WRAPPING = (Overflow.AP_WRAP, Overflow.AP_WRAP_SM)


class PrecisionOverflowError(ConfigError):
    """A wrapping fixed-point type is too narrow for the values that reach it."""


@dataclass
class ValueRange:
    """Smallest and largest value that reached one cast (layer, kind) over the calibration data."""

    layer: str
    kind: str
    low: float
    high: float
    precision: FixedPoint

    @property
    def max_abs(self) -> float:
        return max(abs(self.low), abs(self.high))

    def to_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "kind": self.kind, "low": self.low, "high": self.high,
                "precision": self.precision.to_cpp()}


def _batches(data: Dataset | DataLoader | torch.Tensor | Iterable, batch_size: int) -> Iterable[torch.Tensor]:
    """Input batches from a tensor, a dataset of (x, y) pairs, or a loader."""
    if isinstance(data, torch.Tensor):
        yield from data.split(batch_size)
        return
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    for batch in data:
        yield batch[0] if isinstance(batch, list | tuple) else batch


@torch.no_grad()
def observe_ranges(model: QuantizedModel, data, *, max_batches: int | None = None,
                   batch_size: int = 256) -> dict[tuple[str, str], ValueRange]:
    """Min/max of the values entering each cast of `model`, keyed by (layer, kind), in execution order.

    Casts stay as they are: disable them first (`model.quantization_enabled(False)`) for float ranges.
    """
    sites = model.quantizer_sites()
    found: dict[tuple[str, str], list[float]] = {}
    handles = []
    for site in sites:
        key = (site.layer, site.kind)

        def record(module, inputs, *, _key=key) -> None:
            value = inputs[0].detach()
            if value.numel() == 0:
                return
            low, high = float(value.min()), float(value.max())
            if math.isnan(low) or math.isnan(high):
                raise ConfigError(f"layer '{_key[0]}' produced NaN during calibration; check the model and data")
            seen = found.setdefault(_key, [low, high])
            seen[0], seen[1] = min(seen[0], low), max(seen[1], high)

        handles.append(site.quantizer.register_forward_pre_hook(record))
    was_training = model.training
    model.eval()
    try:
        count = 0
        for count, inputs in enumerate(_batches(data, batch_size), start=1):
            try:
                model(inputs)
            except RuntimeError as exc:  # wrong input shape or dtype: say so, not torch's internals
                raise DataError(f"the calibration data does not fit the model: inputs of shape "
                                f"{tuple(inputs.shape)} gave '{str(exc).splitlines()[0]}'; pass inputs shaped like "
                                "the model's training data") from None
            if max_batches is not None and count >= max_batches:
                break
        if count == 0:
            raise ConfigError("the calibration data is empty; pass at least one batch of inputs")
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {(s.layer, s.kind): ValueRange(s.layer, s.kind, *found[(s.layer, s.kind)], s.quantizer.precision)
            for s in sites if (s.layer, s.kind) in found}


def overflows(precision: FixedPoint, low: float, high: float) -> bool:
    """True if rounding `low` or `high` to `precision` leaves its range (before wrap-around or saturation)."""
    if precision.int_type:
        return not (precision.min_value <= math.trunc(low) and math.trunc(high) <= precision.max_value)
    scale = math.ldexp(1.0, precision.fractional)
    codes = round_scaled(torch.tensor([low * scale, high * scale], dtype=torch.float64), precision.rounding)
    lowest = -(2 ** (precision.width - 1)) if precision.signed else 0
    return bool(codes[0] < lowest or codes[1] > (1 << (precision.width - precision.signed)) - 1)


def integer_bits_for(precision: FixedPoint, low: float, high: float, *, max_integer: int = 128) -> int:
    """Fewest integer bits that hold [low, high] at `precision`'s width, signedness and rounding."""
    if not precision.signed and low < 0 and _rounds_below_zero(precision, low):
        raise ConfigError(
            f"the unsigned type {precision.to_cpp()} cannot hold negative values (down to {low:.4g}); "
            "use a signed type"
        )
    magnitude = max(abs(low), abs(high))
    if magnitude == 0:
        return precision.integer
    start = max(math.floor(math.log2(magnitude)) - 1, -precision.width - 60)
    for integer in range(start, max_integer + 1):
        candidate = FixedPoint(precision.width, integer, precision.signed, precision.rounding, precision.overflow,
                               precision.saturation_bits)
        if not overflows(candidate, low, high):
            return integer
    raise ConfigError(f"no integer bit count up to {max_integer} holds values in [{low:.4g}, {high:.4g}]")


def _rounds_below_zero(precision: FixedPoint, low: float) -> bool:
    code = round_scaled(torch.tensor([low * math.ldexp(1.0, precision.fractional)], dtype=torch.float64),
                  precision.rounding)
    return bool(code[0] < 0)


def find_overflows(model: QuantizedModel, data, *, max_batches: int | None = 8,
                   wrapping_only: bool = True) -> list[ValueRange]:
    """Casts whose type cannot hold the values reaching them on `data`, in execution order.

    With `wrapping_only` (the default) saturating types are skipped: clipping is their documented job.
    """
    ranges = observe_ranges(model, data, max_batches=max_batches)
    return [r for r in ranges.values()
            if (r.precision.overflow in WRAPPING or not wrapping_only) and overflows(r.precision, r.low, r.high)]


def overflow_message(found: ValueRange) -> str:
    """One sentence naming the layer, the values, the type and three ways out."""
    p = found.precision
    try:
        needed = integer_bits_for(p, found.low, found.high)
        wider = FixedPoint(p.width, needed, p.signed, p.rounding, p.overflow, p.saturation_bits).to_cpp()
        more = f"give it at least {needed} integer bits (e.g. {wider})"
    except ConfigError as exc:
        more = str(exc)
    saturating = FixedPoint(p.width, p.integer, p.signed, p.rounding, Overflow.AP_SAT).to_cpp()
    where = "the model input" if found.layer == "input" else f"layer '{found.layer}' {found.kind}"
    return (f"{where} overflows {p.to_cpp()} on the calibration data: values reach [{found.low:.4g}, "
            f"{found.high:.4g}] but the type holds [{p.min_value:.4g}, {p.max_value:.4g}] and wraps around; "
            f"{more}, use a saturating type ({saturating}), or let post-training quantization choose the "
            "integer bits per layer (tenfold quantize --method ptq)")


def raise_on_overflow(model: QuantizedModel, data, *, max_batches: int | None = 8) -> None:
    """Raise `PrecisionOverflowError` for the first wrapping cast that overflows on `data`."""
    found = find_overflows(model, data, max_batches=max_batches)
    if found:
        others = f" ({len(found) - 1} more cast(s) overflow after it)" if len(found) > 1 else ""
        raise PrecisionOverflowError(overflow_message(found[0]) + others)
