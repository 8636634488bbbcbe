"""Decompose a whole network: pick the layers, choose their ranks, replace them, report what it saved.

``decompose_model(model, 0.25)`` returns a decomposed copy (the input is never modified) and a
:class:`DecompositionReport`. By default every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` is decomposed
except the first and the last weighted layer (in ``named_modules`` order): the first conv of an image
network has 3 input channels and little to gain, the classifier is small and the most sensitive, and
decomposition papers (Lebedev et al. 2015; Nekooei & Safari 2022) leave them whole too. ``skip=()``
decomposes them as well. Layers that cannot be decomposed (grouped convolutions, pruned or already
decomposed layers) are reported as skipped; naming such a layer explicitly is an error.

Ranks follow TensorLy's convention: an int is the rank (for Tucker-2, the rank of both channel modes,
capped at their sizes), a float in (0, 1] is the fraction of the layer's weights to keep
(:func:`rank_for_ratio`), a dict gives one of those per layer name (and then names the layers to
decompose unless ``layers`` does). A layer whose factors would not be smaller than its weight is left
unchanged, with the reason in the report.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from tenfold.decompose.grid import FactorGrid, as_factor_grid
from tenfold.decompose.layers import (
    FactorizedLayer,
    OnGrid,
    Rank,
    check_form,
    check_method,
    decompose_layer,
    decomposed_weight_of,
    factor_shapes,
    layer_kind,
    plain_layer,
    unsupported_reason,
)
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.fixed_point import FixedPoint
from tenfold.modules import clone_module

__all__ = [
    "EXPONENT_BITS",
    "DecomposedLayer",
    "DecompositionReport",
    "LayerReport",
    "decompose_model",
    "decomposed_layers",
    "materialize",
    "rank_for_ratio",
    "requantize_",
]

EXPONENT_BITS = 8
"""Bits counted per stored power-of-two exponent (a shift of up to ±127) in the reports' bit totals."""

RankSpec = int | float | tuple[int, int] | Mapping[str, "int | float | tuple[int, int]"]
ProgressCallback = Callable[[int, int, str], None]  # (layers done, layers in total, name of the last one)


# ---------------------------------------------------------------------------------------------- ranks


def _cp_sizes(shape: Sequence[int], method: str) -> list[int]:
    return [s[0] for s in factor_shapes(shape, method, 1)]


