"""Post-training quantization: integer bits per layer from calibration ranges, fractional bits from the width.

Why per layer: one uniform `ap_fixed<8,3>` wastes bits where values are small (weights rarely exceed 1, so
3 integer bits leave only 5 for the fraction) and overflows where they are large (logits, unnormalised
sums). Measuring the values that reach every cast on a few calibration batches and giving each cast just
enough integer bits (plus a margin for unseen data) spends the remaining width on resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from tenfold.errors import ConfigError
from tenfold.hardware.fixed_point import FixedPoint, Overflow
from tenfold.hardware.hls_config import HLSConfig
from tenfold.quantize.calibrate import ValueRange, integer_bits_for, observe_ranges
from tenfold.quantize.quantized_model import INPUT, QuantizedModel, quantize_model

__all__ = ["PTQResult", "calibrated_config", "post_training_quantize", "widen_to_fit"]

EXACT_KINDS = ("weight", "bias")  # known exactly: no margin needed


@dataclass
class PTQResult:
    """The calibrated config, the model quantized with it and the ranges the choice was made from."""

    model: QuantizedModel
    config: HLSConfig
    ranges: dict[tuple[str, str], ValueRange]

    def precisions(self) -> dict[str, dict[str, str]]:
        """Chosen C++ types per layer and kind (input, weight, bias, accum, result)."""
        out: dict[str, dict[str, str]] = {}
        for site in self.model.quantizer_sites():
            out.setdefault(site.layer, {})[site.kind] = site.quantizer.precision.to_cpp()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"precisions": self.precisions(), "ranges": [r.to_dict() for r in self.ranges.values()],
                "hls_config": self.config.to_hls4ml()}


def _with_width(precision: FixedPoint, width: int | None) -> FixedPoint:
    if width is None or precision.int_type:
        return precision
    return dataclasses.replace(precision, width=int(width), saturation_bits=min(precision.saturation_bits, width))


def calibrated_config(config: HLSConfig, ranges: dict[tuple[str, str], ValueRange], *, width: int | None = None,
                      accum_width: int | None = None, margin: float = 0.1,
                      input_sources: dict[str, str | None] | None = None,
                      site_widths: dict[tuple[str, str], int] | None = None) -> HLSConfig:
    """A copy of `config` whose every observed cast gets the fewest integer bits holding its range.

    Weights and biases are held exactly; activations (input, accum, result) with `margin` headroom
    (0.1 = values 10% beyond the largest seen still fit). `width` sets the total bits of weights, biases,
    inputs and results (None keeps each type's width). Rounding, overflow mode and signedness stay as
    configured; an all-zero range keeps its type.

    Accumulators are sized so that nothing is lost before the result cast: fractional bits for exact
    products (input + weight fractional bits, and at least the bias's) when `accum_width` is None and
    `input_sources` (weighted layer -> layer whose result feeds it, see `QuantizedModel.input_sources`)
    says what the input type is; otherwise `accum_width` total bits. They always wrap (`AP_WRAP`): once the
    final sum fits, two's complement partial sums that overflow on the way come back, whereas a saturating
    accumulator would clip them for good (hls4ml saturates after every addition).

    `site_widths` gives individual casts, keyed (layer, kind), their own width (precision search uses it);
    an accumulator listed there keeps that width instead of the exact one.
    """
    if margin < 0:
        raise ConfigError(f"margin must be >= 0 (a fraction of the observed range), got {margin}")
    for name, value in (("width", width), ("accum_width", accum_width)):
        if value is not None and not 1 <= int(value) <= 64:
            raise ConfigError(f"{name} must be between 1 and 64 bits, got {value}")
    site_widths = site_widths or {}
    chosen: dict[str, dict[str, FixedPoint]] = {}
    for (layer, kind), seen in ranges.items():
        precision = _with_width(seen.precision, site_widths.get((layer, kind),
                                                                accum_width if kind == "accum" else width))
        if kind == "accum":
            precision = dataclasses.replace(precision, overflow=Overflow.AP_WRAP, saturation_bits=0)
        if precision.int_type:
            continue
        scale = 1.0 if kind in EXACT_KINDS else 1.0 + margin
        low, high = min(seen.low, 0.0) * scale, max(seen.high, 0.0) * scale
        try:
            integer = integer_bits_for(precision, low, high)
        except ConfigError as exc:
            raise ConfigError(f"layer '{layer}' {kind}: {exc}") from None
        chosen.setdefault(layer, {})[kind] = dataclasses.replace(precision, integer=integer)
    if accum_width is None:
        fixed = {layer for layer, kind in site_widths if kind == "accum"}
        _exact_accumulators(chosen, config, {k: v for k, v in (input_sources or {}).items() if k not in fixed})
    default = config.default
    if INPUT in chosen:
        default = dataclasses.replace(default, precision=dataclasses.replace(default.precision,
                                                                             result=chosen.pop(INPUT)["result"]))
    layers = dict(config.layers)
    for layer, kinds in chosen.items():
        base = config.layer(layer)
        layers[layer] = dataclasses.replace(base, precision=dataclasses.replace(base.precision, **kinds))
    return dataclasses.replace(config, default=default, layers=layers)


def _exact_accumulators(chosen: dict[str, dict[str, FixedPoint]], config: HLSConfig,
                        input_sources: dict[str, str | None]) -> None:
    """Widen each chosen accumulator to hold exact products: F = F_input + F_weight (and >= F_bias)."""
    for layer, kinds in chosen.items():
        source = input_sources.get(layer)
        if "accum" not in kinds or source is None:
            continue
        if source in chosen and "result" in chosen[source]:
            input_type = chosen[source]["result"]
        else:
            input_type = config.layer(source).precision.result if source != INPUT else config.default.precision.result
        weight = kinds.get("weight", config.layer(layer).precision.weight)
        bias = kinds.get("bias", config.layer(layer).precision.bias)
        accum = kinds["accum"]
        fractional = max(input_type.fractional + weight.fractional, bias.fractional)
        fractional = min(fractional, 64 - accum.integer)  # ap_fixed conversions here stop at 64 bits
        if accum.integer + fractional >= 1:
            kinds["accum"] = dataclasses.replace(accum, width=accum.integer + fractional)


def post_training_quantize(model: nn.Module, config: HLSConfig, calibration_data, *, width: int | None = None,
                           accum_width: int | None = None, margin: float = 0.1, max_batches: int | None = None,
                           activations: bool = True) -> PTQResult:
    """Calibrate `config`'s integer bits on `calibration_data` and quantize a copy of `model` with the result.

    `calibration_data` is a tensor of inputs, a dataset of (input, label) pairs or a DataLoader. Ranges are
    measured on the float model (all casts off), so every layer sees the values it would see unquantized.
    `model` is not changed.
    """
    quantized = quantize_model(model, config, activations=activations)
    quantized.quantization_enabled(False)
    ranges = observe_ranges(quantized, calibration_data, max_batches=max_batches)
    calibrated = calibrated_config(config, ranges, width=width, accum_width=accum_width, margin=margin,
                                   input_sources=quantized.input_sources())
    quantized.set_config(calibrated).quantization_enabled(True)
    return PTQResult(model=quantized, config=calibrated, ranges=ranges)


def widen_to_fit(model: nn.Module, config: HLSConfig, calibration_data, *, margin: float = 0.1,
                 max_batches: int | None = 8) -> HLSConfig:
    """`config` with the integer part of every type that cannot hold the values `model` produces on
    `calibration_data` widened: activations (input, accum, result) with `margin` headroom, weights and biases
    exactly. Widths and every type that fits stay.

    Unlike calibration this never narrows a type, so a chosen design keeps its cost; it only undoes overflows
    that training caused: logits grow as a model keeps training, and once they pass a result type's range
    (32 for ap_fixed<16,6>) they wrap: a LeNet trained three more epochs scored 88.8% in float but 85.1% in
    fixed point.
    """
    if margin < 0:
        raise ConfigError(f"margin must be >= 0 (a fraction of the observed range), got {margin}")
    quantized = quantize_model(model, config)
    quantized.quantization_enabled(False)
    ranges = observe_ranges(quantized, calibration_data, max_batches=max_batches)
    default, layers = config.default, dict(config.layers)
    for (layer, kind), seen in ranges.items():
        if seen.precision.int_type:
            continue
        scale = 1.0 if kind in EXACT_KINDS else 1.0 + margin
        low, high = min(seen.low, 0.0) * scale, max(seen.high, 0.0) * scale
        if seen.precision.min_value <= low and high <= seen.precision.max_value:
            continue
        integer = integer_bits_for(seen.precision, low, high)
        if integer <= seen.precision.integer:
            continue
        wider = dataclasses.replace(seen.precision, integer=integer)
        if layer == INPUT:
            default = dataclasses.replace(default, precision=dataclasses.replace(default.precision, result=wider))
            continue
        base = layers.get(layer, config.layer(layer))
        layers[layer] = dataclasses.replace(base, precision=dataclasses.replace(base.precision, **{kind: wider}))
    return dataclasses.replace(config, default=default, layers=layers)
