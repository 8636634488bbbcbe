"""Per-layer and per-model FPGA cost (DSP, BRAM18, LUT, FF, latency, II) the way hls4ml builds layers.

What the model encodes (see ../shared/DESIGN.md and hls4ml's nnet_dense_*.h):
- Constant folding: with the Latency strategy (and any strategy at ReuseFactor 1) weights are constants in
  the logic. A zero weight costs nothing; a weight whose fixed-point code has few non-zero canonical-signed
  digits becomes shift-adds in LUTs; only "complex" constants take a DSP. The digit threshold is calibrated.
- ROM strategies (Resource / resource_unrolled at ReuseFactor R > 1): weights sit in a ROM of depth R and
  width (multipliers × weight bits). Multiplier j handles the R consecutive weights W.flatten()[jR:(j+1)R]
  (hls4ml's transposed layout = PyTorch's (out, in) order); it and its ROM lane vanish only if all R are zero.
- Multiplier width: products narrower than the LUT threshold go to LUTs, wider than the DSP ports take
  several DSPs (27×18 on DSP48E2, 25×18 on DSP48E1).
- Conv layers reuse one kernel instance over the output positions (io_parallel, ParallelizationFactor P
  gives P instances) or stream pixels (io_stream); latency follows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.arith import bram18_for_rom, csd_digit_counts, dsps_per_product
from tenfold.hardware.devices import Device, get_device
from tenfold.hardware.fixed_point import FixedPoint
from tenfold.hardware.hls_config import HLSConfig, IOType, LayerConfig, Strategy, check_reuse_factor
from tenfold.hardware.layers import LayerSpec

RESOURCE_NAMES = ("dsp", "bram18", "lut", "ff")
# activations hls4ml implements with a lookup table (1024 entries of ap_fixed<18,8> by default)
TABLE_ACTIVATIONS = {"Sigmoid", "Tanh", "ELU", "SELU", "Softmax", "Softplus", "Softsign", "SiLU", "GELU"}


@dataclass
class CostParams:
    """Coefficients of the cost model.

    The defaults are the fit of `bench/calibration.py` on hls4ml's synthesis baselines (Vivado/Vitis HLS,
    `../shared/data/hls4ml-synthesis`); coefficients those rows cannot constrain (LUT multipliers, Softmax,
    Tanh, ROM thresholds) keep engineering estimates and say so in their comments.
    """

    csd_dsp_threshold: int = 3  # a constant product with >= this many non-zero CSD digits takes a DSP
    lut_mult_max_bits: int = 9  # (not calibrated: all baselines are 16-bit) narrower products go to LUTs
    lut_per_adder_bit: float = 1.55  # LUTs per bit of a LUT adder (shift-add constants, accumulation)
    lut_per_mult_bit2: float = 0.55  # LUTs per (wa·wb) of a LUT-mapped variable multiplier
    lut_per_output_bit: float = 0.263  # casts, muxes and registers around each output value
    lut_per_activation_bit: dict[str, float] = field(
        default_factory=lambda: {"ReLU": 2.14, "LeakyReLU": 0.0, "PReLU": 2.11, "ReLU6": 2.5, "Sigmoid": 6.0,
                                 "Tanh": 6.0, "ELU": 5.32, "Softmax": 12.0, "Hardtanh": 2.5}
    )
    lut_per_window_bit: float = 0.951  # conv line-buffer / im2col muxing per input bit per output position
    ff_per_dsp: float = 0.0  # pipeline registers per DSP
    ff_per_lut: float = 0.000493  # registers per LUT of pipelined logic
    ff_per_register_bit: float = 0.000159  # flip-flops per bit held between pipeline stages or stream registers
    ff_per_input_bit: float = 1.083  # the top function registers its io_parallel inputs
    ff_per_stream_bit: float = 0.237  # io_stream: registers on both sides of every inter-layer FIFO
    lut_per_stream_bit: float = 0.783  # FIFO handshake and muxing per streamed output bit (io_stream)
    adders_per_stage: int = 3  # adder-tree levels that fit one clock cycle at the default 5 ns
    stream_overhead_cycles: int = 1  # extra cycles per layer with io_stream (FIFO read/write)
    rom_min_bram_bits: int = 1024  # smaller ROMs go to LUTRAM
    table_size: int = 1024  # activation lookup tables: entries ...
    table_width: int = 18  # ... and bits per entry (hls4ml's defaults); one table per two parallel lookups
    dsp_absorbs_accumulation: bool = True  # the DSP post-adder accumulates DSP products
    latency_overhead: dict[str, int] = field(
        default_factory=lambda: {"dense": 0, "conv1d": 1, "conv2d": 1, "activation": 0, "table_activation": 1,
                                 "pooling": 0, "batchnorm": 0, "free": 0}
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CostParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown cost parameter(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass
class LayerCost:
    """Resources and timing of one layer."""

    name: str
    kind: str
    module_type: str
    dsp: float = 0.0
    bram18: float = 0.0
    lut: float = 0.0
    ff: float = 0.0
    latency_cycles: int = 0
    ii_cycles: int = 1
    n_weights: int = 0
    n_nonzero: int = 0
    multipliers: int = 0
    reuse_factor: int = 1
    strategy: str = ""
    precision: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def resources(self) -> np.ndarray:
        return np.array([self.dsp, self.bram18, self.lut, self.ff], dtype=float)


@dataclass
class ModelCost:
    """Resources and timing of a whole model on one device."""

    layers: list[LayerCost]
    device: Device
    clock_period_ns: float
    io_type: str

    @property
    def totals(self) -> dict[str, float]:
        total = np.sum([layer.resources() for layer in self.layers], axis=0) if self.layers else np.zeros(4)
        return dict(zip(RESOURCE_NAMES, (float(v) for v in total), strict=True))

    @property
    def latency_cycles(self) -> int:
        return int(sum(layer.latency_cycles for layer in self.layers))

    @property
    def ii_cycles(self) -> int:
        """Initiation interval of the whole design: the slowest layer (layers are pipelined by dataflow)."""
        return int(max((layer.ii_cycles for layer in self.layers), default=1))

    @property
    def latency_ns(self) -> float:
        return self.latency_cycles * self.clock_period_ns

    def utilization(self) -> dict[str, float]:
        """Share of the device each resource uses (1.0 = all of it)."""
        capacity = {"dsp": self.device.dsp, "bram18": self.device.bram18, "lut": self.device.lut, "ff": self.device.ff}
        return {name: (value / capacity[name] if capacity[name] else math.inf) for name, value in self.totals.items()}

    def over_budget(self) -> list[str]:
        """Resources that exceed the device."""
        return [name for name, share in self.utilization().items() if share > 1.0]

    def layer(self, name: str) -> LayerCost:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ModelError(f"no layer named {name!r}; layers: {', '.join(layer.name for layer in self.layers)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device.name,
            "clock_period_ns": self.clock_period_ns,
            "io_type": self.io_type,
            "totals": self.totals,
            "utilization": self.utilization(),
            "latency_cycles": self.latency_cycles,
            "latency_ns": self.latency_ns,
            "ii_cycles": self.ii_cycles,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }


def weight_codes(weight: torch.Tensor, precision: FixedPoint) -> np.ndarray:
    """Integer codes (value · 2^fractional bits) of the weights after quantisation to `precision`."""
    array = weight.detach().cpu().double().numpy()
    if not np.all(np.isfinite(array)):
        raise ModelError("weights contain NaN or inf; fix or retrain the model before estimating its cost")
    return np.asarray(precision.to_integer(array), dtype=np.int64)


def _significant_bits(codes: np.ndarray) -> np.ndarray:
    """Bits of |code| between its highest and lowest set bit (what a constant multiplier really needs)."""
    magnitude = np.abs(codes.astype(np.int64))
    lowest = magnitude & -magnitude
    with np.errstate(divide="ignore"):
        high = np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64)
        low = np.floor(np.log2(np.maximum(lowest, 1))).astype(np.int64)
    return np.where(magnitude > 0, high - low + 1, 0)


def _constant_dsps(dsp_codes: np.ndarray, weight_bits: int, data_bits: int, device: Device) -> int:
    """DSPs per constant product: synthesis sizes a constant by its significant bits, not by its type."""
    if dsp_codes.size == 0:
        return dsps_per_product(weight_bits, data_bits, device.dsp_type)
    constant_bits = int(_significant_bits(dsp_codes).max()) + 1
    return dsps_per_product(min(constant_bits, weight_bits), data_bits, device.dsp_type)


def multiplier_patterns(matrix: np.ndarray, reuse_factor: int) -> np.ndarray:
    """The weights each ROM multiplier processes: rows of the (out, in) matrix flattened and split into R."""
    flat = np.asarray(matrix).reshape(-1)
    if flat.size % reuse_factor:
        raise ConfigError(f"ReuseFactor {reuse_factor} does not divide the {flat.size} weights of the layer")
    return flat.reshape(-1, reuse_factor)


class CostModel:
    """Prices layers and models. Stateless apart from its calibrated `CostParams`."""

    def __init__(self, params: CostParams | None = None) -> None:
        self.params = params or CostParams()

    # ---------------------------------------------------------------- weighted layers
    def weighted_layer_cost(
        self,
        spec: LayerSpec,
        config: LayerConfig,
        *,
        data_precision: FixedPoint,
        device: Device,
        io_type: IOType = IOType.IO_PARALLEL,
        validate_reuse: bool = True,
    ) -> LayerCost:
        """Cost of a Linear/Conv layer under `config`, honouring its pruning mask and weight values."""
        p = self.params
        rf = config.reuse_factor
        if validate_reuse:
            check_reuse_factor(rf, spec.n_in, spec.n_out, layer=spec.name)
        wp, acc = config.precision.weight, config.precision.accum
        ww, wd, wacc = wp.width, data_precision.width, acc.width
        matrix = spec.weight_matrix()
        if spec.groups > 1:  # depthwise / grouped: one (out, in/groups) matrix, same layout
            matrix = matrix.reshape(spec.n_out, -1)
        codes = weight_codes(matrix, wp)
        nonzero = codes != 0
        n_weights, n_nonzero = int(codes.size), int(nonzero.sum())
        narrow = min(ww, wd) <= p.lut_mult_max_bits
        dsp_each = dsps_per_product(ww, wd, device.dsp_type)
        folded = config.strategy == Strategy.LATENCY or rf == 1
        details: dict[str, Any] = {"folded_constants": folded}
        if folded:
            digits = csd_digit_counts(codes)
            to_dsp = (digits >= p.csd_dsp_threshold) & ~np.full_like(nonzero, narrow)
            shift_add = nonzero & ~to_dsp
            n_dsp_products = int(to_dsp.sum())
            multipliers = -(-n_dsp_products // rf)
            dsp_each = _constant_dsps(codes[to_dsp], ww, wd, device)
            dsp = multipliers * dsp_each
            adder_bits = float(np.sum(np.clip(digits[shift_add] - 1, 0, None)) * (wd + ww))
            row_nonzero = nonzero.sum(axis=1)
            accum_adds = float(np.clip(row_nonzero - 1, 0, None).sum())
            if p.dsp_absorbs_accumulation:
                accum_adds = max(0.0, accum_adds - n_dsp_products)
            lut = p.lut_per_adder_bit * (adder_bits + accum_adds * wacc / max(rf, 1))
            bram = 0.0
            details |= {"dsp_products": n_dsp_products, "shift_add_products": int(shift_add.sum())}
        else:
            patterns = multiplier_patterns(nonzero, rf)
            active = int(patterns.any(axis=1).sum())
            multipliers = active
            dsp = 0 if narrow else active * dsp_each
            lut_mult = active * p.lut_per_mult_bit2 * ww * wd if narrow else 0.0
            rom_bits = rf * active * ww
            if rom_bits >= p.rom_min_bram_bits:
                bram = float(bram18_for_rom(rf, active * ww))
                lut_rom = 0.0
            else:
                bram = 0.0
                lut_rom = math.ceil(rf / 64) * active * ww
            accum_adds = 0.0 if (p.dsp_absorbs_accumulation and not narrow) else float(active)
            lut = lut_mult + lut_rom + p.lut_per_adder_bit * accum_adds * wacc
            details |= {"block_factor": patterns.shape[0], "active_multipliers": active, "rom_depth": rf,
                        "rom_width_bits": active * ww}
        # bias adders and output casts
        bias_nonzero = 0 if spec.bias is None else int(torch.count_nonzero(spec.bias))
        lut += p.lut_per_adder_bit * bias_nonzero * wacc
        lut += p.lut_per_output_bit * spec.n_out * config.precision.result.width
        max_fan_in = int(nonzero.sum(axis=1).max()) if nonzero.size else 0
        depth = (1 if multipliers else 0) + math.ceil(math.log2(max(max_fan_in, 1)) / p.adders_per_stage)
        instances, latency, ii = self._schedule(spec, config, io_type, depth)
        if spec.kind != "dense" and io_type == IOType.IO_PARALLEL:
            lut += p.lut_per_window_bit * spec.n_in * wd * min(spec.positions, 64)
        register_bits = spec.n_out * wacc * depth * instances
        stream_bits = 0
        if io_type == IOType.IO_STREAM:
            stream_bits = spec.n_out * config.precision.result.width
            lut += p.lut_per_stream_bit * stream_bits
        if not folded:
            register_bits += spec.n_out * wacc  # accumulators live across the RF loop
        ff = (p.ff_per_lut * lut * instances + p.ff_per_dsp * dsp * instances + p.ff_per_register_bit * register_bits
              + p.ff_per_stream_bit * stream_bits)
        details |= {"register_bits": register_bits, "stream_bits": stream_bits}
        return LayerCost(
            name=spec.name,
            kind=spec.kind,
            module_type=spec.module_type,
            dsp=float(dsp * instances),
            bram18=float(bram * instances if not folded else 0.0),
            lut=float(lut * instances),
            ff=float(ff),
            latency_cycles=latency,
            ii_cycles=ii,
            n_weights=n_weights,
            n_nonzero=n_nonzero,
            multipliers=int(multipliers * instances),
            reuse_factor=rf,
            strategy=config.strategy.value,
            precision=wp.to_hls4ml(),
            details=details | {"instances": instances},
        )

    def _schedule(self, spec: LayerSpec, config: LayerConfig, io_type: IOType, depth: int) -> tuple[int, int, int]:
        """(kernel instances, latency cycles, initiation interval) of a weighted layer.

        `depth` is the kernel's pipeline depth (multiplier stage plus adder-tree levels per clock).
        """
        p = self.params
        rf = config.reuse_factor
        overhead = p.latency_overhead.get(spec.kind, 0)
        stream = p.stream_overhead_cycles if io_type == IOType.IO_STREAM else 0
        if spec.kind == "dense":
            return 1, rf - 1 + depth + overhead + stream, rf
        if io_type == IOType.IO_STREAM:
            pixels = math.prod(spec.input_shape[1:]) if len(spec.input_shape) > 1 else spec.positions
            return 1, pixels * rf + depth + overhead + stream, pixels * rf
        instances = max(1, min(config.parallelization_factor, spec.positions))
        steps = -(-spec.positions // instances)
        return instances, steps * rf + depth + overhead, steps * rf

    # ---------------------------------------------------------------- marginal costs
    def savings(
        self,
        spec: LayerSpec,
        config: LayerConfig,
        *,
        data_precision: FixedPoint,
        device: Device,
        io_type: IOType = IOType.IO_PARALLEL,
        granularity: str = "pattern",
    ) -> np.ndarray:
        """Resources (DSP, BRAM18, LUT, FF) saved by zeroing each weight or each multiplier pattern, in bulk.

        Rows follow hls4ml's order: weight k of W.reshape(out, -1).flatten(), or pattern j = weights
        [jR, (j+1)R). Savings are marginal with respect to the layer's current mask: an already-zero
        structure saves nothing, and under ROM strategies a weight saves a multiplier only if it is the
        last non-zero one of its pattern. BRAM is shared evenly among a ROM's active lanes.
        """
        if granularity not in {"weight", "pattern"}:
            raise ConfigError(f"granularity must be 'weight' or 'pattern', got {granularity!r}")
        p = self.params
        rf = config.reuse_factor
        wp, wacc = config.precision.weight, config.precision.accum.width
        ww, wd = wp.width, data_precision.width
        codes = weight_codes(spec.weight_matrix().reshape(spec.n_out, -1), wp).reshape(-1)
        nonzero = codes != 0
        narrow = min(ww, wd) <= p.lut_mult_max_bits
        dsp_each = dsps_per_product(ww, wd, device.dsp_type)
        instances = max(1, min(config.parallelization_factor, spec.positions)) if spec.kind != "dense" else 1
        if io_type == IOType.IO_STREAM:
            instances = 1
        out = np.zeros((codes.size, 4))
        if config.strategy == Strategy.LATENCY or rf == 1:
            digits = csd_digit_counts(codes)
            to_dsp = nonzero & (digits >= p.csd_dsp_threshold) & (not narrow)
            shift_add = nonzero & ~to_dsp
            dsp_each = _constant_dsps(codes[to_dsp], ww, wd, device)
            out[:, 0] = np.where(to_dsp, dsp_each / rf, 0.0)
            adder_bits = np.clip(digits - 1, 0, None) * (wd + ww)
            accum = np.where(shift_add | (to_dsp & (not p.dsp_absorbs_accumulation)), wacc / rf, 0.0)
            out[:, 2] = p.lut_per_adder_bit * (np.where(shift_add, adder_bits, 0.0) + accum)
            per_weight = out
        else:
            patterns = nonzero.reshape(-1, rf)
            count = patterns.sum(axis=1)
            active = count > 0
            n_active = int(active.sum())
            lane = np.zeros((patterns.shape[0], 4))
            lane[:, 0] = np.where(active, 0.0 if narrow else dsp_each, 0.0)
            rom_bits = rf * n_active * ww
            if n_active and rom_bits >= p.rom_min_bram_bits:
                lane[:, 1] = np.where(active, float(bram18_for_rom(rf, n_active * ww)) / n_active, 0.0)
                lut_rom = 0.0
            else:
                lut_rom = math.ceil(rf / 64) * ww
            lut_mult = p.lut_per_mult_bit2 * ww * wd if narrow else 0.0
            accum = 0.0 if (p.dsp_absorbs_accumulation and not narrow) else p.lut_per_adder_bit * wacc
            lane[:, 2] = np.where(active, lut_mult + lut_rom + accum, 0.0)
            if granularity == "pattern":
                lane[:, 3] = p.ff_per_lut * lane[:, 2] + p.ff_per_dsp * lane[:, 0]
                return lane * instances
            last = np.repeat(count == 1, rf) & nonzero
            per_weight = np.where(last[:, None], np.repeat(lane, rf, axis=0), 0.0)
        per_weight[:, 3] = p.ff_per_lut * per_weight[:, 2] + p.ff_per_dsp * per_weight[:, 0]
        if granularity == "pattern":
            per_weight = per_weight.reshape(-1, rf, 4).sum(axis=1)
        return per_weight * instances

    # ---------------------------------------------------------------- other layers
    def simple_layer_cost(self, spec: LayerSpec, config: LayerConfig, io_type: IOType) -> LayerCost:
        """Activations, pooling, batch norm and free reshapes."""
        p = self.params
        width = config.precision.result.width
        # io_parallel computes every output at once; io_stream one pixel (all channels) per step
        n = spec.n_outputs if io_type == IOType.IO_PARALLEL or len(spec.output_shape) <= 1 else spec.output_shape[0]
        lut = bram = 0.0
        latency = p.latency_overhead.get(spec.kind, 0)
        stages = 0
        if spec.kind == "activation":
            lut = p.lut_per_activation_bit.get(spec.module_type, 2.0) * n * width
            if spec.module_type in TABLE_ACTIVATIONS:
                latency = stages = p.latency_overhead.get("table_activation", 1)
                bram = math.ceil(n / 2) * float(bram18_for_rom(p.table_size, p.table_width))
        elif spec.kind == "pooling":
            kernel = spec.extra.get("kernel_size") or 2
            dims = len(spec.output_shape) - 1
            window = math.prod(kernel) if isinstance(kernel, tuple | list) else int(kernel) ** dims
            lut = p.lut_per_adder_bit * max(window - 1, 1) * n * width
        elif spec.kind == "batchnorm":
            lut = 0.0  # folded into the preceding Linear/Conv by hls4ml's FuseBatchNormalization
            latency = 0
        elif spec.kind == "free":
            latency = 0
        ii = 1
        register_bits = stages * n * width
        stream_bits = 0
        if io_type == IOType.IO_STREAM and spec.kind not in {"free", "batchnorm"}:
            latency += p.stream_overhead_cycles
            stream_bits = n * width if len(spec.output_shape) <= 1 else spec.output_shape[0] * width
            lut += p.lut_per_stream_bit * stream_bits
            if len(spec.output_shape) > 1:
                ii = math.prod(spec.output_shape[1:])
                latency += ii
        ff = p.ff_per_lut * lut + p.ff_per_register_bit * register_bits + p.ff_per_stream_bit * stream_bits
        return LayerCost(name=spec.name, kind=spec.kind, module_type=spec.module_type, lut=float(lut), bram18=bram,
                         ff=float(ff), latency_cycles=int(latency), ii_cycles=ii,
                         precision=config.precision.result.to_hls4ml())

    def input_cost(self, first: LayerSpec, precision: FixedPoint, io_type: IOType) -> LayerCost:
        """The design's input interface: io_parallel inputs are registered by the top function."""
        bits = math.prod(first.input_shape) * precision.width
        if io_type == IOType.IO_STREAM:
            bits = (first.input_shape[0] if len(first.input_shape) > 1 else bits // precision.width) * precision.width
        return LayerCost(name="input", kind="input", module_type="Input", ff=float(self.params.ff_per_input_bit * bits),
                         latency_cycles=0, ii_cycles=1, precision=precision.to_hls4ml(), details={"input_bits": bits})

    # ---------------------------------------------------------------- models
    def estimate_specs(self, specs: list[LayerSpec], config: HLSConfig, *, validate_reuse: bool = True) -> ModelCost:
        """Price a list of layer specs under one HLS config."""
        device = get_device(config.device)
        data_precision = config.default.precision.result
        layers = []
        if specs:
            layers.append(self.input_cost(specs[0], data_precision, config.io_type))
        for spec in specs:
            layer_config = config.layer(spec.name)
            if spec.has_weights:
                cost = self.weighted_layer_cost(spec, layer_config, data_precision=data_precision, device=device,
                                                io_type=config.io_type, validate_reuse=validate_reuse)
            else:
                cost = self.simple_layer_cost(spec, layer_config, config.io_type)
            layers.append(cost)
            data_precision = layer_config.precision.result
        return ModelCost(layers=layers, device=device, clock_period_ns=config.clock_period_ns,
                         io_type=config.io_type.value)