def rank_for_ratio(shape: Sequence[int], ratio: float, method: str = "cp") -> Rank:
    """The largest rank whose factors hold at most ``ratio`` × the weights of a layer of ``shape`` (at least 1).

    CP: R = floor(ratio · numel / Σ mode sizes). Tucker-2: channel ranks proportional to the channel counts,
    R_out ≈ α·C_out and R_in ≈ α·C_in with α solving C_out·R_out + R_out·R_in·k + C_in·R_in = ratio · numel,
    each rounded down and kept in 1..size.
    """
    method = check_method(method)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ModelError(f"a layer weight shape is (out, in, *kernel) with positive sizes; got {shape}")
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise ConfigError(f"a rank ratio is the fraction of the weights to keep, in (0, 1]; got {ratio!r}")
    numel = math.prod(shape)
    if method != "tucker2":
        return max(1, int(ratio * numel // sum(_cp_sizes(shape, method))))
    out_size, in_size = shape[:2]
    kernel = math.prod(shape[2:])
    a, b, c = out_size * in_size * kernel, out_size**2 + in_size**2, -ratio * numel  # a·α² + b·α + c = 0
    alpha = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return (min(out_size, max(1, int(alpha * out_size))), min(in_size, max(1, int(alpha * in_size))))


def _resolve_rank(value: Any, shape: tuple[int, ...], method: str, name: str) -> Rank:
    """A concrete rank for one layer from an int, a ratio or (Tucker-2) a pair."""
    if isinstance(value, bool):
        raise ConfigError(f"rank for layer '{name}' must be an int, a float ratio or a pair; got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"rank for layer '{name}' must be >= 1 (the number of rank-one terms); got {value}")
        return (min(value, shape[0]), min(value, shape[1])) if method == "tucker2" else value
    if isinstance(value, float):
        if not math.isfinite(value) or not 0 < value <= 1:
            raise ConfigError(
                f"rank ratio for layer '{name}' must be in (0, 1] (the fraction of weights to keep); got {value}"
            )
        return rank_for_ratio(shape, value, method)
    if isinstance(value, tuple | list) and len(value) == 2:
        if method != "tucker2":
            raise ConfigError(f"a rank pair {tuple(value)} for layer '{name}' needs method='tucker2'; CP takes one int")
        pair = []
        for rank, size, mode in zip(value, shape[:2], ("output", "input"), strict=True):
            if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= size:
                raise ConfigError(
                    f"Tucker-2 {mode} rank for layer '{name}' must be an int in 1..{size}; got {rank!r}"
                )
            pair.append(rank)
        return (pair[0], pair[1])
    raise ConfigError(
        f"rank for layer '{name}' must be an int >= 1, a float ratio in (0, 1] or (Tucker-2) a pair; got {value!r}"
    )


# --------------------------------------------------------------------------------------------- report


@dataclass
class LayerReport:
    """What happened to one layer. Parameters and bits count weights only (biases are kept as they are)."""

    name: str
    kind: str  # linear, conv1d, conv2d
    weight_shape: tuple[int, ...]
    decomposed: bool
    reason: str = ""  # why a layer was left unchanged
    method: str | None = None
    rank: Rank | None = None
    quantized: bool = False
    precision: str | None = None
    params_before: int = 0
    params_after: int = 0
    bits_before: int = 0
    bits_after: int = 0
    relative_error: float = 0.0  # ||W - Ŵ||_F / ||W||_F of the weight the layer now computes with
    seconds: float = 0.0

    @property
    def compression_ratio(self) -> float:
        return self.params_before / self.params_after if self.params_after else math.inf


@dataclass
class DecompositionReport:
    """Per-layer outcome plus totals over the examined layers and the whole model."""

    layers: list[LayerReport]
    method: str
    form: str
    precision: str | None
    scale: str
    model_params_before: int
    model_params_after: int
    seconds: float

    @property
    def decomposed(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.decomposed]

    @property
    def params_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def params_after(self) -> int:
        return sum(layer.params_after for layer in self.layers)

    @property
    def bits_before(self) -> int:
        return sum(layer.bits_before for layer in self.layers)

    @property
    def bits_after(self) -> int:
        return sum(layer.bits_after for layer in self.layers)

    @property
    def compression_ratio(self) -> float:
        """Weights before / after over the examined layers (skipped ones count unchanged)."""
        return self.params_before / self.params_after if self.params_after else math.inf

    @property
    def bit_compression_ratio(self) -> float:
        """Weight bits before / after over the examined layers."""
        return self.bits_before / self.bits_after if self.bits_after else math.inf

    @property
    def model_compression_ratio(self) -> float:
        """All parameters of the model (biases, batch norms included) before / after."""
        return self.model_params_before / self.model_params_after if self.model_params_after else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (ranks as lists, totals included)."""
        out = dataclasses.asdict(self)
        for layer in out["layers"]:
            layer["weight_shape"] = list(layer["weight_shape"])
            if isinstance(layer["rank"], tuple):
                layer["rank"] = list(layer["rank"])
        for name in ("params_before", "params_after", "bits_before", "bits_after", "compression_ratio",
                     "bit_compression_ratio", "model_compression_ratio"):
            out[name] = getattr(self, name)
        return out


def _stored_bits(shape: tuple[int, ...], method: str, rank: Rank, grid: FactorGrid | None, dtype: torch.dtype) -> int:
    shapes = factor_shapes(shape, method, rank)
    entries = sum(math.prod(s) for s in shapes)
    if grid is None:
        return entries * torch.finfo(dtype).bits
    if grid.scale == "none":
        exponents = 0
    elif grid.scale == "per_factor":
        exponents = len(shapes)
    else:  # one per component of each factor; a Tucker core has one for the whole tensor
        exponents = sum(s[1] for s in shapes[:2]) + 1 if method == "tucker2" else sum(s[1] for s in shapes)
    return entries * grid.precision.width + exponents * EXPONENT_BITS


# ------------------------------------------------------------------------------------------ selection


def _modules_in_factorized(model: nn.Module) -> set[str]:
    inside: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, FactorizedLayer):
            inside.update(f"{name}.{child}" for child, _ in module.named_modules() if child)
    return inside


def _unknown_layer(name: str, known: Iterable[str], what: str = "layer") -> ModelError:
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; weighted layers: {', '.join(known[:12])}"
    return ModelError(f"{what} '{name}' is not a module of the model{hint}")


def _select(model: nn.Module, layers: Sequence[str] | None, skip: Iterable[str]
            ) -> tuple[list[str], dict[str, str]]:
    """Layers to decompose and {name: reason} for weighted layers that are left unchanged."""
    modules = dict(model.named_modules())
    inside = _modules_in_factorized(model)
    weighted = [name for name, module in modules.items()
                if name and name not in inside and layer_kind(module) is not None]
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        chosen = []
        for name in layers:
            if name not in modules:
                raise _unknown_layer(name, weighted)
            reason = unsupported_reason(modules[name])
            if reason is not None:
                raise ModelError(f"cannot decompose layer '{name}': {reason}")
            chosen.append(name)
        return list(dict.fromkeys(chosen)), {}
    if isinstance(skip, str):
        skip = [skip]
    skipped: dict[str, str] = {}
    for token in skip:
        if token in ("first", "last"):
            if weighted:
                target = weighted[0] if token == "first" else weighted[-1]
                skipped.setdefault(target, f"skipped: the {token} weighted layer (skip={token!r})")
        elif token in weighted:
            skipped[token] = "skipped: named in skip"
        elif token in modules:
            raise ModelError(f"skip entry '{token}' is a {type(modules[token]).__name__}, not a Linear/Conv layer; "
                             "skip only names weighted layers")
        else:
            raise _unknown_layer(token, weighted, "skip entry")
    chosen = []
    for name in weighted:
        if name in skipped:
            continue
        reason = unsupported_reason(modules[name])
        if reason is not None:
            skipped[name] = reason
        else:
            chosen.append(name)
    return chosen, skipped


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _relative_error(original: torch.Tensor, approx: torch.Tensor) -> float:
    original, approx = original.detach().double(), approx.detach().double()
    norm = float(original.norm())
    diff = float((original - approx).norm())
    return diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)


def _count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -------------------------------------------------------------------------------------- decompose_model


def decompose_model(model: nn.Module, ranks: RankSpec, *, method: str = "cp",
                    precision: FixedPoint | str | int | None = "fixed<8,1>", scale: str = "per_factor",
                    form: str = "reconstructed", layers: Sequence[str] | None = None,
                    skip: Iterable[str] = ("first", "last"), n_iter_max: int | None = None, seed: int = 0,
                    solver_options: Mapping[str, Any] | None = None, progress: ProgressCallback | None = None
                    ) -> tuple[nn.Module, DecompositionReport]:
    """A copy of ``model`` whose Linear/Conv layers are replaced by quantized CP or Tucker-2 factors.

    ``method``: "cp" (every mode: 4 for a 2-D conv, 2 for a Linear), "cp3" (kernel modes merged) or
    "tucker2". ``precision``: the factors' fixed-point type ("fixed<8,1>", a FixedPoint, a bit width) or
    None for float factors; ``scale``: "per_factor", "per_component_pow2" or "none" (see
    :mod:`tenfold.decompose.quantized`). ``form``: "reconstructed" (same layers, weights rebuilt from
    factors) or "factorized" (a sequence of small layers). ``layers``: names to decompose (default: all
    weighted layers but those in ``skip``; "first"/"last" there mean the first/last weighted layer).
    ``n_iter_max`` (None: the solver's default), ``seed`` and ``solver_options`` go to the solver
    (:func:`quantized_cp_als`, :func:`cp_als`, :func:`quantized_tucker` or :func:`tucker_hooi`).
    ``progress(done, total, name)`` is called after each layer. See the module docstring for ``ranks``.
    """
    start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise ModelError(f"decompose_model takes an nn.Module, got {type(model).__name__}")
    method, form = check_method(method), check_form(form)
    grid = as_factor_grid(precision, scale)
    options = dict(solver_options or {})
    for reserved in ("n_iter_max", "seed"):
        if reserved in options:
            raise ConfigError(f"pass {reserved} as decompose_model's own argument, not in solver_options")
    if isinstance(ranks, Mapping) and layers is None:
        layers = list(ranks)
    new = clone_module(model)
    chosen, skipped = _select(new, layers, skip)
    modules = dict(new.named_modules())
    reports: dict[str, LayerReport] = {}
    for name, reason in skipped.items():
        reports[name] = _unchanged(name, modules[name], reason)
    total = len(chosen)
    for done, name in enumerate(chosen, 1):
        layer = modules[name]
        if isinstance(ranks, Mapping):
            if name not in ranks:
                raise ConfigError(f"ranks has no entry for layer '{name}'; give one per layer in `layers`")
            value = ranks[name]
        else:
            value = ranks
        shape = tuple(int(s) for s in layer.weight.shape)
        rank = _resolve_rank(value, shape, method, name)
        params_after = sum(math.prod(s) for s in factor_shapes(shape, method, rank))
        if params_after >= layer.weight.numel():
            reports[name] = _unchanged(name, layer, (
                f"rank {rank} needs {params_after} factor entries, not fewer than the layer's "
                f"{layer.weight.numel()} weights; give a smaller rank"
            ))
        else:
            reports[name] = _decompose_one(new, name, layer, method, rank, grid, form, n_iter_max, seed, options)
        if progress is not None:
            progress(done, total, name)
    order = [name for name, _ in model.named_modules() if name in reports]
    report = DecompositionReport(
        layers=[reports[name] for name in order], method=method, form=form,
        precision=None if grid is None else grid.precision.to_hls4ml(), scale=scale,
        model_params_before=_count_parameters(model), model_params_after=_count_parameters(new),
        seconds=time.perf_counter() - start,
    )
    return new, report


def _unchanged(name: str, layer: nn.Module, reason: str) -> LayerReport:
    weight = layer.weight
    bits = weight.numel() * torch.finfo(weight.dtype).bits
    return LayerReport(name=name, kind=layer_kind(layer) or type(layer).__name__, weight_shape=tuple(weight.shape),
                       decomposed=False, reason=reason, params_before=weight.numel(), params_after=weight.numel(),
                       bits_before=bits, bits_after=bits)


def _decompose_one(root: nn.Module, name: str, layer: nn.Module, method: str, rank: Rank, grid: FactorGrid | None,
                   form: str, n_iter_max: int | None, seed: int, options: dict[str, Any]) -> LayerReport:
    began = time.perf_counter()
    original = layer.weight.detach().clone()
    new_layer = decompose_layer(layer, method, rank, grid, form=form, n_iter_max=n_iter_max, seed=seed, name=name,
                                **options)
    _set_module(root, name, new_layer)
    with torch.no_grad():
        approx = new_layer.reconstruct_weight() if isinstance(new_layer, FactorizedLayer) else new_layer.weight
    shape = tuple(original.shape)
    bits = original.numel() * torch.finfo(original.dtype).bits
    return LayerReport(
        name=name, kind=layer_kind(layer) or "", weight_shape=shape, decomposed=True, method=method, rank=rank,
        quantized=grid is not None, precision=None if grid is None else grid.precision.to_hls4ml(),
        params_before=original.numel(),
        params_after=sum(math.prod(s) for s in factor_shapes(shape, method, rank)),
        bits_before=bits, bits_after=_stored_bits(shape, method, rank, grid, original.dtype),
        relative_error=_relative_error(original, approx), seconds=time.perf_counter() - began,
    )


# ------------------------------------------------------------------------------- decomposed models


@dataclass
class DecomposedLayer:
    """One decomposed layer of a model, with its factors as the forward pass uses them (detached)."""

    name: str
    form: str
    kind: str
    method: str
    rank: Rank
    grid: FactorGrid | None
    weight_shape: tuple[int, ...]
    factors: list[torch.Tensor] = field(repr=False)
    component_dims: list[int | None] = field(repr=False)

    @property
    def quantized(self) -> bool:
        return self.grid is not None

    def codes(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(int64 codes, power-of-two exponents) of each factor: factor = codes · lsb · 2^exponents."""
        if self.grid is None:
            raise ConfigError(f"layer '{self.name}' has float factors; decompose with a precision to get codes")
        out = []
        for factor, dim in zip(self.factors, self.component_dims, strict=True):
            grid = self.grid if dim is not None else self.grid.for_whole_tensor()
            _, exps, codes = grid.project(factor, dim)
            out.append((codes, exps))
        return out

    def recipe(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild this layer's structure."""
        return {"form": self.form, "method": self.method,
                "rank": list(self.rank) if isinstance(self.rank, tuple) else self.rank,
                "precision": None if self.grid is None else self.grid.precision.to_hls4ml(),
                "scale": "per_factor" if self.grid is None else self.grid.scale}


def decomposed_layers(model: nn.Module) -> list[DecomposedLayer]:
    """Every decomposed layer of ``model`` (both forms), in ``named_modules`` order."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, FactorizedLayer):
            dims = [1, 1, None] if module.method == "tucker2" else [1] * (len(module.factors()))
            with torch.no_grad():
                factors = [f.detach().clone() for f in module.factors()]
            out.append(DecomposedLayer(name, "factorized", module.kind, module.method, module.rank, module.grid,
                                       module.weight_shape, factors, dims))
            continue
        weight = decomposed_weight_of(module)
        if weight is None:
            continue
        originals = _originals(module)
        with torch.no_grad():
            factors = [f.detach().clone() for f in weight.snapped(originals)]
        out.append(DecomposedLayer(name, "reconstructed", layer_kind(module) or "", weight.method, weight.rank,
                                   weight.grid, weight.weight_shape, factors, weight.component_dims()))
    return out


def _originals(module: nn.Module) -> list[torch.Tensor]:
    plist = module.parametrizations.weight
    count = sum(1 for key in plist._parameters if key.startswith("original"))
    return [getattr(plist, f"original{i}") for i in range(count)]


def requantize_(model: nn.Module) -> nn.Module:
    """In place: snap every stored factor of every decomposed layer onto its grid and return ``model``.

    The forward pass always uses grid values; after fine-tuning the stored (latent) factors drift between
    grid points. Snapping them changes no output but makes the stored factors what the chip stores.
    """
    with torch.no_grad():
        for module in model.modules():
            weight = decomposed_weight_of(module)
            if weight is not None:
                for factor, grid, dim in zip(_originals(module), weight.grids(), weight.component_dims(), strict=True):
                    if grid is not None:
                        factor.copy_(grid.project(factor, dim)[0])
            elif parametrize.is_parametrized(module, "weight"):
                for step in module.parametrizations.weight:
                    if isinstance(step, OnGrid):
                        original = module.parametrizations.weight.original
                        original.copy_(step.grid.project(original, step.component_dim)[0])
    return model


def materialize(model: nn.Module, *, merge_factorized: bool = False) -> nn.Module:
    """A plain copy for export (ONNX, hls4ml): ordinary layers holding the quantized weights.

    Reconstructed layers become ordinary ``nn.Conv2d``/``nn.Linear``/``nn.Conv1d`` with the rebuilt weight;
    factorized ones become a plain ``nn.Sequential`` of their small layers (or, with ``merge_factorized``,
    one layer of the original type with the rebuilt weight). Nothing refers to tenfold afterwards.
    """
    out = clone_module(model)
    for name, module in list(out.named_modules()):
        if isinstance(module, FactorizedLayer):
            plain = module.to_dense() if merge_factorized else nn.Sequential(
                OrderedDict((child_name, plain_layer(child)) for child_name, child in module.named_children())
            ).train(module.training)
            _set_module(out, name, plain)
        elif decomposed_weight_of(module) is not None:
            _set_module(out, name, plain_layer(module))
    return out
