"""Masks on the module (torch.nn.utils.prune buffers, so state_dict round-trips) and masked fine-tuning.

Masks are keyed by module path for weights (`"fc1"`) or by `"module:param"` for other parameters
(`"fc1:bias"`, `"bn1:weight"`): neuron pruning also silences a removed neuron's bias and batch-norm affine
terms, so the masked model computes exactly what the physically smaller model does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tenfold.train.callbacks import Callback, TrainState


def _split(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1)) if ":" in key else (key, "weight")  # type: ignore[return-value]


def masked_parameters(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) of every masked parameter."""
    out = []
    for module in model.modules():
        for buffer_name, _ in module.named_buffers(recurse=False):
            if buffer_name.endswith("_mask") and hasattr(module, buffer_name[: -len("_mask")] + "_orig"):
                out.append((module, buffer_name[: -len("_mask")]))
    return out


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """AND new masks into the parameters' masks (creating them on first use) and zero what they prune."""
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        name, param = _split(key)
        module = modules[name]
        current = getattr(module, param)
        mask = mask.to(dtype=current.dtype, device=current.device).reshape(current.shape)
        if hasattr(module, f"{param}_mask"):
            getattr(module, f"{param}_mask").mul_(mask)
        else:
            torch_prune.custom_from_mask(module, param, mask)
        with torch.no_grad():
            original, buffer = getattr(module, f"{param}_orig"), getattr(module, f"{param}_mask")
            original.mul_(buffer)
            setattr(module, param, original * buffer)


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every mask, keyed like `apply_masks` expects."""
    names = {id(m): n for n, m in model.named_modules()}
    out = {}
    for module, param in masked_parameters(model):
        key = names[id(module)] if param == "weight" else f"{names[id(module)]}:{param}"
        out[key] = getattr(module, f"{param}_mask").detach().clone()
    return out


def reset_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set masks back to earlier values (weights pruned since then stay at zero until retrained)."""
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        name, param = _split(key)
        getattr(modules[name], f"{param}_mask").copy_(mask)


def masked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose weight carries a pruning mask."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "weight_mask") and hasattr(m, "weight_orig")}


def ensure_mask_buffers(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Create mask buffers for every parameter that has one in `state_dict`, so `load_state_dict` fits."""
    modules = dict(model.named_modules())
    for key, value in state_dict.items():
        if not key.endswith("_mask"):
            continue
        name, _, buffer = key.rpartition(".")
        param = buffer[: -len("_mask")]
        module = modules.get(name)
        if module is not None and not hasattr(module, f"{param}_mask"):
            torch_prune.custom_from_mask(module, param, torch.ones_like(value))
    refresh_masked_weights(model)


def refresh_masked_weights(model: nn.Module) -> nn.Module:
    """Recompute every masked `weight = weight_orig * weight_mask` outside autograd.

    torch.nn.utils.prune stores the product as a plain attribute; made with gradients on (a training forward,
    or creating the mask), it is a non-leaf tensor, which `copy.deepcopy` refuses. Also brings the attribute up
    to date after `load_state_dict`.
    """
    with torch.no_grad():
        for module, param in masked_parameters(model):
            setattr(module, param, getattr(module, f"{param}_orig") * getattr(module, f"{param}_mask"))
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning permanent: plain parameters with zeros where the masks were."""
    for module, param in masked_parameters(model):
        torch_prune.remove(module, param)
    return model


def sparsity(model: nn.Module) -> float:
    """Share of Linear/Conv weights that are exactly zero."""
    total = zeros = 0
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            weight = module.weight.detach()
            total += weight.numel()
            zeros += int((weight == 0).sum())
    return zeros / total if total else 0.0


class MaskedFinetune(Callback):
    """Keeps pruned parameters at exactly zero: gradients, optimiser state and values are masked every step."""

    def __init__(self, model: nn.Module) -> None:
        self.parameters = [(getattr(m, f"{p}_orig"), getattr(m, f"{p}_mask")) for m, p in masked_parameters(model)]

    def on_after_backward(self, state: TrainState) -> None:
        for original, mask in self.parameters:
            if original.grad is not None:
                original.grad.mul_(mask)

    def on_step_end(self, state: TrainState) -> None:
        with torch.no_grad():
            for original, mask in self.parameters:
                original.mul_(mask)
                for value in state.optimizer.state.get(original, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                        value.mul_(mask)


class GroupLasso(Callback):
    """Structured regularisation on the pruning structures: λ·Σ_g √|g|·‖w_g‖₂, pushing whole groups to zero."""

    def __init__(self, model: nn.Module, groups: dict[str, torch.Tensor], strength: float) -> None:
        modules = dict(model.named_modules())
        self.strength = float(strength)
        self.terms = []
        for name, group_of_weight in groups.items():
            index = group_of_weight.reshape(-1).long()
            valid = index >= 0
            n_groups = int(index[valid].max()) + 1 if valid.any() else 0
            sizes = torch.bincount(index[valid], minlength=n_groups).double()
            self.terms.append((modules[name], index, valid, n_groups, sizes.sqrt()))

    def regularization(self, state: TrainState) -> torch.Tensor | None:
        if self.strength == 0 or not self.terms:
            return None
        total = None
        for module, index, valid, n_groups, scale in self.terms:
            weight = module.weight.reshape(-1)
            squares = torch.zeros(n_groups, dtype=weight.dtype, device=weight.device)
            squares = squares.index_add(0, index[valid], weight[valid].pow(2))
            term = (squares + 1e-12).sqrt().mul(scale.to(weight.dtype)).sum()
            total = term if total is None else total + term
        return self.strength * total
