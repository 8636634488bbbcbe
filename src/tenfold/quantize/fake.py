"""Fake quantization: `FixedPoint.quantize` semantics in torch, with a straight-through gradient.

Why not call `FixedPoint.quantize` in the forward pass: it replays the ap_types C++ constructor bit by bit in
numpy on the CPU, which is the reference but too slow (and device-bound) to sit inside a training step. This
module reaches the same results with a handful of vectorised float64 tensor operations on any device, using
the rule `FixedPoint` documents and `tests/quantize/test_fake_quant.py` checks property by property:

* round `x * 2**F` to an integer code with the type's tie rule (on the two's complement value, so `AP_TRN`
  is floor), then handle overflow: wrap modulo 2**W, clip, or zero;
* `AP_WRAP` with saturation bits and `AP_WRAP_SM` patch the wrapped bit pattern the way `overflow_adjust` in
  `ap_fixed_base.h` does (forced MSBs; sign-magnitude folding);
* `ap_int` truncates toward zero (with the header's "small negative -> +1" quirk); `inf` wraps to 0 and
  saturates under the SAT modes; `NaN` is refused.

All codes of types up to 53 bits are exact float64 integers, so every step is exact. Wider types (54 to 64
bits, rare on FPGAs) are routed through `FixedPoint.quantize` itself, on the CPU.

Gradient (straight-through estimator): 1 wherever the value is representable; 0 where a saturating mode
(`AP_SAT`, `AP_SAT_SYM`, `AP_SAT_ZERO`) clipped or zeroed it, since nudging a clipped input does not change
the output. Wrapping modes pass gradient 1 everywhere: wrap-around is the identity plus jumps, whose
derivative is 1 almost everywhere, and a saturating type is the right tool when overflow must be trained
away.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tenfold.errors import ConfigError
from tenfold.hardware.fixed_point import FixedPoint, Overflow, Rounding

__all__ = ["FakeQuant", "fake_quantize", "fixed_point_codes", "quantize_tensor", "round_scaled"]

_EXACT_WIDTH = 53  # codes of wider types are not all exact float64 integers
_SATURATING = (Overflow.AP_SAT, Overflow.AP_SAT_SYM, Overflow.AP_SAT_ZERO)
_TINY = 2.0**-30  # stands in for a nonzero scaled value that underflowed to zero


def _as_precision(precision: FixedPoint | str) -> FixedPoint:
    if isinstance(precision, FixedPoint):
        return precision
    if isinstance(precision, str):
        return FixedPoint.parse(precision)
    raise ConfigError(f"a precision must be a FixedPoint or a string like 'ap_fixed<8,3>', got {precision!r}")


def round_scaled(scaled: torch.Tensor, rounding: Rounding) -> torch.Tensor:
    """Integer code of `scaled` under the tie rule (exact for float64; huge values are already integers)."""
    floor = torch.floor(scaled)
    if rounding is Rounding.AP_TRN:
        return floor
    if rounding is Rounding.AP_TRN_ZERO:
        return torch.trunc(scaled)
    # compare with floor + 0.5 (exact below 2**52) rather than forming scaled - floor, which can round;
    # from 2**52 on (and for +-inf) every double is an integer and nothing rounds
    has_fraction = torch.abs(scaled) < 2.0**52
    middle = floor + 0.5
    above, tie = has_fraction & (scaled > middle), has_fraction & (scaled == middle)
    if rounding is Rounding.AP_RND:
        up = above | tie
    elif rounding is Rounding.AP_RND_ZERO:
        up = above | (tie & (scaled < 0))
    elif rounding is Rounding.AP_RND_MIN_INF:
        up = above
    elif rounding is Rounding.AP_RND_INF:
        up = above | (tie & (scaled > 0))
    else:  # AP_RND_CONV: ties to even
        up = above | (tie & (torch.remainder(floor, 2) == 1))
    return floor + up.to(floor.dtype)


def _wrap_pattern(code: torch.Tensor, width: int) -> torch.Tensor:
    """The W-bit two's complement pattern of integer `code`, as a float in [0, 2**W); +-inf wraps to 0."""
    modulus = 2.0**width
    rest = torch.fmod(code, modulus)  # exact, sign of `code`
    rest = torch.where(rest < 0, rest + modulus, rest)
    return torch.where(torch.isinf(code), torch.zeros_like(rest), rest)


