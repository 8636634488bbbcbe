"""Checkpoints that rebuild themselves: the weights plus the zoo spec needed to re-create the module.

Files are written atomically (temporary file, then rename) and read with `weights_only=True`, so a
checkpoint can never execute code and a crash never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tenfold.errors import CheckpointError
from tenfold.io import atomic_torch_save

FORMAT = "tenfold.checkpoint"
TRAINING_FORMAT = "tenfold.training-state"
VERSION = 1


@dataclass
class Checkpoint:
    """The contents of a tenfold checkpoint file."""

    model_spec: dict[str, Any] | None
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> nn.Module:
        """Re-create the module from its zoo spec and load the weights strictly."""
        from tenfold.models import create

        if not self.model_spec:
            raise CheckpointError(
                "this checkpoint has no model spec (it was saved from a model not built by "
                "tenfold.models.create); build the model yourself and call model.load_state_dict(ckpt.state_dict)"
            )
        model = create(self.model_spec["name"], **self.model_spec.get("kwargs", {}))
        if self.metadata.get("shrink"):  # a neuron-pruned model: narrow the layers as recorded
            from tenfold.prune.physical import shrink

            model, _ = shrink(model, {k: list(v) for k, v in self.metadata["shrink"].items()})
        if self.metadata.get("decomposition"):  # decomposed layers: rebuild their factor structure first
            from tenfold.decompose.recipe import apply_decomposition_recipe_

            apply_decomposition_recipe_(model, self.metadata["decomposition"])
        if any(key.endswith("_mask") for key in self.state_dict):  # pruning masks travel with the weights
            from tenfold.prune.masks import ensure_mask_buffers

            ensure_mask_buffers(model, self.state_dict)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"the weights do not fit the model {self.model_spec['name']!r}: {_first_line(exc)}"
            ) from None
        return model


def save_checkpoint(path: str | Path, model: nn.Module, *, metadata: dict[str, Any] | None = None) -> Path:
    """Save `model` (weights + zoo spec + metadata) to `path` atomically and return the path."""
    from tenfold import __version__
    from tenfold.models import model_spec

    try:
        spec = model_spec(model)
    except Exception:  # models not built by the zoo have no spec; they can still be saved
        spec = None
    metadata = dict(metadata or {})
    if "decomposition" not in metadata:  # a decomposed model records how to rebuild its factor layers
        from tenfold.decompose.recipe import decomposition_recipe

        recipe = decomposition_recipe(model)
        if recipe:
            metadata["decomposition"] = recipe
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "tenfold_version": __version__,
        "model_spec": spec,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": _plain(metadata or {}),
    }
    return atomic_torch_save(path, payload)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a tenfold checkpoint; corrupt or foreign files give a `CheckpointError` naming the path."""
    payload = _torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a tenfold checkpoint (no '{FORMAT}' marker). For raw pretrained weights use "
            "tenfold.models.create(name, pretrained=path) or the CLI's --pretrained PATH"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer tenfold (format version {payload['version']}); upgrade tenfold"
        )
    return Checkpoint(
        model_spec=payload.get("model_spec"),
        state_dict=payload["state_dict"],
        metadata=payload.get("metadata", {}),
    )


def load_model(source: str | Path, *, pretrained: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """A model from a checkpoint file, or from the zoo by name (optionally with pretrained weights)."""
    from tenfold.models import create

    path = Path(source)
    if path.suffix in {".pt", ".pth", ".th", ".ckpt"} or path.exists():
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist; give an existing file or a zoo model name")
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder; give a checkpoint file or a zoo model name")
        return load_checkpoint(path).build_model()
    return create(str(source), pretrained=pretrained, **kwargs)


def save_training_state(path: str | Path, **state: Any) -> Path:
    """Everything `fit` needs to resume exactly where it stopped, written atomically."""
    payload = {
        "format": TRAINING_FORMAT,
        "version": VERSION,
        "model": state["model"].state_dict(),
        "optimizer": state["optimizer"].state_dict(),
        "scheduler": state["scheduler"].state_dict(),
        "generator": state["generator"].get_state(),
        "torch_rng": torch.get_rng_state(),
        "report": _plain(dataclasses.asdict(state["report"])),
        "best_state": state["best_state"],
        "epochs_without_gain": state["epochs_without_gain"],
        "epoch": state["epoch"],
        "step": state["step"],
    }
    return atomic_torch_save(path, payload)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read what `save_training_state` wrote."""
    payload = _torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path} is not a tenfold training-state file; cannot resume from it")
    return payload


def _torch_load(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(exc)} (is the file corrupt?)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _plain(obj: Any) -> Any:
    """Reduce metadata to types `torch.load(weights_only=True)` accepts."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
