"""Hardware model: devices, bit-exact ap_fixed, hls4ml-style HLS configs, and the resource/latency estimator.

`estimate(model, input_shape, config)` prices a PyTorch model the way hls4ml would build it; pruning and
decomposition ask the same model what a change saves.
"""

from __future__ import annotations

from tenfold.hardware.cost import CostModel, CostParams, LayerCost, ModelCost, multiplier_patterns
from tenfold.hardware.devices import DEFAULT_DEVICE, Device, get_device, list_devices, register_device
from tenfold.hardware.estimate import LayerPricer, estimate, make_config
from tenfold.hardware.fixed_point import FixedPoint, Overflow, Rounding
from tenfold.hardware.hls_config import (
    HLSConfig,
    IOType,
    LayerConfig,
    LayerPrecision,
    Strategy,
    check_reuse_factor,
    is_valid_reuse_factor,
    nearest_valid_reuse_factors,
    valid_reuse_factors,
)
from tenfold.hardware.layers import LayerSpec, extract_layers
from tenfold.hardware.reports import SynthesisReport, compare, load_report

__all__ = [
    "DEFAULT_DEVICE",
    "CostModel",
    "CostParams",
    "Device",
    "FixedPoint",
    "HLSConfig",
    "IOType",
    "LayerConfig",
    "LayerCost",
    "LayerPrecision",
    "LayerPricer",
    "LayerSpec",
    "ModelCost",
    "Overflow",
    "Rounding",
    "Strategy",
    "SynthesisReport",
    "check_reuse_factor",
    "compare",
    "estimate",
    "extract_layers",
    "get_device",
    "is_valid_reuse_factor",
    "list_devices",
    "load_report",
    "make_config",
    "multiplier_patterns",
    "nearest_valid_reuse_factors",
    "register_device",
    "valid_reuse_factors",
]
