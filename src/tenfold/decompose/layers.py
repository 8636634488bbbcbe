"""One layer's weight as a few (fixed-point) factors, in two forms that compute the same function.

*Reconstructed* (Nekooei & Safari, 2022): the layer stays an ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``
but its ``weight`` is a ``torch.nn.utils.parametrize`` parametrization (:class:`DecomposedWeight`) that
rebuilds it from factor ``nn.Parameter``s on every access, snapped to their fixed-point grid with a
straight-through estimator. The network's structure does not change, so tenfold's hardware model and
emulation read the layer as before, while ``state_dict()`` holds only the factors (``parametrizations.
weight.original0``, ``original1``, ... in the order below) and the bias — this is what the chip stores.

*Factorized*: a :class:`FactorizedLayer` (an ``nn.Sequential``) of small layers whose weights are the
factors: CP of a 2-D conv → 1×1 conv (C_in→R), depthwise kh×1, depthwise 1×kw, 1×1 conv (R→C_out) + bias;
"cp3" (kernel modes merged) → 1×1, depthwise kh×kw, 1×1; Tucker-2 → 1×1 (C_in→R_in), kh×kw (R_in→R_out),
1×1 (R_out→C_out); Linear → Linear(in→R), Linear(R→out). Strides, padding and dilation go to the spatial
layers, split per axis, which is exact because the kernel is separable and zero padding commutes with
the 1×1 layers.

Factor order (``factors`` everywhere here): CP → (C_out×R, C_in×R, then one k×R factor per kernel mode,
or a single (kh·kw)×R one for "cp3"); Tucker-2 → (U_out C_out×R_out, U_in C_in×R_in, core R_out×R_in×k…).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from tenfold.decompose.cp import CPResult, CPTensor, cp_als, cp_reshape
from tenfold.decompose.grid import FactorGrid
from tenfold.decompose.quantized import QuantizedCPResult, absorb_weights, quantized_cp_als
from tenfold.decompose.tucker import QuantizedTuckerResult, TuckerResult, TuckerTensor, quantized_tucker, tucker_hooi
from tenfold.errors import ConfigError, ModelError
from tenfold.modules import clone_module

__all__ = [
    "FORMS",
    "METHODS",
    "DecomposedWeight",
    "FactorizedLayer",
    "OnGrid",
    "compose_weight",
    "decompose_layer",
    "decompose_weight",
    "factor_shapes",
    "layer_from_result",
    "layer_kind",
    "plain_layer",
    "unsupported_reason",
]

METHODS = ("cp", "cp3", "tucker2")
FORMS = ("reconstructed", "factorized")
Rank = int | tuple[int, int]


# ------------------------------------------------------------------------------------------- checks


def layer_kind(module: nn.Module) -> str | None:
    """The kind of a layer decomposed here ("linear", "conv1d" or "conv2d"); None for any other module."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv1d):
        return "conv1d"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    return None


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be decomposed (None when it can)."""
    if layer_kind(module) is None:
        return (f"{type(module).__name__} is not a decomposable layer; supported: nn.Linear, nn.Conv1d, "
                "nn.Conv2d")
    if parametrize.is_parametrized(module, "weight"):
        kind = "already decomposed" if is_decomposed(module) else "its weight is parametrized"
        return f"{kind}; decompose the original layer instead"
    if hasattr(module, "weight_orig"):
        return "it carries a pruning mask; call torch.nn.utils.prune.remove(layer, 'weight') first"
    groups = int(getattr(module, "groups", 1))
    if groups != 1:
        return f"grouped convolution (groups={groups}) is not supported; only groups=1 layers are decomposed"
    return None


def check_method(method: str) -> str:
    method = {"cp4": "cp"}.get(method, method) if isinstance(method, str) else method
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)} (cp4 is an alias of cp); got {method!r}")
    return method


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ConfigError(f"form must be one of {', '.join(FORMS)}; got {form!r}")
    return form


def is_decomposed(module: nn.Module) -> bool:
    """True for a reconstructed-form layer (weight parametrized by :class:`DecomposedWeight`)."""
    return decomposed_weight_of(module) is not None


def decomposed_weight_of(module: nn.Module) -> DecomposedWeight | None:
    """The :class:`DecomposedWeight` parametrization of a reconstructed-form layer, else None."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    first = module.parametrizations.weight[0]
    return first if isinstance(first, DecomposedWeight) else None


# ------------------------------------------------------------------------------------------- shapes


