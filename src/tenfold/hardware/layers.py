"""What hls4ml would build from a PyTorch module: one `LayerSpec` per layer, with shapes traced from a forward.

The cost model prices these specs. Shapes come from forward hooks on one dummy input, so any module that
composes supported leaf layers works, and an unsupported leaf layer is named by its module path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from tenfold.errors import ModelError

# Leaf modules hls4ml turns into compute layers (weights) and into cheap element-wise / data-movement layers.
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.Hardtanh, nn.PReLU,
               nn.SiLU, nn.GELU, nn.Softplus)
POOLING = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d,
           nn.AdaptiveMaxPool2d)
NORMALISATION = (nn.BatchNorm1d, nn.BatchNorm2d)
FREE = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.Unflatten)


@dataclass
class LayerSpec:
    """One layer as hls4ml sees it.

    For Linear/Conv: `n_in` inputs per output value (in_features, or C_in·kh·kw per group), `n_out` outputs per
    position (out_features or filters) and `positions` output pixels (1 for Linear). `weight` is the PyTorch
    tensor (out, in[, kh, kw]); `mask` (same shape, 0/1) marks pruned weights when the module is pruned.
    """

    name: str
    kind: str  # dense, conv1d, conv2d, activation, pooling, batchnorm, free
    module_type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    n_in: int = 0
    n_out: int = 0
    positions: int = 1
    groups: int = 1
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @property
    def has_weights(self) -> bool:
        return self.kind in {"dense", "conv1d", "conv2d"}

    @property
    def n_weights(self) -> int:
        return 0 if self.weight is None else int(self.weight.numel())

    @property
    def n_outputs(self) -> int:
        return math.prod(self.output_shape)

    @property
    def effective_weight(self) -> torch.Tensor | None:
        """The weights the hardware would hold: pruned entries set to exactly zero."""
        if self.weight is None:
            return None
        return self.weight if self.mask is None else self.weight * self.mask

    def weight_matrix(self) -> torch.Tensor:
        """Weights as the (n_out, n_in) matrix whose row-major flattening is hls4ml's Resource-strategy order.

        hls4ml stores Conv kernels channels-last and transposes them for the Resource strategy to
        (filters, kh, kw, channels) — so a multiplier's pattern runs over channels first, not over the kernel
        window as PyTorch's (out, in, kh, kw) layout would suggest.
        """
        weight = self.effective_weight
        if weight is None:
            raise ModelError(f"layer {self.name} has no weights")
        return _to_hls_layout(weight.detach(), self.extra.get("channels_last_input"))

    def hls_order(self) -> torch.Tensor:
        """For each position of `weight_matrix().flatten()`, the flat index into the PyTorch weight tensor."""
        if self.weight is None:
            raise ModelError(f"layer {self.name} has no weights")
        index = torch.arange(self.weight.numel()).reshape(self.weight.shape)
        return _to_hls_layout(index, self.extra.get("channels_last_input")).reshape(-1)


def _to_hls_layout(tensor: torch.Tensor, channels_last_input: tuple[int, ...] | None) -> torch.Tensor:
    """PyTorch weight layout → hls4ml's (out, …, channels) layout, flattened per output.

    Conv kernels (out, C, kh, kw) become (out, kh, kw, C). A Linear fed by a Flatten of a (C, H, W) tensor
    gets its inputs reordered to (H, W, C), because hls4ml flattens channels-last tensors.
    """
    if tensor.dim() > 2:
        tensor = tensor.permute(0, *range(2, tensor.dim()), 1)
    elif channels_last_input is not None and len(channels_last_input) > 1:
        shaped = tensor.reshape(tensor.shape[0], *channels_last_input)
        tensor = shaped.permute(0, *range(2, shaped.dim()), 1)
    return tensor.reshape(tensor.shape[0], -1)


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, nn.Conv1d):
        return "conv1d"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, ACTIVATIONS):
        return "activation"
    if isinstance(module, POOLING):
        return "pooling"
    if isinstance(module, NORMALISATION):
        return "batchnorm"
    if isinstance(module, FREE):
        return "free"
    return None


def _effective_parameters(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Weight, bias and pruning mask; understands torch.nn.utils.prune and parametrized weights."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    mask = getattr(module, "weight_mask", None)
    if isinstance(mask, torch.Tensor):
        original = getattr(module, "weight_orig", None)
        weight = original if isinstance(original, torch.Tensor) else weight
    else:
        mask = None
    return (
        None if weight is None else weight.detach(),
        None if bias is None else bias.detach(),
        None if mask is None else mask.detach(),
    )


def _is_leaf(module: nn.Module) -> bool:
    children = [name for name, _ in module.named_children() if name != "parametrizations"]
    return not children


def extract_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerSpec]:
    """Trace `model` on one zero input of per-sample shape `input_shape` and describe every leaf layer.

    Raises `ModelError` naming the module path of any leaf layer with parameters that hls4ml cannot map.
    """
    if not input_shape or any(int(d) < 1 for d in input_shape):
        raise ModelError(f"input_shape must be the per-sample shape, e.g. (16,) or (3, 32, 32), got {input_shape}")
    specs: list[LayerSpec] = []
    flattened: dict[str, tuple[int, ...]] = {}  # the (C, H, W) shape a Flatten just collapsed
    hooks = []
    for name, module in model.named_modules():
        if not name or not _is_leaf(module):
            continue
        kind = _kind(module)
        if kind is None:
            if any(True for _ in module.parameters(recurse=False)) or getattr(module, "parametrizations", None):
                raise ModelError(
                    f"layer '{name}' ({type(module).__name__}) is not supported by tenfold's hardware model; "
                    "supported: Linear, Conv1d, Conv2d, BatchNorm, activations, pooling, Flatten"
                )
            continue

        def hook(mod, inputs, output, *, _name=name, _kind=kind):
            spec = _spec_from(mod, _name, _kind, inputs[0], output)
            if isinstance(mod, nn.Flatten) and inputs[0].dim() > 2:
                flattened["shape"] = tuple(inputs[0].shape[1:])
            elif spec.kind == "dense" and flattened.get("shape") and math.prod(flattened["shape"]) == spec.n_in:
                spec.extra["channels_last_input"] = flattened.pop("shape")
            elif spec.kind not in {"free", "activation"}:
                flattened.pop("shape", None)
            specs.append(spec)

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters(), None)
        dtype = parameter.dtype if parameter is not None else torch.float32
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros((1, *[int(d) for d in input_shape]), dtype=dtype, device=device))
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"the model does not accept inputs of shape {tuple(input_shape)}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return specs


def _spec_from(module: nn.Module, name: str, kind: str, inp: torch.Tensor, out: torch.Tensor) -> LayerSpec:
    spec = LayerSpec(
        name=name,
        kind=kind,
        module_type=type(module).__name__,
        input_shape=tuple(inp.shape[1:]),
        output_shape=tuple(out.shape[1:]),
    )
    if kind in {"dense", "conv1d", "conv2d"}:
        weight, bias, mask = _effective_parameters(module)
        spec.weight, spec.bias, spec.mask = weight, bias, mask
        if kind == "dense":
            spec.n_in, spec.n_out = module.in_features, module.out_features
            spec.positions = math.prod(out.shape[1:-1]) if out.dim() > 2 else 1
        else:
            groups = int(module.groups)
            spec.groups = groups
            spec.n_in = (module.in_channels // groups) * math.prod(module.kernel_size)
            spec.n_out = module.out_channels
            spec.positions = math.prod(out.shape[2:])
            spec.extra = {
                "kernel_size": tuple(module.kernel_size),
                "stride": tuple(module.stride),
                "padding": module.padding,
                "in_channels": module.in_channels,
            }
    elif kind == "pooling":
        kernel = getattr(module, "kernel_size", None)
        spec.extra = {"kernel_size": kernel}
    return spec
