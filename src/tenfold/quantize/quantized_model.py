"""`quantize_model`: a float model that computes with hls4ml's fixed-point types (fake quantization).

Why a wrapper around an untouched copy of the model: training, calibration and precision search need the
float weights (the straight-through estimator updates them), while export needs the quantized ones. Weights
and biases are quantized through `torch.nn.utils.parametrize` (the float values stay in
`...parametrizations.weight.original`), layer outputs through `FakeQuant` modules applied after each traced
layer call, and the HLS config itself travels in the state_dict (`_extra_state`), so
`state_dict()`/`load_state_dict()` round-trip the whole quantized model. `to_float` bakes the quantized
weights into a plain copy of the original module, ready for `tenfold.export`.

What each layer's output goes through, as hls4ml's io_parallel code (and `emulate`) does:
- the model input: the default result type (hls4ml's input layer);
- Linear / Conv1d / Conv2d: the sum is cast to `accum_t`, then to `result_t`;
- every other layer except shape-only ones (Flatten, Identity, Dropout): its own `result_t` (ReLU, MaxPool, ...).
Fake quantization differs from the hardware in one place only: hls4ml casts every product to `accum_t`
before summing, fake quantization casts the finished sum. `hardware_mode=True` runs the bit-exact
`emulate` instead (no gradient), so outputs are exactly the hardware's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from tenfold.errors import ModelError
from tenfold.hardware.fixed_point import FixedPoint, Rounding
from tenfold.hardware.hls_config import HLSConfig, LayerConfig, LayerPrecision
from tenfold.modules import clone_module
from tenfold.quantize.emulate import emulate
from tenfold.quantize.fake import FakeQuant

__all__ = ["QuantizedModel", "QuantizerSite", "quantize_model", "strip_quantization", "to_float"]

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
SHAPE_ONLY = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
INPUT = "input"  # the layer name of the model input, as in tenfold.hardware's estimates


@dataclass(frozen=True)
class QuantizerSite:
    """One place a fixed-point type is applied: `kind` is input, weight, bias, accum or result."""

    layer: str
    kind: str
    quantizer: FakeQuant


class _PruneMask(nn.Module):
    """A pruning mask (from torch.nn.utils.prune) kept as a parametrization, so QAT keeps pruned weights at zero."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class OutputQuant(nn.Module):
    """A layer's output cast: the sum to `accum_t` (weighted layers only), then to `result_t`."""

    def __init__(self, result: FixedPoint, accum: FixedPoint | None = None) -> None:
        super().__init__()
        self.accum = FakeQuant(accum) if accum is not None else None
        self.result = FakeQuant(result)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.accum is not None:
            x = self.accum(x)
        return self.result(x)


