"""Per-layer HLS settings in hls4ml's own vocabulary (Precision, ReuseFactor, Strategy, IOType).

A user can hand tenfold the config dict they would give hls4ml and get one back; tenfold checks the reuse
factor with hls4ml's rule and reports the nearest valid values instead of silently changing it (hls4ml does).
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tenfold.errors import ConfigError
from tenfold.hardware.fixed_point import FixedPoint

DEFAULT_PRECISION = "fixed<16,6>"


class Strategy(str, Enum):
    """How hls4ml implements a matrix-vector product."""

    LATENCY = "Latency"  # fully unrolled (II = RF), weights as constants folded into logic
    RESOURCE = "Resource"  # weights in a ROM of depth RF, one multiplier per ROM word lane
    RESOURCE_UNROLLED = "resource_unrolled"  # Resource, but code generated per multiplier: all-zero ones vanish

    @classmethod
    def parse(cls, value: str | Strategy) -> Strategy:
        if isinstance(value, Strategy):
            return value
        key = str(value).strip().lower().replace("-", "_")
        for member in cls:
            if member.value.lower() == key or member.name.lower() == key:
                return member
        if key == "unrolled":
            return cls.RESOURCE_UNROLLED
        raise ConfigError(
            f"unknown Strategy {value!r}; use one of {', '.join(m.value for m in cls)} (hls4ml's names)"
        )


class IOType(str, Enum):
    """How layers exchange data: all values at once, or streamed through FIFOs."""

    IO_PARALLEL = "io_parallel"
    IO_STREAM = "io_stream"

    @classmethod
    def parse(cls, value: str | IOType) -> IOType:
        if isinstance(value, IOType):
            return value
        key = str(value).strip().lower()
        for member in cls:
            if member.value == key or member.value.removeprefix("io_") == key:
                return member
        raise ConfigError(f"unknown IOType {value!r}; use io_parallel or io_stream")


def _given(value: Any) -> bool:
    """A precision entry that sets something (hls4ml writes 'auto' for types it infers later)."""
    return value is not None and not (isinstance(value, str) and value.strip().lower() == "auto")


def _precision(value: str | FixedPoint) -> FixedPoint:
    return value if isinstance(value, FixedPoint) else FixedPoint.parse(value)


@dataclass
class LayerPrecision:
    """The four types hls4ml assigns per layer: weights, biases, accumulator and result."""

    weight: FixedPoint = field(default_factory=lambda: FixedPoint.parse(DEFAULT_PRECISION))
    bias: FixedPoint = field(default_factory=lambda: FixedPoint.parse(DEFAULT_PRECISION))
    accum: FixedPoint = field(default_factory=lambda: FixedPoint.parse(DEFAULT_PRECISION))
    result: FixedPoint = field(default_factory=lambda: FixedPoint.parse(DEFAULT_PRECISION))

    @classmethod
    def uniform(cls, precision: str | FixedPoint) -> LayerPrecision:
        p = _precision(precision)
        return cls(weight=p, bias=p, accum=p, result=p)

    @classmethod
    def from_hls4ml(cls, value: Any, base: LayerPrecision | None = None) -> LayerPrecision:
        """hls4ml accepts one string for all types or a dict with some of weight/bias/accum/result/default."""
        base = base or cls()
        if isinstance(value, str) and value.strip().lower() == "auto":
            return base  # hls4ml's "infer it": tenfold keeps the inherited type
        if isinstance(value, str | FixedPoint):
            return cls.uniform(value)
        if not isinstance(value, dict):
            raise ConfigError(f"Precision must be a string like 'fixed<16,6>' or a dict, got {value!r}")
        unknown = set(value) - {"weight", "bias", "accum", "result", "default"}
        if unknown:
            raise ConfigError(
                f"unknown Precision key(s) {sorted(unknown)}; hls4ml uses weight, bias, accum, result, default"
            )
        start = cls.uniform(value["default"]) if _given(value.get("default")) else base
        return cls(
            **{
                name: _precision(value[name]) if _given(value.get(name)) else getattr(start, name)
                for name in ("weight", "bias", "accum", "result")
            }
        )

    def to_hls4ml(self) -> dict[str, str]:
        return {name: getattr(self, name).to_hls4ml() for name in ("weight", "bias", "accum", "result")}


@dataclass
class LayerConfig:
    """HLS settings of one layer."""

    reuse_factor: int = 1
    strategy: Strategy = Strategy.LATENCY
    precision: LayerPrecision = field(default_factory=LayerPrecision)
    parallelization_factor: int = 1

    def __post_init__(self) -> None:
        self.strategy = Strategy.parse(self.strategy)
        if isinstance(self.precision, str | FixedPoint):
            self.precision = LayerPrecision.uniform(self.precision)
        if int(self.reuse_factor) < 1:
            raise ConfigError(f"ReuseFactor must be a positive integer, got {self.reuse_factor}")
        if int(self.parallelization_factor) < 1:
            raise ConfigError(f"ParallelizationFactor must be a positive integer, got {self.parallelization_factor}")
        self.reuse_factor = int(self.reuse_factor)

    def to_hls4ml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Precision": self.precision.to_hls4ml(),
            "ReuseFactor": self.reuse_factor,
            "Strategy": self.strategy.value,
        }
        if self.parallelization_factor != 1:
            out["ParallelizationFactor"] = self.parallelization_factor
        return out

    def updated(self, values: dict[str, Any]) -> LayerConfig:
        """This config with an hls4ml-style layer section applied on top."""
        known = {"Precision", "ReuseFactor", "Strategy", "ParallelizationFactor", "Trace", "LayerType",
                 "ChannelsLastConversion", "TransposeOutputs", "BramFactor", "TraceOutput", "ConvImplementation"}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown layer option(s) {sorted(unknown)}; supported: {', '.join(sorted(known))}")
        return LayerConfig(
            reuse_factor=values.get("ReuseFactor", self.reuse_factor),
            strategy=Strategy.parse(values.get("Strategy", self.strategy)),
            precision=LayerPrecision.from_hls4ml(values["Precision"], self.precision)
            if "Precision" in values
            else self.precision,
            parallelization_factor=values.get("ParallelizationFactor", self.parallelization_factor),
        )


@dataclass
class HLSConfig:
    """Model-wide HLS settings plus per-layer overrides keyed by module path (e.g. `layer1.0.conv1`)."""

    default: LayerConfig = field(default_factory=LayerConfig)
    layers: dict[str, LayerConfig] = field(default_factory=dict)
    io_type: IOType = IOType.IO_PARALLEL
    device: str = "xcvu13p"
    clock_period_ns: float = 5.0
    backend: str = "Vitis"

    def __post_init__(self) -> None:
        self.io_type = IOType.parse(self.io_type)
        if not self.clock_period_ns > 0:
            raise ConfigError(f"clock period must be > 0 ns, got {self.clock_period_ns}")

    def layer(self, name: str) -> LayerConfig:
        """The settings that apply to layer `name`."""
        return self.layers.get(name, self.default)

    def with_layer(self, name: str, **changes: Any) -> HLSConfig:
        """A copy with one layer's settings changed (others untouched)."""
        layers = dict(self.layers)
        layers[name] = dataclasses.replace(self.layer(name), **changes)
        return dataclasses.replace(self, layers=layers)

    @classmethod
    def from_hls4ml(cls, config: dict[str, Any], **kwargs: Any) -> HLSConfig:
        """Read `{"Model": {...}, "LayerName": {...}}` (hls4ml's `hls_config`); other keys are rejected."""
        if not isinstance(config, dict):
            raise ConfigError("an hls4ml config must be a dict with a 'Model' section")
        unknown = set(config) - {"Model", "LayerName", "LayerType", "IOType", "Part", "ClockPeriod", "Backend",
                                 "InputShape", "PytorchModel", "OutputDir", "ProjectName"}
        if unknown:
            raise ConfigError(f"unknown top-level hls4ml config key(s) {sorted(unknown)}; expected Model, LayerName")
        model_section = dict(config.get("Model", {}))
        for ignored in ("TraceOutput", "BramFactor", "ChannelsLastConversion", "TransposeOutputs"):
            model_section.pop(ignored, None)
        default = LayerConfig().updated(model_section)
        layers = {name: default.updated(section or {}) for name, section in config.get("LayerName", {}).items()}
        options: dict[str, Any] = {}
        if "IOType" in config:
            options["io_type"] = config["IOType"]
        if "Part" in config:
            options["device"] = config["Part"]
        if "ClockPeriod" in config:
            options["clock_period_ns"] = float(config["ClockPeriod"])
        if "Backend" in config:
            options["backend"] = config["Backend"]
        return cls(default=default, layers=layers, **(options | kwargs))

    def to_hls4ml(self) -> dict[str, Any]:
        """The dict hls4ml's converters take as `hls_config` (IOType, part and clock go to the converter)."""
        model = self.default.to_hls4ml()
        model["Precision"] = {"default": self.default.precision.weight.to_hls4ml()} | model["Precision"]
        return {
            "Model": model,
            "LayerName": {name: layer.to_hls4ml() for name, layer in self.layers.items()},
        }


