"""Export to hls4ml: an explicit per-layer config, the converted project, its C simulation and a bit-exact check.

Weights are put on their fixed-point grid before conversion. hls4ml writes each weight with as many decimals
as the type has fractional bits, and a value k/2^F has exactly F decimals, so the C++ constants are the very
values tenfold emulates — any remaining mismatch is a real arithmetic difference, not a printing artefact.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from tenfold.errors import ConfigError, TenfoldError
from tenfold.hardware.hls_config import HLSConfig, Strategy
from tenfold.hardware.layers import extract_layers
from tenfold.quantize.emulate import emulate, quantize_weights_

CONVERTIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.BatchNorm1d,
               nn.BatchNorm2d, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LeakyReLU, nn.ELU, nn.AvgPool2d, nn.Identity,
               nn.Dropout)


class ExportError(TenfoldError):
    """The model or config cannot be turned into an hls4ml project."""


@dataclass
class Hls4mlProject:
    """A converted hls4ml model and where its project lives."""

    hls_model: Any
    output_dir: Path
    hls_config: dict[str, Any]
    input_shape: tuple[int, ...]
    compiled: bool = False
    compile_seconds: float = 0.0

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        if not self.compiled:
            raise ExportError("compile the project first (Hls4mlProject.compile())")
        batch = np.ascontiguousarray(inputs.reshape(len(inputs), -1), dtype=np.float64)
        return np.asarray(self.hls_model.predict(batch), dtype=np.float64).reshape(len(inputs), -1)

    def compile(self) -> Hls4mlProject:
        """Build the C simulation library with g++ (no Vivado needed)."""
        if shutil.which("g++") is None:
            raise ExportError("g++ was not found; install a C++ compiler (Debian: apt-get install g++) to compile "
                              "hls4ml's C simulation")
        start = time.perf_counter()
        try:
            self.hls_model.compile()
        except Exception as exc:  # hls4ml surfaces compiler failures as generic exceptions
            raise ExportError(f"hls4ml's C simulation did not compile in {self.output_dir}: {exc}") from None
        self.compiled = True
        self.compile_seconds = time.perf_counter() - start
        return self


@dataclass
class CheckReport:
    """hls4ml C simulation vs tenfold's emulation on the same inputs."""

    samples: int
    mismatched_samples: int
    mismatched_values: int
    max_abs_difference: float
    argmax_agreement: float
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return self.mismatched_values == 0


