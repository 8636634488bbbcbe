"""`estimate(model, input_shape, config)`: the one call that prices a PyTorch model on an FPGA."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from tenfold.hardware.cost import CostModel, CostParams, ModelCost
from tenfold.hardware.hls_config import HLSConfig, LayerConfig, LayerPrecision
from tenfold.hardware.layers import extract_layers


def make_config(
    *,
    device: str = "xcvu13p",
    precision: str = "fixed<16,6>",
    reuse_factor: int = 1,
    strategy: str = "Latency",
    io_type: str = "io_parallel",
    clock_period_ns: float = 5.0,
    hls4ml_config: dict[str, Any] | None = None,
) -> HLSConfig:
    """An `HLSConfig` from the common command-line options, or from an hls4ml-style dict when given."""
    if hls4ml_config is not None:
        return HLSConfig.from_hls4ml(hls4ml_config, device=device, io_type=io_type, clock_period_ns=clock_period_ns)
    default = LayerConfig(reuse_factor=reuse_factor, strategy=strategy, precision=LayerPrecision.uniform(precision))
    return HLSConfig(default=default, io_type=io_type, device=device, clock_period_ns=clock_period_ns)


def estimate(
    model: nn.Module,
    input_shape: tuple[int, ...],
    config: HLSConfig | None = None,
    *,
    params: CostParams | None = None,
    validate_reuse: bool = True,
) -> ModelCost:
    """Per-layer and total DSP, BRAM18, LUT, FF, latency and II of `model` as hls4ml would build it.

    `input_shape` is the per-sample shape (no batch). Pruning masks (`torch.nn.utils.prune` or tenfold's)
    and the actual weight values are honoured: zero weights and simple constants cost what synthesis makes
    them cost. An invalid ReuseFactor raises a `ConfigError` naming the layer and the nearest valid values.
    """
    config = config or HLSConfig()
    specs = extract_layers(model, tuple(input_shape))
    return CostModel(params).estimate_specs(specs, config, validate_reuse=validate_reuse)


def uniform_reuse_config(config: HLSConfig, model: nn.Module, input_shape: tuple[int, ...]) -> HLSConfig:
    """Give every weighted layer the closest valid reuse factor to the default one (for whole-model sweeps)."""
    from tenfold.hardware.hls_config import nearest_valid_reuse_factors, valid_reuse_factors

    layers = dict(config.layers)
    for spec in extract_layers(model, tuple(input_shape)):
        if not spec.has_weights:
            continue
        base = config.layer(spec.name)
        wanted = base.reuse_factor
        if wanted in valid_reuse_factors(spec.n_in, spec.n_out):
            continue
        below, above = nearest_valid_reuse_factors(wanted, spec.n_in, spec.n_out)
        choice = below if above is None or (below is not None and wanted - below <= above - wanted) else above
        layers[spec.name] = dataclasses.replace(base, reuse_factor=int(choice))
    return dataclasses.replace(config, layers=layers)