def _cp_modes(weight_shape: Sequence[int], method: str) -> tuple[int, ...]:
    """The sizes of the tensor CP decomposes: the weight, or (C_out, C_in, kh·kw) for "cp3"."""
    shape = tuple(int(s) for s in weight_shape)
    if method == "cp3" and len(shape) > 3:
        return (shape[0], shape[1], math.prod(shape[2:]))
    return shape


def factor_shapes(weight_shape: Sequence[int], method: str, rank: Rank) -> list[tuple[int, ...]]:
    """Shapes of the factors that replace a weight of ``weight_shape`` (in the module docstring's order)."""
    method = check_method(method)
    shape = tuple(int(s) for s in weight_shape)
    if method == "tucker2":
        r_out, r_in = rank  # type: ignore[misc]
        return [(shape[0], r_out), (shape[1], r_in), (r_out, r_in, *shape[2:])]
    return [(size, int(rank)) for size in _cp_modes(shape, method)]  # type: ignore[arg-type]


def _component_dims(method: str, count: int) -> list[int | None]:
    """Axis of each factor that indexes rank-one components (None: the Tucker core, scaled as a whole)."""
    return [1, 1, None] if method == "tucker2" else [1] * count


def compose_weight(method: str, weight_shape: Sequence[int], factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The layer weight the factors stand for (differentiable)."""
    if method == "tucker2":
        u_out, u_in, core = factors
        return TuckerTensor(core, [u_out, u_in] + [None] * (core.ndim - 2)).to_tensor()
    first = factors[0]
    weights = torch.ones(first.shape[1], dtype=first.dtype, device=first.device)
    return CPTensor(weights, list(factors)).to_tensor().reshape(tuple(weight_shape))


# ------------------------------------------------------------------------------------- decomposition


def decompose_weight(weight: torch.Tensor, method: str, rank: Rank, grid: FactorGrid | None, *,
                     n_iter_max: int | None = None, seed: int = 0, **options: Any) -> tuple[list[torch.Tensor], Any]:
    """Factors of ``weight`` (module docstring's order, the weight's dtype) and the solver's result object.

    With a grid: :func:`quantized_cp_als` / :func:`quantized_tucker`, so the factors lie on the grid; without:
    float :func:`cp_als` (CP weights absorbed evenly into the factors) / :func:`tucker_hooi`. ``options``
    go to the solver.
    """
    method = check_method(method)
    data = weight.detach()
    solver_args = dict(options, seed=seed)
    if n_iter_max is not None:
        solver_args["n_iter_max"] = n_iter_max
    if method == "tucker2":
        ranks = [int(rank[0]), int(rank[1])] + [None] * (data.ndim - 2)  # type: ignore[index]
        if grid is None:
            result = tucker_hooi(data, ranks, **solver_args)
        else:
            result = quantized_tucker(data, ranks, grid.precision, scale=grid.scale, **solver_args)
        tucker = result.tucker
        factors = [tucker.factors[0], tucker.factors[1], tucker.core]
    else:
        tensor = cp_reshape(data, "cp3" if method == "cp3" else "cp4")
        if grid is None:
            result = cp_als(tensor, int(rank), **solver_args)  # type: ignore[arg-type]
        else:
            result = quantized_cp_als(tensor, int(rank), grid.precision, scale=grid.scale,  # type: ignore[arg-type]
                                      **solver_args)
        factors = absorb_weights(result.cp) if grid is None else list(result.cp.factors)  # λ = 1 when quantized
    return [f.to(weight.dtype).contiguous() for f in factors], result


# -------------------------------------------------------------------------------------- reconstructed


class DecomposedWeight(nn.Module):
    """Parametrization: the weight is rebuilt from factors (snapped to ``grid`` when there is one).

    Registered with ``parametrize.register_parametrization(layer, "weight", DecomposedWeight(...))``, which
    stores ``initial`` as the factor parameters. Assigning a full weight to the layer afterwards would need
    a new decomposition and is refused; decompose the original layer again instead.
    """

    def __init__(self, weight_shape: Sequence[int], method: str, rank: Rank, grid: FactorGrid | None,
                 initial: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.method = check_method(method)
        self.rank = rank
        self.grid = grid
        expected = factor_shapes(self.weight_shape, self.method, rank)
        if [tuple(t.shape) for t in initial] != expected:
            raise ModelError(f"factor shapes {[tuple(t.shape) for t in initial]} do not match the expected {expected}")
        self._initial: list[torch.Tensor] | None = [t.detach().clone(memory_format=torch.contiguous_format)
                                                    for t in initial]

    def grids(self) -> list[FactorGrid | None]:
        """The grid of each factor (the Tucker core has one exponent for the whole tensor)."""
        if self.grid is None:
            return [None] * len(self.component_dims())
        return [self.grid if dim is not None else self.grid.for_whole_tensor() for dim in self.component_dims()]

    def component_dims(self) -> list[int | None]:
        return _component_dims(self.method, len(factor_shapes(self.weight_shape, self.method, self.rank)))

    def snapped(self, factors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The factors as the forward pass uses them: on the grid, with straight-through gradients."""
        return [f if grid is None else grid.snap(f, dim)
                for f, grid, dim in zip(factors, self.grids(), self.component_dims(), strict=True)]

    def forward(self, *factors: torch.Tensor) -> torch.Tensor:
        return compose_weight(self.method, self.weight_shape, self.snapped(factors))

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._initial is None:
            raise ModelError(
                "cannot assign a full weight to a decomposed layer; decompose the original layer again "
                "(tenfold.decompose.decompose_model) or fine-tune the factors"
            )
        initial, self._initial = self._initial, None
        return tuple(t.to(weight.device, weight.dtype) for t in initial)

    def extra_repr(self) -> str:
        precision = "float" if self.grid is None else self.grid.precision.to_hls4ml()
        scale = "" if self.grid is None else f", scale={self.grid.scale}"
        return f"method={self.method}, rank={self.rank}, precision={precision}{scale}"


def _reconstructed(layer: nn.Module, method: str, rank: Rank, grid: FactorGrid | None,
                   factors: Sequence[torch.Tensor]) -> nn.Module:
    new = clone_module(layer)
    parametrization = DecomposedWeight(tuple(layer.weight.shape), method, rank, grid, factors)
    parametrize.register_parametrization(new, "weight", parametrization)
    return new


# ----------------------------------------------------------------------------------------- factorized


class OnGrid(nn.Module):
    """Parametrization of one small layer of a factorized form: its weight snapped to a grid (STE)."""

    def __init__(self, grid: FactorGrid, component_dim: int | None) -> None:
        super().__init__()
        self.grid = grid
        self.component_dim = component_dim

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.grid.snap(weight, self.component_dim)

    def extra_repr(self) -> str:
        return f"precision={self.grid.precision.to_hls4ml()}, scale={self.grid.scale}"


def _layer_config(layer: nn.Module) -> dict[str, Any]:
    """Constructor arguments that rebuild ``layer``'s type (without its weights)."""
    if isinstance(layer, nn.Linear):
        return {"in_features": layer.in_features, "out_features": layer.out_features, "bias": layer.bias is not None}
    return {
        "in_channels": layer.in_channels, "out_channels": layer.out_channels, "kernel_size": tuple(layer.kernel_size),
        "stride": tuple(layer.stride), "padding": layer.padding if isinstance(layer.padding, str)
        else tuple(layer.padding), "dilation": tuple(layer.dilation), "groups": layer.groups,
        "bias": layer.bias is not None, "padding_mode": layer.padding_mode,
    }


_LAYER_TYPES = {"linear": nn.Linear, "conv1d": nn.Conv1d, "conv2d": nn.Conv2d}


def plain_layer(module: nn.Module) -> nn.Module:
    """An ordinary ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` holding the weight ``module`` computes with.

    Built afresh rather than with ``parametrize.remove_parametrizations``: deep copies of a parametrized
    module share its generated class, and removing the parametrization from one copy breaks the others.
    """
    kind = layer_kind(module)
    if kind is None:
        raise ModelError(f"{type(module).__name__} is not a Linear/Conv1d/Conv2d layer")
    weight = module.weight.detach()
    layer = _LAYER_TYPES[kind](**_layer_config(module), device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if module.bias is not None:
            layer.bias.copy_(module.bias)
    return layer.train(module.training)


class FactorizedLayer(nn.Sequential):
    """A Linear/Conv replaced by the sequence of small layers its factors define (see the module docstring).

    Children are named ``inputs`` (C_in→R), the spatial layers (``spatial``, or ``vertical`` and
    ``horizontal`` for a 4-mode CP of a 2-D conv, or ``core`` for Tucker-2) and ``outputs`` (R→C_out, with
    the original bias). ``layer_config`` rebuilds the original layer type for :meth:`to_dense`.
    """

    def __init__(self, kind: str, layer_config: dict[str, Any], method: str, rank: Rank, grid: FactorGrid | None,
                 layers: OrderedDict[str, nn.Module]) -> None:
        super().__init__(layers)
        self.kind = kind
        self.layer_config = dict(layer_config)
        self.method = check_method(method)
        self.rank = rank
        self.grid = grid

    @property
    def weight_shape(self) -> tuple[int, ...]:
        config = self.layer_config
        if self.kind == "linear":
            return (config["out_features"], config["in_features"])
        return (config["out_channels"], config["in_channels"], *config["kernel_size"])

    def factors(self) -> list[torch.Tensor]:
        """The factors as the forward pass uses them (grid values when quantized), module docstring's order."""
        out_size, in_size = self.weight_shape[:2]
        inputs, outputs = self.inputs.weight, self.outputs.weight
        first = inputs.reshape(inputs.shape[0], in_size).T
        last = outputs.reshape(out_size, outputs.shape[1])
        if self.method == "tucker2":
            return [last, first, self.core.weight]
        if self.kind == "linear":
            return [last, first]
        spatial = [self.vertical, self.horizontal] if "vertical" in self._modules else [self.spatial]
        kernels = [layer.weight.reshape(layer.weight.shape[0], -1).T for layer in spatial]
        return [last, first, *kernels]

    def reconstruct_weight(self) -> torch.Tensor:
        """The full weight this sequence computes with."""
        return compose_weight(self.method, self.weight_shape, self.factors())

    def to_dense(self) -> nn.Module:
        """One plain layer of the original type holding the reconstructed weight and the bias."""
        reference = self.outputs.weight
        layer = _LAYER_TYPES[self.kind](**self.layer_config, device=reference.device, dtype=reference.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.reconstruct_weight())
            if layer.bias is not None:
                layer.bias.copy_(self.outputs.bias)
        return layer.train(self.training)

    def extra_repr(self) -> str:
        precision = "float" if self.grid is None else self.grid.precision.to_hls4ml()
        return f"kind={self.kind}, method={self.method}, rank={self.rank}, precision={precision}"


def _spatial_conv(kind: str, config: dict[str, Any], channels_in: int, channels_out: int, groups: int,
                  axis: int | None, **factory: Any) -> nn.Module:
    """The conv that carries the kernel: all axes (axis=None) or only ``axis`` of a 2-D kernel."""
    kernel, stride, dilation, padding = (config["kernel_size"], config["stride"], config["dilation"],
                                         config["padding"])
    if axis is not None:
        keep = [axis == 0, axis == 1]
        kernel = tuple(k if on else 1 for k, on in zip(kernel, keep, strict=True))
        stride = tuple(s if on else 1 for s, on in zip(stride, keep, strict=True))
        dilation = tuple(d if on else 1 for d, on in zip(dilation, keep, strict=True))
        if not isinstance(padding, str):
            padding = tuple(p if on else 0 for p, on in zip(padding, keep, strict=True))
    conv = nn.Conv1d if kind == "conv1d" else nn.Conv2d
    return conv(channels_in, channels_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=False, padding_mode=config["padding_mode"], **factory)


def _pointwise(kind: str, channels_in: int, channels_out: int, bias: bool, **factory: Any) -> nn.Module:
    if kind == "linear":
        return nn.Linear(channels_in, channels_out, bias=bias, **factory)
    conv = nn.Conv1d if kind == "conv1d" else nn.Conv2d
    return conv(channels_in, channels_out, 1, bias=bias, **factory)


def _set_weight(layer: nn.Module, value: torch.Tensor, grid: FactorGrid | None, component_dim: int | None) -> None:
    value = value.reshape(layer.weight.shape).clone(memory_format=torch.contiguous_format)
    layer.weight = nn.Parameter(value, requires_grad=layer.weight.requires_grad)
    if grid is not None:
        parametrize.register_parametrization(layer, "weight", OnGrid(grid, component_dim))


def _factorized(layer: nn.Module, method: str, rank: Rank, grid: FactorGrid | None,
                factors: Sequence[torch.Tensor]) -> FactorizedLayer:
    kind = layer_kind(layer)
    assert kind is not None
    config = _layer_config(layer)
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    out_size, in_size = layer.weight.shape[:2]
    has_bias = layer.bias is not None
    if method == "tucker2":
        u_out, u_in, core = factors
        r_out, r_in = core.shape[:2]
        parts = OrderedDict(inputs=_pointwise(kind, in_size, r_in, False, **factory))
        parts["core"] = (nn.Linear(r_in, r_out, bias=False, **factory) if kind == "linear"
                         else _spatial_conv(kind, config, r_in, r_out, 1, None, **factory))
        parts["outputs"] = _pointwise(kind, r_out, out_size, has_bias, **factory)
        _set_weight(parts["core"], core, None if grid is None else grid.for_whole_tensor(), None)
        first, last = u_in, u_out
    else:
        last, first, *kernels = factors
        width = first.shape[1]
        parts = OrderedDict(inputs=_pointwise(kind, in_size, width, False, **factory))
        if kind == "conv2d" and len(kernels) == 2:
            parts["vertical"] = _spatial_conv(kind, config, width, width, width, 0, **factory)
            parts["horizontal"] = _spatial_conv(kind, config, width, width, width, 1, **factory)
        elif kind != "linear":
            parts["spatial"] = _spatial_conv(kind, config, width, width, width, None, **factory)
        parts["outputs"] = _pointwise(kind, width, out_size, has_bias, **factory)
        names = [name for name in parts if name not in ("inputs", "outputs")]
        for name, kernel in zip(names, kernels, strict=True):
            _set_weight(parts[name], kernel.T, grid, 0)  # (k, R) → one depthwise filter per component
    _set_weight(parts["inputs"], first.T, grid, 0)
    _set_weight(parts["outputs"], last, grid, 1)
    if has_bias:
        with torch.no_grad():
            parts["outputs"].bias.copy_(layer.bias)
        parts["outputs"].bias.requires_grad_(layer.bias.requires_grad)
    return FactorizedLayer(kind, config, method, rank, grid, parts)


# --------------------------------------------------------------------------------------- entry point


def decompose_layer(layer: nn.Module, method: str, rank: Rank, grid: FactorGrid | None, *,
                    form: str = "reconstructed", factors: Sequence[torch.Tensor] | None = None,
                    n_iter_max: int | None = None, seed: int = 0, name: str = "layer", **options: Any) -> nn.Module:
    """A decomposed copy of ``layer`` (never modified) in the given form.

    ``factors`` (module docstring's order) skips the decomposition, e.g. to start from a known
    :class:`~tenfold.decompose.QuantizedCPResult` or to rebuild a checkpoint's structure.
    """
    method, form = check_method(method), check_form(form)
    reason = unsupported_reason(layer)
    if reason is not None:
        raise ModelError(f"cannot decompose layer '{name}': {reason}")
    if factors is None:
        if not bool(torch.isfinite(layer.weight.detach()).all()):
            raise ModelError(
                f"layer '{name}' has NaN or inf weights; fix or reload the weights before decomposing it"
            )
        factors, _ = decompose_weight(layer.weight, method, rank, grid, n_iter_max=n_iter_max, seed=seed, **options)
    expected = factor_shapes(tuple(layer.weight.shape), method, rank)
    if [tuple(f.shape) for f in factors] != expected:
        raise ModelError(
            f"layer '{name}': factor shapes {[tuple(f.shape) for f in factors]} do not fit its weight "
            f"{tuple(layer.weight.shape)} with method {method} and rank {rank}; expected {expected}"
        )
    factors = [f.detach().to(layer.weight.device, layer.weight.dtype) for f in factors]
    if form == "reconstructed":
        return _reconstructed(layer, method, rank, grid, factors)
    return _factorized(layer, method, rank, grid, factors)


def layer_from_result(layer: nn.Module, result: CPResult | TuckerResult, *, form: str = "reconstructed",
                      name: str = "layer") -> nn.Module:
    """A decomposed copy of ``layer`` built from a decomposition of its weight computed elsewhere.

    A :class:`QuantizedCPResult` / :class:`QuantizedTuckerResult` gives quantized factors on its own grid
    (the layer's weight then equals the result's dequantized tensor exactly); a float result gives float
    factors (CP weights absorbed evenly). CP results of the kernel-merged tensor count as "cp3"; Tucker
    results must keep every kernel mode whole (Tucker-2).
    """
    shape = tuple(int(s) for s in layer.weight.shape)
    if isinstance(result, CPResult):
        method = "cp" if result.cp.ndim == len(shape) else "cp3"
        rank: Rank = result.cp.rank
        quantized = isinstance(result, QuantizedCPResult)
        factors = list(result.cp.factors) if quantized else absorb_weights(result.cp)
    elif isinstance(result, TuckerResult):
        tucker = result.tucker
        if any(f is None for f in tucker.factors[:2]) or any(f is not None for f in tucker.factors[2:]):
            raise ModelError(f"layer '{name}': only Tucker-2 results (both channel modes decomposed, kernel modes "
                             "whole) can replace a layer; compute one with tucker2 or quantized_tucker")
        method, rank = "tucker2", (tucker.ranks[0], tucker.ranks[1])
        quantized = isinstance(result, QuantizedTuckerResult)
        factors = [tucker.factors[0], tucker.factors[1], tucker.core]
    else:
        raise ModelError(f"expected a CP or Tucker result, got {type(result).__name__}")
    grid = FactorGrid(result.precision, result.scale) if quantized else None  # type: ignore[union-attr]
    return decompose_layer(layer, method, rank, grid, form=form, factors=factors, name=name)