class _QuantizingInterpreter(fx.Interpreter):
    """Runs the traced graph on the owner's modules, casting the input and each layer's output."""

    def __init__(self, owner: QuantizedModel) -> None:
        super().__init__(owner.model, garbage_collect_values=True, graph=owner.graph)
        self.owner = owner

    def placeholder(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().placeholder(target, args, kwargs)
        return self.owner.input_quant(value) if self.owner.input_quant is not None else value

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        out = super().call_module(target, args, kwargs)
        key = self.owner._output_keys.get(target)
        if key is None:
            return out
        if target in self.owner._accum_sources:
            out = out + self.owner._truncation_bias(target, args[0])
        return self.owner.outputs[key](out)


def _key(name: str) -> str:
    return name.replace(".", ":")  # ModuleDict keys cannot contain dots


class QuantizedModel(nn.Module):
    """A model whose weights, biases and layer outputs take the fixed-point types of an `HLSConfig`.

    Build it with `quantize_model`. `hardware_mode` switches the forward pass to the bit-exact emulation.
    """

    def __init__(self, model: nn.Module, config: HLSConfig, *, activations: bool = True,
                 hardware_mode: bool = False) -> None:
        super().__init__()
        try:
            graph = fx.symbolic_trace(model).graph
        except Exception as exc:  # fx raises many kinds of errors for untraceable code
            raise ModelError(
                f"cannot trace the model for quantization ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "use a model built from plain layers (nn.Sequential or modules without data-dependent control flow)"
            ) from None
        placeholders = [node for node in graph.nodes if node.op == "placeholder"]
        if len(placeholders) != 1:
            raise ModelError(f"quantize_model supports models with one input; this one takes {len(placeholders)}")
        self.model = model
        self.graph = graph
        self.activations = activations
        self.hardware_mode = hardware_mode
        self._config = config
        modules = dict(model.named_modules())
        self.weighted_layers = [name for name, m in modules.items() if name and isinstance(m, WEIGHTED)]
        for name in self.weighted_layers:
            self._parametrize(modules[name], config.layer(name).precision)
        self.input_quant = FakeQuant(config.default.precision.result) if activations else None
        self.outputs = nn.ModuleDict()
        self._output_keys: dict[str, str] = {}
        self._accum_sources: dict[str, str | None] = {}  # weighted layer -> whose result type its input has
        if activations:
            for node in graph.nodes:
                if node.op != "call_module" or node.target in self._output_keys:
                    continue
                module = modules[node.target]
                if isinstance(module, SHAPE_ONLY):
                    continue
                precision = config.layer(node.target).precision
                accum = precision.accum if isinstance(module, WEIGHTED) else None
                self.outputs[_key(node.target)] = OutputQuant(precision.result, accum)
                self._output_keys[node.target] = _key(node.target)
                if accum is not None:
                    self._accum_sources[node.target] = _input_source(node, modules)

    @staticmethod
    def _parametrize(module: nn.Module, precision: LayerPrecision) -> None:
        for tensor_name, fixed in (("weight", precision.weight), ("bias", precision.bias)):
            if getattr(module, tensor_name, None) is None:
                continue
            mask = getattr(module, f"{tensor_name}_mask", None)
            if mask is not None and hasattr(module, f"{tensor_name}_orig"):  # torch.nn.utils.prune's layout
                torch_prune.remove(module, tensor_name)
                parametrize.register_parametrization(module, tensor_name, _PruneMask(mask))
            parametrize.register_parametrization(module, tensor_name, FakeQuant(fixed))

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> HLSConfig:
        """The HLS config whose types this model applies."""
        return self._config

    def set_config(self, config: HLSConfig) -> QuantizedModel:
        """Apply another config's types in place (same layers); used by precision search and state loading."""
        self._config = config
        for site in self.quantizer_sites():
            if site.layer == INPUT:
                site.quantizer.precision = config.default.precision.result
            else:
                site.quantizer.precision = getattr(config.layer(site.layer).precision, site.kind)
        return self

    def quantizer_sites(self) -> list[QuantizerSite]:
        """Every fixed-point cast in the model, in execution order per layer."""
        sites = [QuantizerSite(INPUT, "result", self.input_quant)] if self.input_quant is not None else []
        modules = dict(self.model.named_modules())
        seen = set()
        for node in self.graph.nodes:
            if node.op != "call_module" or node.target in seen:
                continue
            seen.add(node.target)
            module = modules[node.target]
            if node.target in self.weighted_layers:
                for kind in ("weight", "bias"):
                    fq = _fake_quant_of(module, kind)
                    if fq is not None:
                        sites.append(QuantizerSite(node.target, kind, fq))
            key = self._output_keys.get(node.target)
            if key is not None:
                out = self.outputs[key]
                if out.accum is not None:
                    sites.append(QuantizerSite(node.target, "accum", out.accum))
                sites.append(QuantizerSite(node.target, "result", out.result))
        return sites

    def input_sources(self) -> dict[str, str | None]:
        """For each weighted layer, the layer whose result type its input carries ("input" for the model input).

        None where the input comes through an operation that is not a layer (e.g. an addition).
        """
        return dict(self._accum_sources)

    def quantization_enabled(self, enabled: bool) -> QuantizedModel:
        """Switch every cast on or off (off: the model computes in float, e.g. to calibrate ranges)."""
        for site in self.quantizer_sites():
            site.quantizer.enabled = enabled
        return self

    def get_extra_state(self) -> dict[str, Any]:
        return {"hls_config": config_to_state(self._config)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_config(config_from_state(state["hls_config"]))

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hardware_mode:
            return emulate(to_float(self), x, self._config)
        return _QuantizingInterpreter(self).run(x)

    @torch.no_grad()
    def _truncation_bias(self, target: str, x: torch.Tensor) -> torch.Tensor | float:
        """Expected error of hls4ml casting every product to an `AP_TRN` accumulator, which floors.

        A product of an input with Fx fractional bits and a weight with Fw loses d = Fx + Fw - Fa bits in an
        accumulator with Fa; if those bits are uniform the loss averages (lsb_a / 2)(1 - 2**-d). Zero products
        lose nothing, so the expected error of each output is that times its count of nonzero products (one
        extra matmul/conv on 0/1 tensors). Rounding accumulator modes are unbiased and get no correction.
        """
        accum_fq = self.outputs[self._output_keys[target]].accum
        accum = accum_fq.precision
        if accum.rounding is not Rounding.AP_TRN or not accum_fq.enabled:
            return 0.0
        module = self.model.get_submodule(target)
        weight_fq = _fake_quant_of(module, "weight")
        source = self._accum_sources[target]
        if source == INPUT:
            input_fq = self.input_quant
        elif source is not None and source in self._output_keys:
            input_fq = self.outputs[self._output_keys[source]].result
        else:
            input_fq = None
        dropped = 64
        if input_fq is not None and weight_fq is not None:
            dropped = input_fq.precision.fractional + weight_fq.precision.fractional - accum.fractional
        if dropped <= 0:
            return 0.0
        nonzero_x = (x != 0).to(x.dtype)
        nonzero_w = (module.weight != 0).to(x.dtype)
        if isinstance(module, nn.Linear):
            count = torch.nn.functional.linear(nonzero_x, nonzero_w)
        else:
            count = module._conv_forward(nonzero_x, nonzero_w, None)
        return count * (-accum.lsb / 2 * (1 - 2.0 ** -min(dropped, 64)))

    def extra_repr(self) -> str:
        return f"hardware_mode={self.hardware_mode}, activations={self.activations}"


def _input_source(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The layer whose result type a node's input carries (looking through Flatten & co), or None if unknown."""
    current = node.args[0] if node.args else None
    while isinstance(current, fx.Node):
        if current.op == "placeholder":
            return INPUT
        if current.op == "call_module":
            if not isinstance(modules[current.target], SHAPE_ONLY):
                return current.target
        elif not (current.op == "call_function" and current.target in {torch.flatten, torch.reshape}) and not (
            current.op == "call_method" and current.target in {"view", "reshape", "flatten"}
        ):
            return None
        current = current.args[0] if current.args else None
    return None


def _fake_quant_of(module: nn.Module, tensor_name: str) -> FakeQuant | None:
    parametrizations = getattr(module, "parametrizations", None)
    if parametrizations is None or tensor_name not in parametrizations:
        return None
    found = [p for p in parametrizations[tensor_name] if isinstance(p, FakeQuant)]
    return found[-1] if found else None


def quantize_model(model: nn.Module, config: HLSConfig | None = None, *, activations: bool = True,
                   hardware_mode: bool = False) -> QuantizedModel:
    """A new module computing like `model` with `config`'s fixed-point types; `model` itself is not changed.

    Every Linear/Conv weight and bias is fake-quantized with its layer's weight/bias type; with `activations`
    the input and every layer output take their result (and accumulator) types. Gradients pass straight
    through (see `tenfold.quantize.fake`), so the result can be fine-tuned with `tenfold.train.fit`.
    """
    if isinstance(model, QuantizedModel):
        model = to_float(model, quantized=False)
    return QuantizedModel(_deepcopy(model), config or HLSConfig(), activations=activations,
                          hardware_mode=hardware_mode)


def _deepcopy(model: nn.Module) -> nn.Module:
    """`copy.deepcopy` that also copes with pruned modules, whose `weight` attribute is a computed tensor."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return clone_module(model, memo)


def to_float(model: QuantizedModel, *, quantized: bool = True) -> nn.Module:
    """A plain copy of the wrapped model; with `quantized` its weights and biases are the quantized values.

    Pruning masks are applied (pruned weights are exactly zero). The copy has the original class, so it can
    be saved with `tenfold.train.save_checkpoint`, priced with `tenfold.hardware.estimate` and exported.
    """
    if not isinstance(model, QuantizedModel):
        raise ModelError(f"to_float expects a QuantizedModel (from quantize_model), got {type(model).__name__}")
    plain = clone_module(model.model)
    for module in list(plain.modules()):
        if parametrize.is_parametrized(module):
            _unparametrize(module, quantized=quantized)
    return plain


def _unparametrize(module: nn.Module, *, quantized: bool) -> None:
    """Turn parametrized tensors back into plain parameters holding their quantized (or masked float) values.

    Not `parametrize.remove_parametrizations`: a deep copy shares its dynamically created class with the
    original, and removing the last parametrization deletes the property from that shared class, which
    would break the quantized model the copy came from.
    """
    values = {}
    with torch.no_grad():
        for tensor_name, chain in module.parametrizations.items():
            steps = list(chain)
            if hasattr(chain, "original"):
                source = chain.original
                value = source.detach().clone()
            else:  # a multi-tensor first step, e.g. a weight rebuilt from decomposition factors
                originals = []
                while hasattr(chain, f"original{len(originals)}"):
                    originals.append(getattr(chain, f"original{len(originals)}"))
                source = originals[0]
                value = steps.pop(0)(*originals).detach().clone()
            for step in steps:
                if quantized or isinstance(step, _PruneMask):
                    value = step(value)
            values[tensor_name] = (value, source.requires_grad)
    del module._modules["parametrizations"]
    module.__class__ = module.__class__.__bases__[0]  # parametrize made Parametrized<Class>(Class)
    for tensor_name in ("weight", "bias", *values):
        if tensor_name in values and tensor_name not in module._parameters:
            value, requires_grad = values[tensor_name]
            module.register_parameter(tensor_name, nn.Parameter(value, requires_grad=requires_grad))


strip_quantization = to_float


# ---------------------------------------------------------------------- config <-> plain state


def _layer_state(layer: LayerConfig) -> dict[str, Any]:
    return {
        "precision": {kind: getattr(layer.precision, kind).to_cpp() for kind in ("weight", "bias", "accum", "result")},
        "reuse_factor": layer.reuse_factor,
        "strategy": layer.strategy.value,
        "parallelization_factor": layer.parallelization_factor,
    }


def _layer_from_state(state: dict[str, Any]) -> LayerConfig:
    precision = LayerPrecision(**{kind: FixedPoint.parse(text) for kind, text in state["precision"].items()})
    return LayerConfig(reuse_factor=state["reuse_factor"], strategy=state["strategy"], precision=precision,
                       parallelization_factor=state["parallelization_factor"])


def config_to_state(config: HLSConfig) -> dict[str, Any]:
    """A lossless dict of plain types (C++ type strings keep modes hls4ml cannot spell, e.g. AP_WRAP_SM)."""
    return {
        "default": _layer_state(config.default),
        "layers": {name: _layer_state(layer) for name, layer in config.layers.items()},
        "io_type": config.io_type.value,
        "device": config.device,
        "clock_period_ns": config.clock_period_ns,
        "backend": config.backend,
    }


def config_from_state(state: dict[str, Any]) -> HLSConfig:
    """Inverse of `config_to_state`."""
    return HLSConfig(
        default=_layer_from_state(state["default"]),
        layers={name: _layer_from_state(layer) for name, layer in state["layers"].items()},
        io_type=state["io_type"],
        device=state["device"],
        clock_period_ns=state["clock_period_ns"],
        backend=state["backend"],
    )
