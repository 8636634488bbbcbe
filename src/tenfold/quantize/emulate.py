"""Bit-exact emulation of what hls4ml's HLS code computes, layer by layer, in float64.

Not "float with rounded weights": every product is cast to the accumulator type as hls4ml's
`dense_latency`/`dense_resource` do (`mult = (accum_t)(data * weight)`), the accumulator starts from the
bias cast to `accum_t`, sums wrap or saturate exactly like `ap_fixed`, and the sum is cast to the result type;
activations then cast to their own result type. With a wrapping accumulator the sum is order-independent
(modular arithmetic); saturating accumulators are summed sequentially in hls4ml's input order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ModelError
from tenfold.hardware.fixed_point import FixedPoint, Overflow
from tenfold.hardware.hls_config import HLSConfig

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.Identity,
             nn.Dropout)


def _q(precision: FixedPoint, values: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(precision.quantize(values.numpy()), dtype=np.float64))


def _accumulate(products: torch.Tensor, bias: torch.Tensor, accum: FixedPoint) -> torch.Tensor:
    """Σ over the last axis of `products` (already on the accum grid) plus bias, with ap_fixed overflow."""
    if accum.overflow == Overflow.AP_WRAP and accum.saturation_bits == 0:
        return _q(accum, products.sum(dim=-1) + bias)  # modular: order does not matter
    acc = bias.expand(products.shape[:-1]).clone()
    for index in range(products.shape[-1]):
        acc = _q(accum, acc + products[..., index])
    return acc


def _dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, config) -> torch.Tensor:
    p = config.precision
    w = _q(p.weight, weight.detach().double())
    b = _q(p.bias, bias.detach().double()) if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    products = _q(p.accum, x.unsqueeze(-2) * w)  # (..., out, in): exact double products, cast to accum_t
    acc = _accumulate(products, _q(p.accum, b), p.accum)
    return _q(p.result, acc)


def _conv(x: torch.Tensor, module: nn.Module, config) -> torch.Tensor:
    if module.groups != 1 or any(d != 1 for d in np.atleast_1d(module.dilation)):
        raise ModelError("emulation supports ungrouped, undilated convolutions only")
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(-2)
        weight = module.weight.unsqueeze(-2)
        kernel, stride, padding = (1, module.kernel_size[0]), (1, module.stride[0]), (0, module.padding[0])
    else:
        weight, kernel, stride, padding = module.weight, module.kernel_size, module.stride, module.padding
    if isinstance(padding, str):
        raise ModelError("emulation needs numeric conv padding, not 'same'/'valid' strings")
    batch, _, height, width = x.shape
    out_h = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel[1]) // stride[1] + 1
    columns = F.unfold(x, kernel, padding=padding, stride=stride)  # (B, C·kh·kw, L) in PyTorch weight order
    flat_weight = weight.reshape(weight.shape[0], -1)
    out = _dense(columns.transpose(1, 2), flat_weight, module.bias, config)  # (B, L, out)
    out = out.transpose(1, 2).reshape(batch, -1, out_h, out_w)
    return out.squeeze(-2) if isinstance(module, nn.Conv1d) else out


def emulate(model: nn.Module, inputs: torch.Tensor, config: HLSConfig) -> torch.Tensor:
    """Run `model` on `inputs` the way the hls4ml-generated C++ does (io_parallel), returning float64 outputs.

    The input is first cast to the model's default result precision (hls4ml's input layer type).
    Supports chains of Linear, Conv1d/2d, ReLU, MaxPool, Flatten; other layers raise a `ModelError` naming them.
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:
        raise ModelError(f"cannot trace the model for emulation: {exc}") from None
    modules = dict(model.named_modules())
    values: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for node in graph.nodes:
            if node.op == "placeholder":
                values[node.name] = _q(config.default.precision.result, inputs.detach().double())
            elif node.op == "call_module":
                module = modules[node.target]
                x = values[node.args[0].name]
                layer = config.layer(node.target)
                if isinstance(module, nn.Linear):
                    values[node.name] = _dense(x, module.weight, module.bias, layer)
                elif isinstance(module, nn.Conv1d | nn.Conv2d):
                    values[node.name] = _conv(x, module, layer)
                elif isinstance(module, nn.ReLU):
                    values[node.name] = _q(layer.precision.result, torch.clamp(x, min=0.0))
                elif isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
                    pool = F.max_pool1d if isinstance(module, nn.MaxPool1d) else F.max_pool2d
                    values[node.name] = _q(layer.precision.result, pool(x, module.kernel_size, module.stride,
                                                                         module.padding))
                elif isinstance(module, nn.Flatten):
                    values[node.name] = torch.flatten(x, module.start_dim, module.end_dim)
                elif isinstance(module, nn.Identity | nn.Dropout):
                    values[node.name] = x
                else:
                    raise ModelError(
                        f"layer '{node.target}' ({type(module).__name__}) has no bit-exact emulation yet; "
                        f"supported: {', '.join(t.__name__ for t in SUPPORTED)}"
                    )
            elif node.op == "call_function" and node.target in {torch.flatten}:
                values[node.name] = torch.flatten(values[node.args[0].name], *node.args[1:])
            elif node.op == "output":
                return values[node.args[0].name]
            else:
                raise ModelError(f"operation {node.target} has no bit-exact emulation; use a chain of supported layers")
    raise ModelError("the traced model has no output")


def quantize_weights_(model: nn.Module, config: HLSConfig) -> nn.Module:
    """Put every Linear/Conv weight and bias exactly on its configured grid (in place), as the chip stores them."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                precision = config.layer(name).precision
                module.weight.copy_(_q(precision.weight, module.weight.double()).to(module.weight.dtype))
                if module.bias is not None:
                    module.bias.copy_(_q(precision.bias, module.bias.double()).to(module.bias.dtype))
    return model