def _divisors(n: int) -> list[int]:
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def is_valid_reuse_factor(reuse_factor: int, n_in: int, n_out: int) -> bool:
    """hls4ml's rule for an n_in × n_out product (Conv: n_in = C_in·kh·kw, n_out = filters)."""
    rf = int(reuse_factor)
    if rf < 1 or n_in < 1 or n_out < 1:
        return False
    total = n_in * n_out
    if total % rf:
        return False
    multiplier_limit = -(-total // min(n_in, rf))
    if not (multiplier_limit % n_out == 0 or rf >= n_in):
        return False
    return rf % n_in == 0 or rf < n_in


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """All reuse factors hls4ml accepts for an n_in × n_out product, ascending."""
    return [rf for rf in _divisors(n_in * n_out) if is_valid_reuse_factor(rf, n_in, n_out)]


def nearest_valid_reuse_factors(reuse_factor: int, n_in: int, n_out: int) -> tuple[int | None, int | None]:
    """The closest valid reuse factors below and above `reuse_factor`."""
    valid = valid_reuse_factors(n_in, n_out)
    pos = bisect.bisect_left(valid, reuse_factor)
    below = valid[pos - 1] if pos > 0 else None
    above = valid[pos] if pos < len(valid) else None
    return below, above


def check_reuse_factor(reuse_factor: int, n_in: int, n_out: int, layer: str = "layer") -> int:
    """Return `reuse_factor` if hls4ml accepts it; otherwise raise, naming the layer and the nearest valid ones."""
    if is_valid_reuse_factor(reuse_factor, n_in, n_out):
        return int(reuse_factor)
    below, above = nearest_valid_reuse_factors(reuse_factor, n_in, n_out)
    options = " or ".join(str(v) for v in (below, above) if v is not None)
    raise ConfigError(
        f"ReuseFactor {reuse_factor} is not valid for {layer} ({n_in} inputs × {n_out} outputs); "
        f"hls4ml would silently change it. Nearest valid: {options}"
    )