def _bit(value: torch.Tensor, index: int) -> torch.Tensor:
    """Bit `index` of the two's complement integer `value` (float), as a bool tensor; +-inf gives False."""
    shifted = torch.floor(value * 2.0**-index)
    return torch.remainder(torch.nan_to_num(shifted, nan=0.0, posinf=0.0, neginf=0.0), 2) == 1


def _adjust_wrap(pattern: torch.Tensor, floor: torch.Tensor, negative: torch.Tensor, precision: FixedPoint):
    """`overflow_adjust` of ap_fixed_base.h for AP_WRAP with saturation bits and for AP_WRAP_SM (patterns)."""
    w, n = precision.width, precision.saturation_bits
    msb = 2.0 ** (w - 1)
    ones = 2.0**w - 1

    def with_msb(value: torch.Tensor, bit: torch.Tensor) -> torch.Tensor:
        low = torch.fmod(value, msb)
        return torch.where(bit, low + msb, low)

    def with_saturation_field(value: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """Bits W-N .. W-2 become the complement of the sign (N > 1)."""
        if n <= 1:
            return value
        field_low = 2.0 ** (w - n)
        field = 2.0 ** (w - 1) - field_low
        below = torch.fmod(value, field_low)
        top = value - torch.fmod(value, msb)  # the MSB part
        return torch.where(sign, top + below, top + field + below)

    ro = pattern >= msb
    if precision.overflow is Overflow.AP_WRAP:
        if not precision.signed:
            top_bits = ones - (2.0 ** (w - n) - 1)
            low = torch.fmod(pattern, 2.0 ** (w - n))
            return low + top_bits
        return with_saturation_field(with_msb(pattern, negative), negative)
    # AP_WRAP_SM
    flipped = ones - pattern
    if n == 0:
        last_deleted = _bit(floor, w)
        return torch.where(last_deleted != ro, with_msb(flipped, last_deleted), pattern)
    if n == 1:
        out = torch.where(negative != ro, flipped, pattern)
    else:
        lowest_saturation_bit = _bit(pattern, w - n)
        out = torch.where(lowest_saturation_bit == negative, flipped, pattern)
        out = with_saturation_field(out, negative)
    return with_msb(out, negative)


def _fixed_codes(x: torch.Tensor, precision: FixedPoint) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(integer codes as float64, mask of elements a saturating mode clipped or None) for an ap_fixed type."""
    w, signed, o = precision.width, precision.signed, precision.overflow
    scaled = x * math.ldexp(1.0, precision.fractional)
    if precision.fractional < 0:  # only a down-scaling can underflow a nonzero value to zero
        scaled = torch.where((scaled == 0) & (x != 0), torch.copysign(torch.full_like(scaled, _TINY), x), scaled)
    code = round_scaled(scaled, precision.rounding)
    if o in _SATURATING:
        low, high = float(precision.min_code), float(precision.max_code)
        clipped = (code > high) | (code < low)
        if o is Overflow.AP_SAT_ZERO:
            return code.masked_fill(clipped, 0.0), clipped
        return torch.clamp(code, low, high), clipped
    modulus = 2.0**w
    lowest = -(2.0 ** (w - 1)) if signed else 0.0
    if o is Overflow.AP_WRAP and not precision.saturation_bits:  # plain two's complement wrap-around
        rest = torch.nan_to_num(torch.fmod(code, modulus), nan=0.0)  # exact; +-inf (NaN here) wraps to 0
        rest = torch.where(rest < lowest, rest + modulus, rest)
        return torch.where(rest >= lowest + modulus, rest - modulus, rest), None
    negative = x < 0
    overflow = (~negative) & (code > modulus + lowest - 1)
    underflow = negative & (code < lowest)
    pattern = _wrap_pattern(code, w)
    adjusted = _adjust_wrap(pattern, torch.floor(scaled), negative, precision)
    pattern = torch.where(overflow | underflow, adjusted, pattern)
    if signed:
        pattern = torch.where(pattern >= 2.0 ** (w - 1), pattern - modulus, pattern)
    return pattern, None


def _int_codes(x: torch.Tensor, precision: FixedPoint) -> torch.Tensor:
    """`ap_int_base(double)`: truncate toward zero, wrap; a negative input above -0.5 becomes +1 (header quirk)."""
    code = torch.trunc(x)
    code = torch.where((x < 0) & (x > -0.5), torch.ones_like(code), code)
    pattern = _wrap_pattern(code, precision.width)
    if precision.signed:
        pattern = torch.where(pattern >= 2.0 ** (precision.width - 1), pattern - 2.0**precision.width, pattern)
    return pattern


def fixed_point_codes(x: torch.Tensor, precision: FixedPoint | str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integer codes k (value = k * lsb) of `precision` for every element of `x`, and where saturation clipped.

    Returns a float64 tensor of exact integer codes on x's device and a bool mask that is True where a
    saturating overflow mode replaced the value (None for modes that never saturate). Raises `ConfigError`
    for NaN, like `FixedPoint.quantize`.
    """
    precision = _as_precision(precision)
    if precision.width > _EXACT_WIDTH:
        codes = precision.to_integer(x.detach().to("cpu", torch.float64))
        return torch.as_tensor(codes).to(torch.float64).to(x.device), None
    x64 = x.detach().to(torch.float64)
    if torch.isnan(x64.sum()) and torch.isnan(x64).any():  # the sum is a cheap first test
        raise ConfigError(
            f"cannot quantize NaN to {precision.to_cpp()}: the C++ conversion of NaN is undefined; "
            "check the model's weights and inputs for NaN"
        )
    if precision.int_type:
        codes, clipped = _int_codes(x64, precision), None
    else:
        codes, clipped = _fixed_codes(x64, precision)
    return codes + 0.0, clipped  # + 0.0 turns -0.0 into 0.0, as the C++ type has no negative zero


def quantize_tensor(x: torch.Tensor, precision: FixedPoint | str) -> torch.Tensor:
    """`precision.quantize(x)` computed in torch on x's device, in x's floating dtype; no gradient."""
    precision = _as_precision(precision)
    if not x.dtype.is_floating_point:
        x = x.to(torch.float64)
    if precision.width > _EXACT_WIDTH:
        return torch.as_tensor(precision.quantize(x.detach().to("cpu", torch.float64))).to(x.device, x.dtype)
    codes, _ = fixed_point_codes(x, precision)
    return (codes * math.ldexp(1.0, -precision.fractional)).to(x.dtype)


class _StraightThrough(torch.autograd.Function):
    """Forward: exact quantization. Backward: gradient 1, except 0 where a saturating mode clipped."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, precision: FixedPoint) -> torch.Tensor:
        codes, clipped = fixed_point_codes(x, precision)
        ctx.clipped = clipped is not None
        if clipped is not None:
            ctx.save_for_backward(clipped)
        return (codes * math.ldexp(1.0, -precision.fractional)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if not ctx.clipped:
            return grad_output, None
        (clipped,) = ctx.saved_tensors
        return grad_output.masked_fill(clipped, 0.0), None


def fake_quantize(x: torch.Tensor, precision: FixedPoint | str) -> torch.Tensor:
    """Quantize `x` exactly like `precision.quantize` in the forward pass; straight-through gradient backward."""
    precision = _as_precision(precision)
    if not x.dtype.is_floating_point:
        raise ConfigError(f"fake_quantize needs a floating-point tensor, got {x.dtype}")
    return _StraightThrough.apply(x, precision)


class FakeQuant(nn.Module):
    """`x -> precision.quantize(x)` with a straight-through gradient; a no-op while `enabled` is False.

    Holds no tensors: its precision comes from the HLS config, so a model's state_dict stays that of the
    float model plus whatever the owner records.
    """

    def __init__(self, precision: FixedPoint | str, *, enabled: bool = True) -> None:
        super().__init__()
        self.precision = _as_precision(precision)
        self.enabled = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.precision) if self.enabled else x

    def extra_repr(self) -> str:
        return self.precision.to_cpp() + ("" if self.enabled else ", disabled")
