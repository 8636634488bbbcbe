"""ONNX export of (compressed) models, verified with onnxruntime against PyTorch.

Uses PyTorch's torch.export-based exporter (``dynamo=True``; the TorchScript exporter is deprecated in torch
2.9+). Compression state is baked in first, on a copy: pruning masks (``weight_orig``/``weight_mask``) and
``torch.nn.utils.parametrize`` parametrizations are replaced by the effective weights they compute, so the ONNX
graph holds plain constant weights instead of the masking arithmetic. The file is written atomically, and the
outputs of onnxruntime are compared with the *original* module's, which checks the whole chain.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from tenfold.errors import ConfigError
from tenfold.export.hls4ml_project import ExportError
from tenfold.io import ensure_not_input

__all__ = ["MIN_OPSET", "OnnxReport", "bake_compression", "export_onnx", "require_onnx"]

MIN_OPSET = 18  # the torch.export-based exporter implements opset 18 and newer
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration", "torch.onnx._internal.exporter._compat")


@dataclass
class OnnxReport:
    """Where the model went and how closely onnxruntime reproduces PyTorch on the check inputs."""

    path: Path
    opset: int
    samples: int
    max_abs_difference: float
    argmax_agreement: float
    within_tolerance: bool
    atol: float
    rtol: float
    export_seconds: float
    check_seconds: float
    baked: list[str] = field(default_factory=list)  # masks and parametrizations replaced by their weights
    warnings: list[str] = field(default_factory=list)  # what torch.onnx warned about during the export

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"path": str(self.path)}


def require_onnx() -> None:
    """Raise an ExportError naming the install command when onnx, onnxruntime or onnxscript is missing."""
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}, which is not installed; "
                          "pip install 'tenfold[onnx]'")


def bake_compression(model: nn.Module) -> list[str]:
    """Replace pruning masks and parametrizations of ``model`` (in place) by the weights they produce.

    Returns what was baked, e.g. ``["fc1.weight (pruning mask)", "fc2.weight (parametrization)"]``.
    """
    from tenfold.prune.masks import masked_parameters, remove_masks

    names = {id(m): n for n, m in model.named_modules()}
    baked = [f"{names[id(m)]}.{p} (pruning mask)".lstrip(".") for m, p in masked_parameters(model)]
    remove_masks(model)
    for name, module in list(model.named_modules()):
        if parametrize.is_parametrized(module):
            baked += [f"{name}.{param} (parametrization)".lstrip(".") for param in _unparametrize(module)]
    return baked


def _unparametrize(module: nn.Module) -> list[str]:
    """Turn every parametrized tensor of ``module`` into a plain parameter holding its current value.

    Not ``parametrize.remove_parametrizations``: that deletes the property from the parametrized class, which
    a deep copy shares with the original module, so it would break the caller's model.
    """
    with torch.no_grad():
        values = {param: getattr(module, param).detach().clone() for param in module.parametrizations}
    del module._modules["parametrizations"]
    module.__class__ = parametrize.type_before_parametrizations(module)
    for param, value in values.items():
        module.register_parameter(param, nn.Parameter(value))
    return list(values)


def _copy_module(model: nn.Module) -> nn.Module:
    """A deep copy, also of modules pruned with torch.nn.utils.prune outside no_grad: their ``weight`` attribute
    is then a non-leaf tensor, which ``copy.deepcopy`` refuses; it is recomputed on every forward anyway."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[list[str]]:
    """Collect torch.onnx's warnings (deprecations inside torch, skipped torchvision ops) instead of printing."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    messages: list[str] = []
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_inputs(check_data: Any, input_shape: tuple[int, ...], samples: int, seed: int) -> torch.Tensor:
    if check_data is None:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((samples, *input_shape), generator=generator)
    data = torch.as_tensor(np.asarray(check_data) if not isinstance(check_data, torch.Tensor) else check_data)
    data = data.detach().float()
    if tuple(data.shape[1:]) != input_shape or len(data) == 0:
        raise ConfigError(f"check_data must have shape (N, {', '.join(map(str, input_shape))}) with N >= 1; "
                          f"got {tuple(data.shape)}")
    return data


def _outputs(result: Any) -> list[np.ndarray]:
    items = result if isinstance(result, tuple | list) else [result]
    return [np.asarray(item.detach().double().numpy() if isinstance(item, torch.Tensor) else item, dtype=np.float64)
            for item in items]


def _export(model: nn.Module, example: torch.Tensor, target: Path, opset: int, messages: list[str]) -> None:
    """torch.onnx.export into a temporary file beside ``target``, renamed over it only when it succeeded."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        batch = torch.export.Dim("batch", min=1)
        try:
            torch.onnx.export(model, (example,), tmp_name, dynamo=True, opset_version=opset, verbose=False,
                              external_data=False, dynamic_shapes=({0: batch},))
        except Exception as exc:  # torch.export raises many types; name the cause in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"torch.onnx could not export the model: {first}. Replace the unsupported layer or "
                              "operation (the message names it)") from None
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path, *, opset: int = MIN_OPSET,
                check_data: Any = None, samples: int = 32, atol: float = 1e-4, rtol: float = 1e-3, seed: int = 0,
                checkpoint: str | Path | None = None) -> OnnxReport:
    """Write ``model`` (input: one sample of ``input_shape``, any batch size) to ``path`` as ONNX and verify it.

    ``check_data`` (N, *input_shape) are the inputs the check compares on; default ``samples`` seeded normal
    inputs. The model is not changed (masks and parametrizations are baked into a copy). ``checkpoint`` is the
    file the model came from; writing over it is refused.
    """
    require_onnx()
    import onnx
    import onnxruntime

    if not isinstance(model, nn.Module):
        raise ConfigError(f"export_onnx needs a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"input_shape is one sample's shape without the batch, e.g. (1, 28, 28); got {input_shape}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ConfigError(f"opset must be an int >= {MIN_OPSET} (the torch.export-based exporter's oldest); "
                          f"got {opset}")
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    target = Path(path)
    ensure_not_input(target, [checkpoint], what="ONNX output")
    if target.is_dir():
        raise ConfigError(f"{target} is a folder; give the .onnx file to write")
    target.parent.mkdir(parents=True, exist_ok=True)
    inputs = _check_inputs(check_data, shape, samples, seed)

    reference = _copy_module(model).eval()
    baked_model = _copy_module(model).eval()
    baked = bake_compression(baked_model)
    start = time.perf_counter()
    with _quiet_exporter() as messages:
        _export(baked_model, inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, *[1] * len(shape)), target, opset,
                messages)
    export_seconds = time.perf_counter() - start

    start = time.perf_counter()
    loaded = onnx.load(str(target))
    try:
        onnx.checker.check_model(loaded)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported file {target} is not valid ONNX: {str(exc).splitlines()[0]}") from None
    written_opset = next((o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")), opset)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = _outputs(reference(inputs))
    got = _outputs(session.run(None, {session.get_inputs()[0].name: inputs.numpy().astype(np.float32)}))
    if len(got) != len(expected) or any(a.shape != b.shape for a, b in zip(got, expected, strict=False)):
        raise ExportError(f"onnxruntime returned shapes {[a.shape for a in got]}, "
                          f"PyTorch {[b.shape for b in expected]}")
    worst = max(float(np.abs(a - b).max()) if a.size else 0.0 for a, b in zip(got, expected, strict=True))
    close = all(np.allclose(a, b, atol=atol, rtol=rtol) for a, b in zip(got, expected, strict=True))
    first, ref = got[0].reshape(len(inputs), -1), expected[0].reshape(len(inputs), -1)
    agreement = float((first.argmax(axis=1) == ref.argmax(axis=1)).mean())
    return OnnxReport(path=target, opset=int(written_opset), samples=len(inputs), max_abs_difference=worst,
                      argmax_agreement=agreement, within_tolerance=close, atol=atol, rtol=rtol,
                      export_seconds=export_seconds, check_seconds=time.perf_counter() - start, baked=baked,
                      warnings=messages)
