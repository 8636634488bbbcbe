"""What it costs to rebuild a weight tensor on chip from its quantized CP factors ("parameter reproduction").

The chip stores only the factor codes (N ROMs of I_n × R codes of B bits) and regenerates
W[i_0, ..., i_{N-1}] = Σ_r (Π_n code_n[i_n, r]) · 2^(shift_r) with a pipeline that produces ``parallelism`` (P)
weights per clock — the kernel :mod:`tenfold.export.hls_cp` writes:

* the product of the first N-1 codes of every rank-one term (the *prefix*, R multiplier chains of N-2
  multipliers) is shared by the P lanes, which differ only in the last mode's index (so P divides I_{N-1});
* each lane multiplies the R prefixes by its own code of the last mode (P·R multipliers), shifts each term by
  its constant power of two (wiring) and sums the R terms in an accumulator wide enough to be exact;
* the last factor ROM is split into P banks (cyclic partitioning), every ROM word holds a whole row (R codes).

Multipliers go to DSPs or LUTs and ROMs to BRAM18 or LUTRAM by the same rules and coefficients as
:mod:`tenfold.hardware.cost`, so the figures compare with what the layer would cost with stored weights.
Bit widths are exact bounds for symmetric codes (|code| <= 2^(B-1) - 1, what quantized CP-ALS produces).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tenfold.errors import ConfigError
from tenfold.hardware.arith import bram18_for_rom, dsps_per_product
from tenfold.hardware.cost import CostParams
from tenfold.hardware.devices import DEFAULT_DEVICE, Device, get_device
from tenfold.hardware.fixed_point import FixedPoint

__all__ = [
    "RegenerationCost",
    "accumulator_bits",
    "pipeline_depth",
    "product_bits",
    "regeneration_cost",
]

MAX_FACTOR_BITS = 53  # quantized CP keeps codes exact in float64


def _max_code(factor_bits: int) -> int:
    return (1 << (factor_bits - 1)) - 1


def product_bits(n_factors: int, factor_bits: int) -> int:
    """Signed width that holds the product of ``n_factors`` symmetric ``factor_bits``-bit codes exactly."""
    if n_factors < 1:
        raise ConfigError(f"a product needs at least one factor, got {n_factors}")
    return (_max_code(factor_bits) ** n_factors).bit_length() + 1


def accumulator_bits(n_modes: int, factor_bits: int, relative_shifts: Sequence[int]) -> int:
    """Signed width of Σ_r term_r · 2^(d_r) for N-code terms and shifts d_r >= 0: no sum can overflow it.

    |Σ| <= max_code^N · Σ_r 2^(d_r), so this is exact, not a rule of thumb.
    """
    if not relative_shifts:
        raise ConfigError("the accumulator needs at least one rank-one term (rank >= 1)")
    if min(relative_shifts) < 0:
        raise ConfigError(f"relative shifts must be >= 0 (measured from the smallest), got {list(relative_shifts)}")
    bound = _max_code(factor_bits) ** n_modes * sum(1 << int(d) for d in relative_shifts)
    return bound.bit_length() + 1


def pipeline_depth(n_modes: int, rank: int, params: CostParams | None = None) -> int:
    """Clock cycles one weight spends in the regeneration pipeline.

    One cycle reads the ROMs, one per multiplier level (N-2 prefix levels, one last-mode level), the adder
    tree over the R terms takes ceil(log2 R / adders per stage), and one more casts and writes the weight.
    """
    p = params or CostParams()
    adder_levels = math.ceil(math.log2(rank) / p.adders_per_stage) if rank > 1 else 0
    return 1 + max(n_modes - 2, 0) + 1 + adder_levels + 1


@dataclass
class RegenerationCost:
    """Resources, time and memory of regenerating one weight tensor from its CP factors."""

    shape: tuple[int, ...]
    rank: int
    factor_bits: int
    weight_precision: str
    parallelism: int
    device: str
    n_weights: int
    multipliers: int
    dsp_multipliers: int
    lut_multipliers: int
    dsp: int
    bram18: int
    lut: float
    lutram_lut: int
    accumulator_bits: int
    pipeline_depth: int
    cycles: int
    latency_ns: float
    factor_storage_bits: int
    factor_bytes: int
    weight_bytes: int
    bytes_saved: int
    compression: float
    products: list[dict[str, Any]] = field(default_factory=list)
    roms: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(s) for s in shape)
    if len(dims) < 2 or min(dims) < 1:
        raise ConfigError(f"shape must have at least 2 positive mode sizes (the decomposed tensor), got {shape}")
    return dims


def _check_parallelism(parallelism: int, last: int) -> int:
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
        raise ConfigError(f"parallelism must be a positive int (weights per clock), got {parallelism!r}")
    if last % parallelism:
        divisors = [d for d in range(1, last + 1) if last % d == 0]
        raise ConfigError(
            f"parallelism {parallelism} must divide the last mode size {last} (the lanes share the prefix of the "
            f"other modes); choose one of {divisors}, or decompose with a mode whose last size is larger "
            '(e.g. "cp3" merges the kernel modes)'
        )
    return parallelism


def _product_group(what: str, count: int, width_a: int, width_b: int, device: Device, p: CostParams) -> dict:
    """``count`` identical multipliers, mapped to LUTs or DSPs by cost.py's rule."""
    on_luts = min(width_a, width_b) <= p.lut_mult_max_bits
    dsp_each = 0 if on_luts else dsps_per_product(width_a, width_b, device.dsp_type)
    lut_each = p.lut_per_mult_bit2 * width_a * width_b if on_luts else 0.0
    return {"what": what, "count": count, "widths": (width_a, width_b), "on_luts": on_luts,
            "dsp": count * dsp_each, "lut": count * lut_each}


