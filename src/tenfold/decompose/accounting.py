"""What a decomposed layer stores, what it costs to regenerate on chip, and what it saves in DRAM traffic.

Nekooei & Safari's chip keeps only the fixed-point factors of each layer and rebuilds the weights from them.
These pure functions count, for one weight shape, method and rank:

* parameters and bits stored before (``weight_bits`` per weight) and after (``factor_bits`` per factor or core
  entry, plus the power-of-two shifts the scale mode needs, ``scale_bits`` each);
* multiplications to regenerate the full weight: the naive per-element count ``(N-1)·R·numel`` and the
  count when partial Khatri-Rao products are reused — once in the cheapest mode order, and once in the order
  hls4ml streams weights to its multipliers (out, kernel…, in), which is what a streaming kernel does: it
  keeps the product of the outer factors' rows in registers and spends R multiplications per weight;
* external-memory bytes per inference when the weights would otherwise be streamed from DRAM.

Methods: "cp4" (every mode), "cp3" (kernel modes merged), "tucker2" (output/input channel modes) — see
:func:`tenfold.decompose.cp_reshape` and :func:`tenfold.decompose.tucker2`. A 2-D (Linear) weight under
"cp3"/"cp4" is a plain rank-R matrix factorisation. Rank ``None`` means the layer is kept as it is.

:func:`regenerated_layer_resources` turns an account into a first-order FPGA resource vector (DSP, BRAM18,
LUT, FF) for a layer whose weights are regenerated while they stream into its multipliers; it is an
estimate built from the cost model's coefficients, not calibrated against synthesis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.arith import bram18_for_rom, dsps_per_product
from tenfold.hardware.cost import CostParams, LayerCost
from tenfold.hardware.devices import Device

__all__ = [
    "DECOMPOSABLE",
    "METHODS",
    "LayerAccount",
    "ModelAccount",
    "account_layer",
    "account_model",
    "accounting_method",
    "decomposable_layers",
    "decomposed_shape",
    "khatri_rao_multiplications",
    "regenerated_layer_resources",
    "tucker2_ranks",
]

METHODS = ("cp4", "cp3", "tucker2")
LAYER_METHODS = {"cp": "cp4", "cp4": "cp4", "cp3": "cp3", "tucker2": "tucker2"}
DECOMPOSABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
_SCALES = ("per_factor", "per_component_pow2", "none")

Rank = int | tuple[int, int] | None


def accounting_method(method: str) -> str:
    """The accounting/sensitivity name of a layer method: layers say "cp" for CP over every mode, accounting
    and sensitivity say "cp4" (to set it apart from "cp3"); "cp3" and "tucker2" are the same in both."""
    if method not in LAYER_METHODS:
        raise ConfigError(f"decomposition method must be one of cp, cp3, tucker2, got {method!r}")
    return LAYER_METHODS[method]


def decomposed_shape(shape: Sequence[int], method: str) -> tuple[int, ...]:
    """Shape of the tensor that is decomposed (what ``cp_reshape`` gives for CP; the weight for Tucker-2)."""
    shape = _check_shape(shape)
    method = _check_method(method)
    if method == "cp3" and len(shape) > 3:
        return (shape[0], shape[1], math.prod(shape[2:]))
    return shape


def khatri_rao_multiplications(sizes: Sequence[int], rank: int, order: Sequence[int] | None = None) -> int:
    """Multiplications to build a CP tensor by growing Khatri-Rao products in ``order`` (default: as given).

    Step k multiplies every row of the product of the first k-1 modes with every row of mode k: R·∏ sizes so
    far. The last step is R·numel; visiting small modes first makes the earlier steps cheapest.
    """
    order = list(range(len(sizes))) if order is None else list(order)
    total, prefix = 0, 1
    for step, mode in enumerate(order):
        prefix *= int(sizes[mode])
        if step > 0:
            total += rank * prefix
    return total


@dataclass(frozen=True)
class LayerAccount:
    """Storage, regeneration work and DRAM traffic of one layer weight, before and after decomposition.

    ``params_*`` count weight entries only (biases are stored either way; :class:`ModelAccount` adds them).
    ``multiplications_stream`` is what a streaming regeneration kernel spends (partial products of the outer
    modes reused, hls4ml's weight order); ``multiplications_reuse`` is the cheapest mode order,
    ``multiplications_naive`` recomputes every rank-one term per element. ``additions`` is for the stream order.
    """

    name: str
    shape: tuple[int, ...]
    method: str  # "keep" or one of METHODS
    rank: Rank
    stored_shapes: tuple[tuple[int, ...], ...]  # factor matrices (and the Tucker core) kept on chip
    weight_bits: int
    factor_bits: int
    scale: str
    scale_bits: int
    params_before: int
    params_after: int
    scale_values: int  # power-of-two shift amounts stored (one per layer, per component, or none)
    multiplications_naive: int
    multiplications_reuse: int
    multiplications_stream: int
    additions: int

    @property
    def decomposed(self) -> bool:
        return self.method != "keep"

    @property
    def bits_before(self) -> int:
        return self.params_before * self.weight_bits

    @property
    def bits_after(self) -> int:
        if not self.decomposed:
            return self.bits_before
        return self.params_after * self.factor_bits + self.scale_values * self.scale_bits

    @property
    def compression(self) -> float:
        """Stored parameters before / after."""
        return self.params_before / self.params_after

    @property
    def bit_compression(self) -> float:
        return self.bits_before / self.bits_after

    @property
    def dram_bytes_before(self) -> int:
        """Bytes read from external memory per inference when the full weight is streamed in (packed)."""
        return -(-self.bits_before // 8)

    @property
    def dram_bytes_after(self) -> int:
        """Bytes read per inference when only the factors are streamed and the weight is rebuilt on chip."""
        return -(-self.bits_after // 8)

    @property
    def dram_bytes_saved(self) -> int:
        return self.dram_bytes_before - self.dram_bytes_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "method": self.method,
            "rank": list(self.rank) if isinstance(self.rank, tuple) else self.rank,
            "stored_shapes": [list(s) for s in self.stored_shapes],
            "weight_bits": self.weight_bits,
            "factor_bits": self.factor_bits,
            "scale": self.scale,
            "scale_bits": self.scale_bits,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "scale_values": self.scale_values,
            "bits_before": self.bits_before,
            "bits_after": self.bits_after,
            "compression": self.compression,
            "bit_compression": self.bit_compression,
            "multiplications_naive": self.multiplications_naive,
            "multiplications_reuse": self.multiplications_reuse,
            "multiplications_stream": self.multiplications_stream,
            "additions": self.additions,
            "dram_bytes_before": self.dram_bytes_before,
            "dram_bytes_after": self.dram_bytes_after,
            "dram_bytes_saved": self.dram_bytes_saved,
        }


def account_layer(shape: Sequence[int], method: str = "cp4", rank: Rank = None, *, name: str = "",
                  factor_bits: int = 8, weight_bits: int = 16, scale: str = "per_factor",
                  scale_bits: int = 8) -> LayerAccount:
    """Account one layer weight of ``shape`` (out, in, kernel…) decomposed by ``method`` at ``rank``.

    ``rank``: an int for CP; for Tucker-2 an int r (→ (min(r, out), min(r, in))) or (r_out, r_in); None keeps
    the layer. ``weight_bits`` is the width the undecomposed weights would be stored at (hls4ml's default
    ap_fixed<16,6> → 16), ``factor_bits`` the factor type's width, ``scale_bits`` the width of one stored shift.
    """
    shape = _check_shape(shape)
    method = _check_method(method)
    factor_bits = _positive_int(factor_bits, "factor_bits")
    weight_bits = _positive_int(weight_bits, "weight_bits")
    scale_bits = _positive_int(scale_bits, "scale_bits", minimum=0)
    if scale not in _SCALES:
        raise ConfigError(f"scale must be one of {', '.join(_SCALES)}; got {scale!r}")
    numel = math.prod(shape)
    common = {"name": name, "shape": shape, "weight_bits": weight_bits, "factor_bits": factor_bits,
              "scale": scale, "scale_bits": scale_bits, "params_before": numel}
    if rank is None:
        return LayerAccount(method="keep", rank=None, stored_shapes=(shape,), params_after=numel, scale_values=0,
                            multiplications_naive=0, multiplications_reuse=0, multiplications_stream=0, additions=0,
                            **common)
    if method == "tucker2":
        return _account_tucker2(shape, rank, common)
    return _account_cp(shape, method, rank, common)


def _account_cp(shape: tuple[int, ...], method: str, rank: Rank, common: dict[str, Any]) -> LayerAccount:
    rank = _positive_int(rank, "CP rank")
    sizes = decomposed_shape(shape, method)
    numel = math.prod(sizes)
    ndim = len(sizes)
    stream = [0, *range(2, ndim), 1]  # hls4ml streams (out, kernel…, in): input channels innermost
    cheapest = sorted(range(ndim), key=lambda m: sizes[m])
    scale_values = {"per_factor": 1, "per_component_pow2": rank, "none": 0}[common["scale"]]
    return LayerAccount(
        method=method, rank=rank, stored_shapes=tuple((s, rank) for s in sizes),
        params_after=rank * sum(sizes), scale_values=scale_values,
        multiplications_naive=(ndim - 1) * rank * numel,
        multiplications_reuse=khatri_rao_multiplications(sizes, rank, cheapest),
        multiplications_stream=khatri_rao_multiplications(sizes, rank, stream),
        additions=(rank - 1) * numel, **common,
    )


def _account_tucker2(shape: tuple[int, ...], rank: Rank, common: dict[str, Any]) -> LayerAccount:
    r_out, r_in = tucker2_ranks(shape, rank)
    out_ch, in_ch = shape[0], shape[1]
    kernel = math.prod(shape[2:])
    numel = math.prod(shape)
    # stream order: for each output channel o, t[o] = U_out[o] · core (r_out·r_in·K products), then
    # W[o, k, i] = Σ_b t[o, b, k] · U_in[i, b] (r_in per weight)
    out_first = out_ch * r_out * r_in * kernel + numel * r_in
    in_first = in_ch * r_out * r_in * kernel + numel * r_out
    scale_values = {"per_factor": 1, "per_component_pow2": r_out + r_in, "none": 0}[common["scale"]]
    return LayerAccount(
        method="tucker2", rank=(r_out, r_in),
        stored_shapes=((out_ch, r_out), (r_out, r_in, *shape[2:]), (in_ch, r_in)),
        params_after=out_ch * r_out + r_out * r_in * kernel + in_ch * r_in, scale_values=scale_values,
        multiplications_naive=2 * r_out * r_in * numel,
        multiplications_reuse=min(out_first, in_first),
        multiplications_stream=out_first,
        additions=out_ch * r_in * kernel * (r_out - 1) + numel * (r_in - 1),
        **common,
    )


def tucker2_ranks(shape: Sequence[int], rank: Rank) -> tuple[int, int]:
    """(r_out, r_in) from an int (clipped to the channel counts) or a pair."""
    if isinstance(rank, tuple | list):
        if len(rank) != 2:
            raise ConfigError(f"Tucker-2 rank must be an int or (r_out, r_in), got {rank!r}")
        r_out, r_in = (_positive_int(r, "Tucker-2 rank") for r in rank)
    else:
        r = _positive_int(rank, "Tucker-2 rank")
        r_out, r_in = min(r, shape[0]), min(r, shape[1])
    if r_out > shape[0] or r_in > shape[1]:
        raise ConfigError(f"Tucker-2 ranks ({r_out}, {r_in}) exceed the channel counts ({shape[0]}, {shape[1]}) "
                          f"of a weight of shape {tuple(shape)}")
    return r_out, r_in


@dataclass
class ModelAccount:
    """Accounts of a model's decomposable layers plus the parameters outside them (biases, norms, …).

    ``other_params`` are stored unchanged at ``other_bits_each`` bits; ``compression`` is over the accounted
    weights only, ``model_compression`` over every parameter of the model.
    """

    layers: list[LayerAccount]
    other_params: int = 0
    other_bits_each: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    def _sum(self, attribute: str) -> int:
        return int(sum(getattr(layer, attribute) for layer in self.layers))

    @property
    def params_before(self) -> int:
        return self._sum("params_before")

    @property
    def params_after(self) -> int:
        return self._sum("params_after")

    @property
    def bits_before(self) -> int:
        return self._sum("bits_before")

    @property
    def bits_after(self) -> int:
        return self._sum("bits_after")

    @property
    def model_params_before(self) -> int:
        return self.params_before + self.other_params

    @property
    def model_params_after(self) -> int:
        return self.params_after + self.other_params

    @property
    def compression(self) -> float:
        return self.params_before / self.params_after if self.params_after else math.inf

    @property
    def model_compression(self) -> float:
        return self.model_params_before / self.model_params_after if self.model_params_after else math.inf

    @property
    def bit_compression(self) -> float:
        return self.bits_before / self.bits_after if self.bits_after else math.inf

    @property
    def dram_bytes_before(self) -> int:
        return self._sum("dram_bytes_before")

    @property
    def dram_bytes_after(self) -> int:
        return self._sum("dram_bytes_after")

    @property
    def multiplications_stream(self) -> int:
        return self._sum("multiplications_stream")

    def layer(self, name: str) -> LayerAccount:
        for account in self.layers:
            if account.name == name:
                return account
        raise ModelError(f"no accounted layer {name!r}; layers: {', '.join(a.name for a in self.layers)}")

    def to_dict(self) -> dict[str, Any]:
        totals = {key: getattr(self, key) for key in (
            "params_before", "params_after", "bits_before", "bits_after", "model_params_before",
            "model_params_after", "compression", "model_compression", "bit_compression", "dram_bytes_before",
            "dram_bytes_after", "multiplications_stream")}
        totals["dram_bytes_saved"] = self.dram_bytes_before - self.dram_bytes_after
        totals["multiplications_naive"] = self._sum("multiplications_naive")
        totals["multiplications_reuse"] = self._sum("multiplications_reuse")
        return {"totals": totals, "other_params": self.other_params, "other_bits_each": self.other_bits_each,
                "layers": [layer.to_dict() for layer in self.layers], **self.extra}


def decomposable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv1d/Conv2d/Linear modules by their path in ``model`` (the layers a rank can be chosen for)."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return {name: module for name, module in model.named_modules() if isinstance(module, DECOMPOSABLE)}


def account_model(model: nn.Module, ranks: Mapping[str, Rank] | None = None, *, method: str = "cp4",
                  factor_bits: int = 8, weight_bits: int = 16, scale: str = "per_factor",
                  scale_bits: int = 8) -> ModelAccount:
    """Account every Conv1d/Conv2d/Linear weight of ``model``; layers missing from ``ranks`` are kept."""
    layers = decomposable_layers(model)
    ranks = dict(ranks or {})
    unknown = sorted(set(ranks) - set(layers))
    if unknown:
        raise ModelError(f"ranks name layer(s) {unknown} that are not Conv1d/Conv2d/Linear modules of the model; "
                         f"decomposable layers: {', '.join(layers) or 'none'}")
    accounts = [account_layer(tuple(module.weight.shape), method, ranks.get(name), name=name,
                              factor_bits=factor_bits, weight_bits=weight_bits, scale=scale, scale_bits=scale_bits)
                for name, module in layers.items()]
    weights = sum(a.params_before for a in accounts)
    total = sum(p.numel() for p in model.parameters())
    return ModelAccount(accounts, other_params=int(total - weights), other_bits_each=weight_bits)


# ---------------------------------------------------------------------------------------------- hardware


def regenerated_layer_resources(account: LayerAccount, baseline: LayerCost, *, weight_width: int, data_width: int,
                                device: Device, params: CostParams | None = None) -> np.ndarray:
    """(DSP, BRAM18, LUT, FF) of a layer whose weights are rebuilt from factors as they stream in.

    First-order model on top of the baseline ``LayerCost`` from :func:`tenfold.hardware.estimate`:

    * the layer consumes ``ceil(numel / ReuseFactor)`` weights per clock; regenerated weights are variables,
      so a layer that had its constants folded (Latency strategy or R = 1) needs that many general
      ``weight_width × data_width`` multipliers per kernel instance instead;
    * the weight ROM (the baseline's BRAM18, or LUTRAM below the ROM threshold) is replaced by a ROM of the
      factor codes, one row of R codes per read;
    * the regenerator, shared by all kernel instances, needs ``multiplications_stream`` multiplications
      per full weight, i.e. that share of them per clock, each a product of a partial product (at most
      ``weight_width`` bits) by a factor entry; narrow ones go to LUTs like the cost model's; its adders
      cost LUTs per bit.

    Not calibrated against synthesis; use it to compare ranks, not as a final report.
    """
    if not account.decomposed:
        return baseline.resources()
    p = params or CostParams()
    numel = account.params_before
    rf = max(int(baseline.reuse_factor), 1)
    lanes = -(-numel // rf)
    instances = int(baseline.details.get("instances", 1))
    dsp, _, lut, _ = (float(v) for v in baseline.resources())
    lut_before = lut
    folded = bool(baseline.details.get("folded_constants", rf == 1))
    if folded:  # constants become variables: general multipliers for every weight lane
        products = lanes * instances
        if min(weight_width, data_width) <= p.lut_mult_max_bits:
            dsp = 0.0
            lut += products * p.lut_per_mult_bit2 * weight_width * data_width
        else:
            dsp = float(products * dsps_per_product(weight_width, data_width, device.dsp_type))
    elif baseline.bram18 == 0:  # the weight ROM was in LUTRAM: it goes away
        active = int(baseline.details.get("active_multipliers", lanes))
        lut -= math.ceil(rf / 64) * active * weight_width * instances
    # factor ROM
    row_codes = account.rank if isinstance(account.rank, int) else max(account.rank)  # type: ignore[arg-type]
    width = row_codes * account.factor_bits
    depth = -(-account.params_after // row_codes)
    bram = 0.0
    if account.params_after * account.factor_bits >= p.rom_min_bram_bits:
        bram = float(bram18_for_rom(depth, width))
    else:
        lut += math.ceil(depth / 64) * width
    # regenerator
    levels = len(account.stored_shapes) - 1
    partial = min(levels * account.factor_bits, weight_width)
    multipliers = -(-account.multiplications_stream * lanes // numel)
    adders = -(-account.additions * lanes // numel)
    if min(partial, account.factor_bits) <= p.lut_mult_max_bits:
        lut += multipliers * p.lut_per_mult_bit2 * partial * account.factor_bits
    else:
        dsp += multipliers * dsps_per_product(partial, account.factor_bits, device.dsp_type)
    lut += adders * p.lut_per_adder_bit * weight_width
    lut = max(lut, 0.0)
    ff = float(baseline.ff) + p.ff_per_lut * (lut - lut_before) + p.ff_per_register_bit * lanes * weight_width
    return np.array([dsp, bram, lut, max(ff, 0.0)], dtype=float)


# ---------------------------------------------------------------------------------------------- checks


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ModelError(f"a weight shape is a sequence of ints (out, in, kernel…), got {shape!r}") from None
    if len(out) < 2 or any(s < 1 for s in out):
        raise ModelError(f"a layer weight has shape (out, in, kernel…) with positive sizes, got {out}")
    return out


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"decomposition method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def _positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