def hls4ml_config(model: nn.Module, config: HLSConfig, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """An explicit hls4ml config (granularity 'name'): every precision, reuse factor and strategy spelled out."""
    specs = extract_layers(model, input_shape)
    default = config.default
    layers: dict[str, Any] = {"input_1": {"Precision": {"result": default.precision.result.to_hls4ml()}}}
    for spec in specs:
        layer = config.layer(spec.name)
        name = spec.name.replace(".", "_")
        if spec.has_weights:
            strategy = layer.strategy
            if strategy == Strategy.RESOURCE_UNROLLED and config.io_type.value == "io_parallel":
                strategy = Strategy.RESOURCE  # hls4ml refuses resource_unrolled with io_parallel
            layers[name] = {
                "Precision": layer.precision.to_hls4ml(),
                "ReuseFactor": layer.reuse_factor,
                "Strategy": strategy.value,
            }
            if spec.kind != "dense" and layer.parallelization_factor != 1:
                layers[name]["ParallelizationFactor"] = layer.parallelization_factor
        elif spec.kind in {"activation", "pooling"}:
            layers[name] = {"Precision": {"result": layer.precision.result.to_hls4ml()}}
    model_section = default.to_hls4ml()
    model_section["Precision"] = {"default": _lossless_default(config, specs)}
    # without these hls4ml skips the channels-last conversion, which also transposes Linear weights
    model_section |= {"ChannelsLastConversion": "full", "TransposeOutputs": False, "BramFactor": 1_000_000_000,
                      "TraceOutput": False}
    return {"Model": model_section, "LayerName": layers}


def _lossless_default(config: HLSConfig, specs) -> str:
    """A type that holds every layer result exactly.

    hls4ml gives layers it inserts itself (flatten, channels-last transposes) the model default type; they only
    move values, so they must not round them — tenfold's emulation treats them as identities.
    """
    results = [config.default.precision.result] + [config.layer(spec.name).precision.result for spec in specs]
    integer = max(p.integer + (0 if p.signed else 1) for p in results)
    fraction = max(p.width - p.integer for p in results)
    return f"fixed<{integer + fraction},{integer}>"


def export_hls4ml(
    model: nn.Module,
    config: HLSConfig,
    input_shape: tuple[int, ...],
    output_dir: str | Path,
    *,
    project_name: str = "tenfold_model",
    compile: bool = True,
) -> tuple[Hls4mlProject, nn.Module]:
    """Convert `model` with hls4ml's PyTorch converter; returns the project and the grid-quantized model it holds."""
    try:
        import hls4ml
    except ImportError:
        raise ExportError("hls4ml is not installed; pip install 'hls4ml>=1.3'") from None
    _check_convertible(model)
    model = copy.deepcopy(model).eval()
    from tenfold.prune.masks import remove_masks

    remove_masks(model)
    quantize_weights_(model, config)
    model, input_shape = _drop_leading_flatten(model, tuple(input_shape))
    hls_config = hls4ml_config(model, config, input_shape)
    output_dir = Path(output_dir)
    try:
        hls_model = hls4ml.converters.convert_from_pytorch_model(
            model,
            hls_config=hls_config | {"InputShape": tuple(input_shape)},
            output_dir=str(output_dir),
            project_name=project_name,
            backend=config.backend,
            io_type=config.io_type.value,
            part=_part(config.device),
            clock_period=config.clock_period_ns,
        )
    except Exception as exc:  # hls4ml raises plain Exceptions for unsupported layers and settings
        raise ExportError(f"hls4ml could not convert the model: {exc}") from None
    project = Hls4mlProject(hls_model, output_dir, hls_config, tuple(input_shape))
    if compile:
        project.compile()
    return project, model


def check_bit_exact(project: Hls4mlProject, model: nn.Module, config: HLSConfig, inputs: torch.Tensor) -> CheckReport:
    """Compare hls4ml's C simulation with tenfold's emulation of the same grid-quantized model."""
    start = time.perf_counter()
    if len(project.input_shape) == 1:
        inputs = inputs.reshape(len(inputs), -1)
    expected = emulate(model, inputs, config).reshape(len(inputs), -1).numpy()
    simulated = project.predict(_channels_last(inputs).numpy())
    if simulated.shape != expected.shape:
        raise ExportError(f"hls4ml returned shape {simulated.shape}, tenfold emulated {expected.shape}")
    different = expected != simulated
    return CheckReport(
        samples=len(inputs),
        mismatched_samples=int(different.any(axis=1).sum()),
        mismatched_values=int(different.sum()),
        max_abs_difference=float(np.abs(expected - simulated).max()) if expected.size else 0.0,
        argmax_agreement=float((expected.argmax(axis=1) == simulated.argmax(axis=1)).mean()),
        seconds=time.perf_counter() - start,
    )


def _drop_leading_flatten(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """Feed flat inputs instead of flattening images on chip.

    hls4ml 1.3 mis-orders a Flatten that directly follows a multi-dimensional *input* (it applies its
    channels-last transpose to data that was never transposed, swapping height and width), so a model that
    starts with Flatten is exported without it and takes the flattened sample, which is what the hardware
    receives anyway.
    """
    if len(input_shape) < 2:
        return model, input_shape
    graph_module = fx.symbolic_trace(model)
    placeholder = next(node for node in graph_module.graph.nodes if node.op == "placeholder")
    users = list(placeholder.users)
    if len(users) != 1 or users[0].op != "call_module":
        return model, input_shape
    first = graph_module.get_submodule(users[0].target)
    if not isinstance(first, nn.Flatten) or first.start_dim != 1:
        return model, input_shape
    users[0].replace_all_uses_with(placeholder)
    graph_module.graph.erase_node(users[0])
    graph_module.recompile()
    return graph_module, (math.prod(input_shape),)


def _channels_last(inputs: torch.Tensor) -> torch.Tensor:
    """hls4ml's C simulation takes channels-last images."""
    if inputs.dim() == 4:
        return inputs.permute(0, 2, 3, 1).contiguous()
    if inputs.dim() == 3:
        return inputs.permute(0, 2, 1).contiguous()
    return inputs


def _check_convertible(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if name and not list(module.children()) and not isinstance(module, CONVERTIBLE):
            raise ExportError(
                f"layer '{name}' ({type(module).__name__}) cannot be converted by hls4ml's PyTorch front end; "
                "replace it or keep it off the FPGA"
            )


def _part(device: str) -> str:
    from tenfold.hardware.devices import get_device

    found = get_device(device)
    if not found.part:
        raise ConfigError(f"device {device!r} has no part number; register it with part='xc...'")
    return found.part


__all__ = ["CheckReport", "ExportError", "Hls4mlProject", "check_bit_exact", "export_hls4ml", "hls4ml_config"]