def _rom(what: str, banks: int, depth: int, width: int, p: CostParams) -> dict:
    """``banks`` ROMs of depth × width bits: BRAM18 above cost.py's threshold, LUTRAM (64 deep per LUT) below."""
    if depth * width >= p.rom_min_bram_bits:
        return {"what": what, "banks": banks, "depth": depth, "width": width,
                "bram18": banks * int(bram18_for_rom(depth, width)), "lutram_lut": 0}
    return {"what": what, "banks": banks, "depth": depth, "width": width, "bram18": 0,
            "lutram_lut": banks * math.ceil(depth / 64) * width}


def regeneration_cost(shape: Sequence[int], rank: int, factor_bits: int, weight_precision: FixedPoint | str,
                      parallelism: int = 1, device: str | Device = DEFAULT_DEVICE, *,
                      relative_shifts: Sequence[int] | None = None, params: CostParams | None = None,
                      clock_period_ns: float = 5.0) -> RegenerationCost:
    """Price regenerating a tensor of mode sizes ``shape`` (the decomposed tensor, e.g. (64, 64, 3, 3) for a
    "cp4" conv) from rank-``rank`` factors of ``factor_bits``-bit codes into ``weight_precision``.

    ``relative_shifts`` are the per-term shifts above the smallest (default all 0, i.e. one scale per factor);
    they only widen the accumulator. Memory figures compare the factor ROMs with the full tensor stored at
    ``weight_precision``; the shifts are constants wired into the adders and take no storage.
    """
    dims = _check_shape(shape)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"rank must be a positive int, got {rank!r}")
    if isinstance(factor_bits, bool) or not isinstance(factor_bits, int) or not 2 <= factor_bits <= MAX_FACTOR_BITS:
        raise ConfigError(f"factor_bits must be an int in 2..{MAX_FACTOR_BITS}, got {factor_bits!r}")
    precision = FixedPoint.parse(weight_precision) if isinstance(weight_precision, str) else weight_precision
    if not isinstance(precision, FixedPoint):
        raise ConfigError(f'weight_precision must be a FixedPoint or a string like "fixed<16,6>", got {precision!r}')
    lanes = _check_parallelism(parallelism, dims[-1])
    shifts = [0] * rank if relative_shifts is None else [int(s) for s in relative_shifts]
    if len(shifts) != rank:
        raise ConfigError(f"relative_shifts needs one entry per rank-one term ({rank}), got {len(shifts)}")
    found = get_device(device)
    p = params or CostParams()
    n_modes, b = len(dims), factor_bits

    products = [_product_group(f"prefix level {k}", rank, product_bits(k, b), b, found, p)
                for k in range(1, n_modes - 1)]
    products.append(_product_group("last mode", lanes * rank, product_bits(n_modes - 1, b), b, found, p))
    roms = [_rom(f"factor {n}", 1, dims[n], rank * b, p) for n in range(n_modes - 1)]
    roms.append(_rom(f"factor {n_modes - 1}", lanes, dims[-1] // lanes, rank * b, p))

    acc = accumulator_bits(n_modes, b, shifts)
    last = products[-1]
    absorbed = not last["on_luts"] and p.dsp_absorbs_accumulation and len(set(shifts)) == 1  # DSP cascade
    adder_lut = 0.0 if absorbed else p.lut_per_adder_bit * lanes * (rank - 1) * acc
    lutram = sum(r["lutram_lut"] for r in roms)
    lut = sum(g["lut"] for g in products) + adder_lut + lutram + p.lut_per_output_bit * lanes * precision.width

    n_weights = math.prod(dims)
    depth = pipeline_depth(n_modes, rank, p)
    cycles = n_weights // lanes - 1 + depth
    storage = sum(dims) * rank * b
    weight_bits = n_weights * precision.width
    factor_bytes, weight_bytes = math.ceil(storage / 8), math.ceil(weight_bits / 8)
    return RegenerationCost(
        shape=dims, rank=rank, factor_bits=b, weight_precision=precision.to_cpp(), parallelism=lanes,
        device=found.name, n_weights=n_weights,
        multipliers=sum(g["count"] for g in products),
        dsp_multipliers=sum(g["count"] for g in products if not g["on_luts"]),
        lut_multipliers=sum(g["count"] for g in products if g["on_luts"]),
        dsp=int(sum(g["dsp"] for g in products)), bram18=int(sum(r["bram18"] for r in roms)), lut=float(lut),
        lutram_lut=int(lutram), accumulator_bits=acc, pipeline_depth=depth, cycles=cycles,
        latency_ns=cycles * clock_period_ns, factor_storage_bits=storage, factor_bytes=factor_bytes,
        weight_bytes=weight_bytes, bytes_saved=weight_bytes - factor_bytes, compression=weight_bits / storage,
        products=products, roms=roms,
    )
