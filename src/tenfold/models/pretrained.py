"""Load pretrained weights from a local checkpoint file (tenfold never downloads weights).

Accepted layouts: a raw ``state_dict``, ``{"state_dict": ...}`` or ``{"model": ...}`` (other keys such
as ``best_prec1`` or ``optimizer`` are ignored). A leading ``module.`` prefix on every key, left by
``nn.DataParallel`` in the public pytorch_resnet_cifar10 checkpoints, is stripped. Missing BatchNorm
``num_batches_tracked`` buffers are tolerated (those checkpoints predate them; they only matter for
``momentum=None``). Anything else that does not fit exactly — a missing or unexpected key, a shape
mismatch — is a ``ModelError`` that lists the first offending keys and says which built-in
architecture the file looks like. Files are read with ``torch.load(weights_only=True)``, so a
checkpoint is never allowed to run code.

Input normalisation of the pretrained CIFAR ResNets (resnet20/32/44/56 from pytorch_resnet_cifar10):
RGB images scaled to [0, 1], then normalised per channel with mean ``PRETRAINED_CIFAR_MEAN`` =
(0.485, 0.456, 0.406) and std ``PRETRAINED_CIFAR_STD`` = (0.229, 0.224, 0.225) — the ImageNet
constants, which is what that model zoo was trained with, not the CIFAR-10 statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tenfold.errors import ModelError
from tenfold.models.registry import SPEC_ATTR, create

__all__ = ["PRETRAINED_CIFAR_MEAN", "PRETRAINED_CIFAR_STD", "extract_state_dict", "load_pretrained"]

PRETRAINED_CIFAR_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel (RGB) mean the pretrained CIFAR ResNets expect after scaling pixels to [0, 1]."""
PRETRAINED_CIFAR_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel (RGB) std the pretrained CIFAR ResNets expect after scaling pixels to [0, 1]."""

_TOLERATED_MISSING_SUFFIX = "num_batches_tracked"
_SHOW = 5  # offending keys listed in error messages
# Built-ins compared against a checkpoint to say what it looks like (all build with default arguments).
_GUESS_CANDIDATES = (
    "jet_mlp", "lenet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet50", "vgg16", "vgg19",
)  # fmt: skip


def _load_file(path: Path) -> Any:
    if not path.exists():
        raise ModelError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ModelError(f"checkpoint {path} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise ModelError(
            f"cannot read checkpoint {path} ({_cause(exc)}): it is corrupt or truncated, not a torch.save() "
            "file, or it holds pickled Python objects other than tensors (e.g. a whole model), which "
            "tenfold refuses to unpickle for safety: re-save it as torch.save(model.state_dict(), path)"
        ) from exc


def _cause(exc: Exception) -> str:
    """The informative part of torch.load's error (its weights_only advice is not what users need)."""
    text = " ".join(str(exc).split())
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split(" Please use", 1)[0].split(" Check the documentation", 1)[0]
    text = text.strip().split(". ", 1)[0].rstrip(".") or "no details"  # first sentence only
    return f"{type(exc).__name__}: {text[:200]}"


def extract_state_dict(checkpoint: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor mapping inside a loaded checkpoint, with a DataParallel ``module.`` prefix stripped."""
    state = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                state = checkpoint[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise ModelError(
            f"{source} holds no state_dict: expected a dict of tensors, or a dict with a 'state_dict' or "
            f"'model' entry; got {type(checkpoint).__name__}"
            + (f" with keys {list(checkpoint)[:_SHOW]}" if isinstance(checkpoint, Mapping) else "")
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"{source}: state_dict entries are not all named tensors, e.g. {bad[:_SHOW]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


@functools.cache
def _reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of a built-in model with default arguments, built on the meta device."""
    with torch.device("meta"):
        model = create(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(_TOLERATED_MISSING_SUFFIX)}


def describe_checkpoint(state: Mapping[str, torch.Tensor]) -> str:
    """A phrase saying which built-in architecture a state_dict looks like, for error messages."""
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(_TOLERATED_MISSING_SUFFIX)}
    same_names = []
    for name in _GUESS_CANDIDATES:
        try:
            reference = _reference_shapes(name)
        except Exception:  # a candidate that cannot be built must not hide the real error
            continue
        if reference == shapes:
            return f"the file looks like a {name!r} checkpoint (with default arguments)"
        if reference.keys() == shapes.keys():
            diff = next(k for k in reference if reference[k] != shapes[k])
            same_names.append(f"{name!r} built with other sizes (e.g. {diff}: {shapes[diff]} in the file)")
    if same_names:
        return "the file looks like " + " or ".join(same_names[:2]) + "; check num_classes / in_features"
    tops = sorted({k.split(".", 1)[0] for k in shapes})
    return (
        f"the file does not match any built-in architecture ({len(shapes)} tensors; "
        f"top-level modules: {', '.join(tops[:10])}{', ...' if len(tops) > 10 else ''})"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _model_label(model: nn.Module) -> str:
    spec = getattr(model, SPEC_ATTR, None)
    return repr(spec["name"]) if isinstance(spec, dict) and "name" in spec else type(model).__name__


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights from the checkpoint at ``path`` into ``model`` strictly, in place; return ``model``.

    Strict except for BatchNorm ``num_batches_tracked`` buffers, which may be absent (the public
    CIFAR ResNet checkpoints lack them). ``ModelError`` for an unreadable file (naming the path) or
    any key/shape mismatch (listing the offending keys and what the file looks like). For the
    pretrained CIFAR ResNets, feed inputs in [0, 1] normalised with ``PRETRAINED_CIFAR_MEAN/STD``.
    """
    if not isinstance(model, nn.Module):
        raise ModelError(f"load_pretrained() needs a torch.nn.Module, got {type(model).__name__}")
    path = Path(path).expanduser()
    state = extract_state_dict(_load_file(path), source=f"checkpoint {path}")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_TOLERATED_MISSING_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: {tuple(state[k].shape)} in file vs {tuple(v.shape)} in model"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
                problems.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOW])}{more}")
        raise ModelError(
            f"checkpoint {path} does not fit model {_model_label(model)}: {'; '.join(problems)}. "
            f"{_sentence(describe_checkpoint(state))}."
        )
    model.load_state_dict(state, strict=False)
    return model
