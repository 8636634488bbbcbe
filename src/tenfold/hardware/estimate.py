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


class LayerPricer:
    """Prices one weighted layer of a model under other weights or another HLS config, without re-tracing.

    `estimate` traces the whole model for every call; search loops that try many variants of one layer at a
    time (the joint knapsack's candidates) trace once here and re-price only the layer that changed. The price
    of a layer depends on its own weights and config and on the result precision of the layer before it,
    exactly as in `estimate`, so `price(name)` equals `estimate(model, ...).layer(name)`.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], config: HLSConfig, *,
                 params: CostParams | None = None) -> None:
        self.specs = extract_layers(model, tuple(input_shape))
        self.config = config
        self.cost_model = CostModel(params)
        self._index = {spec.name: index for index, spec in enumerate(self.specs)}

    def price(self, name: str, *, weight: Any = None, config: HLSConfig | None = None) -> Any:
        """The `LayerCost` of layer `name` holding `weight` (its effective weights; default: as traced)."""
        from tenfold.errors import ModelError
        from tenfold.hardware.devices import get_device

        if name not in self._index or not self.specs[self._index[name]].has_weights:
            weighted = [spec.name for spec in self.specs if spec.has_weights]
            raise ModelError(f"no weighted layer named {name!r}; weighted layers: {', '.join(weighted)}")
        config = config or self.config
        index = self._index[name]
        spec = self.specs[index]
        if weight is not None:
            if tuple(weight.shape) != tuple(spec.weight.shape):
                raise ModelError(f"layer {name}: weight shape {tuple(weight.shape)} does not match "
                                 f"{tuple(spec.weight.shape)}")
            spec = dataclasses.replace(spec, weight=weight.detach(), mask=None)
        data_precision = (config.layer(self.specs[index - 1].name).precision.result if index > 0
                          else config.default.precision.result)
        return self.cost_model.weighted_layer_cost(spec, config.layer(name), data_precision=data_precision,
                                                   device=get_device(config.device), io_type=config.io_type)
