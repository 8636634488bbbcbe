"""Price a decomposed model on the FPGA: factor ROMs and a weight regenerator instead of stored weights.

`tenfold.hardware.estimate` sees a reconstructed layer as an ordinary layer with full weights; this module
re-prices every decomposed layer in one of two ways, because they trade resources in opposite directions:

- ``"stream"``: weights are rebuilt from the factors as fast as the layer consumes them (ceil(N/RF) per
  clock), so no weight memory is left on chip, but every weight lane needs regeneration multipliers and the
  layer's multipliers can no longer fold constants (`regenerated_layer_resources`);
- ``"buffer"``: the weights are rebuilt once (e.g. at start-up or per reconfiguration) into the layer's own
  weight memory by a small kernel (`tenfold.hardware.regeneration.regeneration_cost`); on-chip resources grow
  by that kernel and the factor ROM, and what is saved is the external-memory / bitstream weight traffic.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from tenfold.decompose.accounting import account_layer, accounting_method, regenerated_layer_resources
from tenfold.decompose.model import decomposed_layers

MODES = ("stream", "buffer")


def estimate_decomposed(model: nn.Module, input_shape: tuple[int, ...], config, *, mode: str = "stream",
                        parallelism: int = 1, **kwargs):
    """`tenfold.hardware.estimate`, with decomposed layers priced as regenerated from their factors (see above)."""
    from tenfold.hardware import estimate

    _check_mode(mode)
    cost = estimate(model, input_shape, config, **kwargs)
    layers = {layer.name: layer for layer in decomposed_layers(model)}
    if not layers:
        return cost
    priced = []
    for layer_cost in cost.layers:
        layer = layers.get(layer_cost.name)
        if layer is None or layer.grid is None:
            priced.append(layer_cost)
            continue
        priced.append(price_decomposed_layer(layer_cost, layer.weight_shape, layer.method, layer.rank,
                                             layer.grid.precision.width, config, mode=mode,
                                             parallelism=parallelism, scale=layer.grid.scale))
    return dataclasses.replace(cost, layers=priced)


def price_decomposed_layer(layer_cost, weight_shape, method: str, rank, factor_bits: int, config, *,
                           mode: str = "stream", parallelism: int = 1, scale: str = "per_factor"):
    """The LayerCost of one layer once its weight is stored as `rank` factors of `factor_bits` (see above)."""
    from tenfold.hardware import get_device

    _check_mode(mode)
    weight_width = config.layer(layer_cost.name).precision.weight.width
    account = account_layer(tuple(weight_shape), accounting_method(method), rank, name=layer_cost.name,
                            factor_bits=factor_bits, weight_bits=weight_width,
                            scale=scale if scale != "none" else "per_factor")
    if mode == "stream":
        dsp, bram18, lut, ff = regenerated_layer_resources(account, layer_cost, weight_width=weight_width,
                                                           data_width=config.default.precision.result.width,
                                                           device=get_device(config.device))
        external = 0
    else:
        dsp, bram18, lut, ff, external = _buffered(layer_cost, tuple(weight_shape), method, rank, factor_bits,
                                                   config, parallelism)
    details = dict(layer_cost.details) | {"decomposed": {
        "mode": mode, "external_bytes_saved": external, "method": method, "rank": rank,
        "factor_bits": factor_bits, "stored_parameters": account.params_after, "weights": account.params_before,
        "before": {"dsp": layer_cost.dsp, "bram18": layer_cost.bram18, "lut": layer_cost.lut, "ff": layer_cost.ff}}}
    return dataclasses.replace(layer_cost, dsp=float(dsp), bram18=float(bram18), lut=float(lut), ff=float(ff),
                               details=details)


def _check_mode(mode: str) -> None:
    from tenfold.errors import ConfigError

    if mode not in MODES:
        raise ConfigError(f"regeneration mode must be one of {', '.join(MODES)}, got {mode!r}")


def _buffered(layer_cost, weight_shape, method, rank, factor_bits, config, parallelism: int):
    """Layer cost plus a regeneration kernel that fills the layer's weight memory once."""
    from tenfold.decompose.accounting import decomposed_shape
    from tenfold.hardware.regeneration import regeneration_cost

    if method == "tucker2" or not isinstance(rank, int):  # the C++ kernel regenerates CP only
        return layer_cost.dsp, layer_cost.bram18, layer_cost.lut, layer_cost.ff, 0
    shape = decomposed_shape(weight_shape, accounting_method(method))
    last = shape[-1]
    lanes = max(d for d in range(1, min(parallelism, last) + 1) if last % d == 0)
    regen = regeneration_cost(shape, rank, factor_bits, config.layer(layer_cost.name).precision.weight, lanes,
                              config.device, clock_period_ns=config.clock_period_ns)
    return (layer_cost.dsp + regen.dsp, layer_cost.bram18 + regen.bram18, layer_cost.lut + regen.lut,
            layer_cost.ff, regen.bytes_saved)
